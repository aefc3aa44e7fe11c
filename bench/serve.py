"""`picaco serve` overhead: the median latency it adds over calling the target directly. Prints the
figures and ends with one JSON line.

    .venv/bin/python bench/serve.py [--calls 300] [--latency-ms 20]

A tiny run is optimized on the simulator (seconds), the simulator server runs in its own process with a
fixed latency, and `picaco serve --run ... --target <that server>` in another. One client then makes
`calls` rounds of two identical chat calls, one straight to the target and one through `picaco serve`
(the direct call already carries the system prompt serve adds, so the target does the same work), in
alternating order (AB BA AB ...), one call in flight, keep-alive connections. serve_overhead_ms is the
median over rounds of (through serve - direct). Goal: <= 2 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import psutil
import yaml

from picaco import procs
from picaco.config import parse_run_config
from picaco.method.run import optimize
from picaco.sim.server import SimServerConfig, start_server_process

GOAL_MS = 2.0
READY = "base_url "


def finished_run(tmp: Path):
    config = parse_run_config({
        "run_name": "bench-serve", "composition": "modern_liberalism", "prompts": {"demo_family": "schwartz"},
        "runs_dir": str(tmp / "runs"), "models": {"embedding": "sim/embed"},
        "client": {"cache_dir": str(tmp / "cache"), "providers": {"sim": {"kind": "sim", "options": {"world": "values"}}}},
        "picaco": {"n_prompts": 3, "m1": 2, "m2": 2, "iterations": 1, "noisy_samples": 2, "n_pe_samples": 2,
                   "buckets": 1, "samples_per_bucket": 2}})
    return config, optimize(config)


def start_serve(tmp: Path, config, target_url: str):
    target = tmp / "target.yaml"
    target.write_text(yaml.safe_dump({"models": {"target": "lab/sim-target"},
                                      "client": {"providers": {"lab": {"kind": "openai", "base_url": target_url}}}}))
    sup = procs.start("picaco serve", [sys.executable, "-m", "picaco.cli", "serve", "--run", config.run_name,
                                       "--runs-dir", str(config.runs_dir), "--port", "0", "--target", str(target)])

    def url():
        for line in sup.log_path.read_text(errors="replace").split("\n")[:-1]:
            if READY in line:
                return line.split(READY, 1)[1].split()[0]
        return None

    return sup, procs.wait_ready(sup, url, 60)


def timed(client: httpx.Client, url: str, body: dict) -> float:
    t0 = time.perf_counter()
    r = client.post(url + "/chat/completions", json=body)
    elapsed = (time.perf_counter() - t0) * 1000.0
    r.raise_for_status()
    assert r.json()["choices"][0]["message"]["content"]
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="rounds (each one direct and one served call)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="the simulator's fixed latency")
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        config, result = finished_run(tmp)
        sim = start_server_process(SimServerConfig(latency_ms=args.latency_ms))
        sup = None
        try:
            sup, served = start_serve(tmp, config, sim.openai_base_url)
            user = {"role": "user", "content": "How should a team share credit for a joint success?"}
            served_body = {"model": "any", "messages": [user], "max_tokens": 64, "seed": 1}
            direct_body = dict(served_body, model="sim-target",
                               messages=[{"role": "system", "content": result.best_instruction}, user])
            serve_proc = psutil.Process(sup.proc.pid)
            direct, through, added = [], [], []
            with httpx.Client(timeout=30) as client:
                for _ in range(args.warmup):
                    timed(client, sim.openai_base_url, direct_body)
                    timed(client, served, served_body)
                cpu0 = sum(serve_proc.cpu_times()[:2])
                for i in range(args.calls):
                    if i % 2 == 0:
                        d = timed(client, sim.openai_base_url, direct_body)
                        s = timed(client, served, served_body)
                    else:
                        s = timed(client, served, served_body)
                        d = timed(client, sim.openai_base_url, direct_body)
                    direct.append(d)
                    through.append(s)
                    added.append(s - d)
                cpu_ms = (sum(serve_proc.cpu_times()[:2]) - cpu0) * 1000.0 / args.calls
        finally:
            if sup is not None:
                procs.stop(sup, grace=5.0)
                sup.log_path.unlink(missing_ok=True)
            sim.stop()

    overhead = statistics.median(added)
    q = statistics.quantiles(added, n=10)
    figures = {
        "serve_overhead_ms": round(overhead, 3),
        "serve_overhead_p10_ms": round(q[0], 3), "serve_overhead_p90_ms": round(q[-1], 3),
        "direct_median_ms": round(statistics.median(direct), 3),
        "served_median_ms": round(statistics.median(through), 3),
        "serve_cpu_ms_per_call": round(cpu_ms, 3),
        "load_average_1m": round(psutil.getloadavg()[0], 2), "cpus": psutil.cpu_count(),
        "rounds": args.calls, "target_latency_ms": args.latency_ms, "goal_ms": GOAL_MS, "met": overhead <= GOAL_MS,
    }
    print(f"direct call to the target: median {figures['direct_median_ms']:.2f} ms "
          f"(simulator latency {args.latency_ms:g} ms)")
    print(f"through picaco serve:      median {figures['served_median_ms']:.2f} ms")
    print(f"CPU of the serve process per call: {cpu_ms:.3f} ms (the rest of the overhead is the extra hop and "
          f"waiting for a CPU: load average {figures['load_average_1m']} on {figures['cpus']} CPUs)")
    print(f"serve_overhead_ms {overhead:.3f} (median of {args.calls} paired rounds; p10 {q[0]:.3f}, p90 {q[-1]:.3f}); "
          f"goal <= {GOAL_MS:g} ms: {'met' if figures['met'] else 'NOT met'}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
