"""`picaco serve` overhead: the median latency it adds over calling the target directly. Prints the
figures and ends with one JSON line.

    .venv/bin/python bench/serve.py [--calls 300] [--latency-ms 20]

A tiny run is optimized on the simulator (seconds), the simulator server runs in its own process with a
fixed latency, and `picaco serve --run ... --target <that server>` in another. One client then makes
`calls` rounds of identical chat calls, one straight to the target and one through each of four
`picaco serve` processes side by side (upstream client httpx or fast, event loop asyncio or uvloop; the
direct call already carries the system prompt serve adds, so the target does the same work), the direct
call first or last in turn and the variants rotated, one call in flight, keep-alive connections. The
added latency of a variant is, per round, (through it - direct); serve_overhead_ms is the median for the
default (fast upstream, uvloop). Goal: <= 2 ms. Each variant's p10/median/p90 and the CPU its process
spent per call are printed too.
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


VARIANTS = {  # name -> serve's options; the last is the default (what serve_overhead_ms reports)
    "httpx+asyncio": ["--upstream", "httpx", "--loop", "asyncio"],
    "httpx+uvloop": ["--upstream", "httpx", "--loop", "uvloop"],
    "fast+asyncio": ["--upstream", "fast", "--loop", "asyncio"],
    "fast+uvloop": ["--upstream", "fast", "--loop", "uvloop"],
}
DEFAULT = "fast+uvloop"


def start_serve(tmp: Path, config, target_url: str, options: list[str]):
    target = tmp / "target.yaml"
    target.write_text(yaml.safe_dump({"models": {"target": "lab/sim-target"},
                                      "client": {"providers": {"lab": {"kind": "openai", "base_url": target_url}}}}))
    sup = procs.start("picaco serve", [sys.executable, "-m", "picaco.cli", "serve", "--run", config.run_name,
                                       "--runs-dir", str(config.runs_dir), "--port", "0", "--target", str(target),
                                       *options])

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


def cpu_s(proc: psutil.Process) -> float:
    return sum(proc.cpu_times()[:2])


def spread(xs: list[float]) -> dict:
    q = statistics.quantiles(xs, n=10)
    return {"p10": round(q[0], 3), "median": round(statistics.median(xs), 3), "p90": round(q[-1], 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="rounds (each: one direct call and one per variant)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="the simulator's fixed latency")
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        config, result = finished_run(tmp)
        sim = start_server_process(SimServerConfig(latency_ms=args.latency_ms))
        sups = {}
        try:
            urls = {}
            for name, options in VARIANTS.items():
                sups[name], urls[name] = start_serve(tmp, config, sim.openai_base_url, options)
            user = {"role": "user", "content": "How should a team share credit for a joint success?"}
            served_body = {"model": "any", "messages": [user], "max_tokens": 64, "seed": 1}
            direct_body = dict(served_body, model="sim-target",
                               messages=[{"role": "system", "content": result.best_instruction}, user])
            procs_ = {name: psutil.Process(sup.proc.pid) for name, sup in sups.items()}
            direct, added = [], {name: [] for name in VARIANTS}
            names = list(VARIANTS)
            with httpx.Client(timeout=30) as client:
                for _ in range(args.warmup):
                    timed(client, sim.openai_base_url, direct_body)
                    for name in names:
                        timed(client, urls[name], served_body)
                cpu0 = {name: cpu_s(p) for name, p in procs_.items()}
                for i in range(args.calls):
                    # the direct call first or last in turn, the variants rotated: no variant always follows it
                    order = names[i % len(names):] + names[:i % len(names)]
                    times = {}
                    if i % 2 == 0:
                        d = timed(client, sim.openai_base_url, direct_body)
                    for name in order:
                        times[name] = timed(client, urls[name], served_body)
                    if i % 2 == 1:
                        d = timed(client, sim.openai_base_url, direct_body)
                    direct.append(d)
                    for name in names:
                        added[name].append(times[name] - d)
                cpu_ms = {name: (cpu_s(p) - cpu0[name]) * 1000.0 / args.calls for name, p in procs_.items()}
        finally:
            for sup in sups.values():
                procs.stop(sup, grace=5.0)
                sup.log_path.unlink(missing_ok=True)
            sim.stop()

    variants = {name: {**spread(added[name]), "cpu_ms_per_call": round(cpu_ms[name], 3)} for name in names}
    overhead = variants[DEFAULT]["median"]
    figures = {
        "serve_overhead_ms": overhead,
        "serve_overhead_p10_ms": variants[DEFAULT]["p10"], "serve_overhead_p90_ms": variants[DEFAULT]["p90"],
        "serve_cpu_ms_per_call": variants[DEFAULT]["cpu_ms_per_call"], "default": DEFAULT, "variants": variants,
        "direct_median_ms": round(statistics.median(direct), 3),
        "load_average_1m": round(psutil.getloadavg()[0], 2), "cpus": psutil.cpu_count(),
        "rounds": args.calls, "target_latency_ms": args.latency_ms, "goal_ms": GOAL_MS, "met": overhead <= GOAL_MS,
    }
    print(f"direct call to the target: median {figures['direct_median_ms']:.2f} ms (simulator latency "
          f"{args.latency_ms:g} ms); load average {figures['load_average_1m']} on {figures['cpus']} CPUs")
    print("added by picaco serve, ms (p10 / median / p90), and CPU ms of the serve process per call:")
    for name, v in variants.items():
        print(f"  {name:14s} {v['p10']:7.3f} / {v['median']:7.3f} / {v['p90']:7.3f}   CPU {v['cpu_ms_per_call']:.3f}"
              + ("   (default)" if name == DEFAULT else ""))
    print(f"serve_overhead_ms {overhead:.3f} ({DEFAULT}, median of {args.calls} paired rounds); goal <= {GOAL_MS:g} ms: "
          f"{'met' if figures['met'] else 'NOT met'}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
