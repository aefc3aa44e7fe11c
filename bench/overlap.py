"""Embedding overlapped with the calls: one iteration (E-step + M-step) against the simulator's HTTP
server (500 ms per call, 64 calls at once), on this tree (and, with --sides before,after, on an older
revision beside it). Prints each figure and ends with one JSON line.

    .venv/bin/python bench/overlap.py [--prompts 50 --m2 15 --n-pe 10] [--sides after|before,after] [--before REV]
                                      [--tasks] [--encoder-threads N] [--repeat N]

Per side (child processes on that side's source tree, one per run; `before` is `git archive REV`), runs of
iteration 1 on fresh run directories, after an untimed start (judge probe, noisy pool), same seed, timed
from the E-step's start to the iteration's end:
- `wall`: chat and embeddings fresh (cache C1): what a user with a real provider waits, on the loop of
  `picaco optimize` (picaco.method.run.optimize: the M-step's draft beside the E-step);
- `wall_tasks`: the same on fresh cache C3 through the flows' task sequence without Prefect: the M-step
  draft in a thread beside the E-step (each with its own client, as the flow's tasks are), then the M-step;
- `calls_s` (the latency bound): chats fresh (cache C2), embeddings by the in-process simulator's
  `sim/embedding` (no model, ~free); the calls of iteration 1 do not depend on the vectors (every response
  is judged, the M-step scores every proposal; proposals depend only on e^0 and the seed);
- `embed_s` (the embedding time): every chat answered by cache C1, embeddings fresh (the st provider under
  another name, so none of its vectors is cached).
ratio = wall / max(calls_s, embed_s); goal <= 1.2. With --repeat N every figure is the median of N repeats
(fresh caches each; one run moves by several seconds with the machine's load), each repeat printed. Also the CPU bound of the wall run: its CPU time (this
process, all threads, and the sim server's process) over the cores; wall / CPU bound near 1 means nothing
waits on anything but the CPU (on 2 cores the encoder, the client's call handling and the server share it). On this shared 2-core machine the runs see different
load, so the ratio is noisy; the load average is printed with it. A `before` tree without the loop's
events (older than the draft) is timed through its steps one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "b7871e6"  # main before session 4 merges: the reference the overlap branch was measured against


def run_config(work: Path, name: str, cache: str, embedding: str, base_url: str, args) -> dict:
    encoder = {"threads": args.encoder_threads} if args.encoder_threads else {}
    p = {"n_prompts": args.prompts, "m1": args.m1, "m2": args.m2, "iterations": 1, "n_pe_samples": args.n_pe,
         "noisy_samples": max(args.m2, 20 if args.m2 > 8 else 8), "buckets": 3, "samples_per_bucket": 3,
         "held_out": 0}
    return {"run_name": name, "composition": "hh_balance", "prompts": {"demo_family": "hh"},
            "runs_dir": str(work / "runs"), "picaco": p,
            "models": {"target": "http/target", "judge": "http/judge", "embedding": embedding},
            "client": {"cache_dir": str(work / cache), "providers": {
                "http": {"kind": "openai", "base_url": base_url, "max_concurrency": args.concurrency},
                "st": {"kind": "st", "options": encoder}, "st2": {"kind": "st", "options": encoder},
                "sim": {"kind": "sim", "options": {"world": "values"}}}}}


def timed_loop(cfg) -> tuple[float, float, str]:
    """Iteration 1 on `picaco optimize`'s loop: (wall from the E-step's start, E-step wall, best instruction)."""
    from picaco.method import run as runner

    if not hasattr(runner, "run_m_step_draft"):  # a tree before the draft: its steps one after the other
        t0 = time.perf_counter()
        runner.run_e_step(cfg, 1)
        estep = time.perf_counter() - t0
        it = runner.run_m_step(cfg, 1)
        return time.perf_counter() - t0, estep, it.best.instruction
    marks: dict[str, float] = {}

    def on_event(kind: str, t: int, **info) -> None:
        marks.setdefault(kind, time.perf_counter())

    result = runner.optimize(cfg, on_event=on_event)
    return marks["iteration"] - marks["e_step"], marks["m_step"] - marks["e_step"], result.best_instruction


def timed_tasks(cfg) -> tuple[float, float, str]:
    """Iteration 1 as the optimize flow runs its tasks: the draft in a thread beside the E-step, then the M-step."""
    from concurrent.futures import ThreadPoolExecutor

    from picaco.method.run import run_e_step, run_m_step, run_m_step_draft

    t0 = time.perf_counter()
    with ThreadPoolExecutor(1) as pool:
        draft = pool.submit(run_m_step_draft, cfg, 1)
        run_e_step(cfg, 1)
        estep = time.perf_counter() - t0
        draft.result()
    it = run_m_step(cfg, 1)
    return time.perf_counter() - t0, estep, it.best.instruction


def child(args) -> None:
    """One side: the timed iterations; prints one JSON line."""
    import psutil

    import picaco
    from picaco.config import parse_run_config
    from picaco.method.run import run_noisy_pool

    work = Path(args.work)
    out = {"source": str(Path(picaco.__file__).parents[1]), "cores": len(os.sched_getaffinity(0))}

    def server_cpu() -> float:
        times = psutil.Process(args.server_pid).cpu_times()
        return times.user + times.system

    key = args.run
    cache, embedding, timed = RUNS[key]
    cfg = parse_run_config(run_config(work, key.rsplit("_", 1)[0], cache, embedding, args.base_url, args))
    run_noisy_pool(cfg)  # untimed: judge probe, noisy pool, the model loaded
    c0, s0 = time.process_time(), server_cpu()
    out[key], estep, best = {"loop": timed_loop, "tasks": timed_tasks}[timed](cfg)
    out[key.replace("_s", "_estep_s")] = estep
    out[key.replace("_s", "_cpu_s")] = time.process_time() - c0
    out[key.replace("_s", "_server_cpu_s")] = server_cpu() - s0
    out[key.replace("_s", "_best")] = best
    out[key.replace("_s", "_load")] = os.getloadavg()[0]
    print(f"  {key}: {out[key]:.1f} s (E-step {estep:.1f} s; load average {out[key.replace('_s', '_load')]:.1f})",
          file=sys.stderr, flush=True)
    print(json.dumps(out))


# each run in a process of its own, as a user's run is (what earlier runs leave in a process, caches and
# garbage, changed a later run's wall by seconds), in this order: embed_s reads the chats wall_s cached
RUNS = {"calls_s": ("c2", "sim/embedding", "loop"), "wall_s": ("c1", "st/all-MiniLM-L6-v2", "loop"),
        "embed_s": ("c1", "st2/all-MiniLM-L6-v2", "loop"), "wall_tasks_s": ("c3", "st/all-MiniLM-L6-v2", "tasks")}


def summarize(name: str, r: dict) -> None:
    """One repeat's ratios, printed."""
    r["ratio"] = r["wall_s"] / max(r["calls_s"], r["embed_s"])
    r["sum_ratio"] = r["wall_s"] / (r["calls_s"] + r["embed_s"])
    if "wall_tasks_s" in r:
        r["tasks_ratio"] = r["wall_tasks_s"] / max(r["calls_s"], r["embed_s"])
    if "wall_server_cpu_s" in r:  # the CPU the wall run needed (this process and the sim server) over the cores
        r["cpu_bound_s"] = (r["wall_cpu_s"] + r["wall_server_cpu_s"]) / r["cores"]
        r["wall_over_cpu_bound"] = r["wall_s"] / r["cpu_bound_s"]
    print(f"{name}: iteration wall {r['wall_s']:.1f} s; latency bound {r['calls_s']:.1f} s; embedding {r['embed_s']:.1f} s "
          f"-> wall / max = {r['ratio']:.2f} (goal <= 1.2), wall / sum = {r['sum_ratio']:.2f}"
          + (f"; the flow's tasks {r['wall_tasks_s']:.1f} s -> {r['tasks_ratio']:.2f}" if "wall_tasks_s" in r else ""),
          flush=True)
    if "cpu_bound_s" in r:
        print(f"{name}: the wall run's CPU {r['wall_cpu_s']:.1f} s here + {r['wall_server_cpu_s']:.1f} s in the sim server "
              f"over {r['cores']} cores = {r['cpu_bound_s']:.1f} s: wall / CPU bound = {r['wall_over_cpu_bound']:.2f}",
              flush=True)


MEDIANS = ("ratio", "tasks_ratio", "sum_ratio", "wall_over_cpu_bound", "wall_s", "wall_tasks_s", "calls_s", "embed_s")


def side(name: str, source: Path, args) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(source))
    print(f"{name} ({source}):", flush=True)
    with_tasks = args.tasks and (source / "picaco" / "method" / "run.py").read_text().count("def run_m_step_draft")
    repeats: list[dict] = []
    # one server for the side's runs: its address is part of every chat's cache key, so embed_s finds the
    # chats wall_s paid for
    # imported here, not at the top: a child imports its own side's tree, this is the parent's (both sides
    # are served by this tree's simulator)
    from picaco.sim.server import SimServerConfig, start_server_process

    server = start_server_process(SimServerConfig(world="values", latency_ms=args.latency_ms))
    try:
        for rep in range(args.repeat):
            work = tempfile.mkdtemp(prefix="picaco-bench-overlap-")  # fresh caches for every repeat
            r: dict = {}
            for key in RUNS if with_tasks else list(RUNS)[:3]:  # a tree before the draft has no draft task
                cmd = [sys.executable, __file__, "--child", "--run", key, "--work", work, "--base-url",
                       server.openai_base_url, "--server-pid", str(server.proc.pid), "--prompts", str(args.prompts),
                       "--m1", str(args.m1), "--m2", str(args.m2), "--n-pe", str(args.n_pe), "--concurrency",
                       str(args.concurrency), "--encoder-threads", str(args.encoder_threads)]
                done = subprocess.run(cmd, env=env, cwd=source, stdout=subprocess.PIPE, text=True, check=True)
                r.update(json.loads(done.stdout.strip().splitlines()[-1]))
            summarize(name if args.repeat == 1 else f"{name} (repeat {rep + 1} of {args.repeat})", r)
            repeats.append(r)
    finally:
        server.stop()
    if len(repeats) == 1:
        return repeats[0]
    # the machine's load moves a single run by several seconds: each figure is the median of the repeats
    out: dict = {"source": str(source), "repeats": repeats, "wall_best": repeats[0]["wall_best"],
                 "same_best_in_repeats": len({r["wall_best"] for r in repeats}) == 1}
    for key in MEDIANS:
        values = [r[key] for r in repeats if key in r]
        if values:
            out[key], out[f"{key}_all"] = statistics.median(values), [round(v, 3) for v in values]
    print(f"{name}: median of {len(repeats)} repeats: wall / max = {out['ratio']:.2f} {out['ratio_all']}"
          + (f"; the flow's tasks {out['tasks_ratio']:.2f} {out['tasks_ratio_all']}" if "tasks_ratio" in out else "")
          + f"; wall / CPU bound {out['wall_over_cpu_bound']:.2f}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=50)
    ap.add_argument("--m1", type=int, default=10)
    ap.add_argument("--m2", type=int, default=15)
    ap.add_argument("--n-pe", type=int, default=10)
    ap.add_argument("--latency-ms", type=float, default=500.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--sides", default="after", help="after = this tree; before = --before REV")
    ap.add_argument("--before", default=BEFORE, help="the git revision measured as `before`")
    ap.add_argument("--encoder-threads", type=int, default=0,
                    help="the st provider's option threads (default: every core); 1 leaves a core to the calls")
    ap.add_argument("--tasks", action="store_true", help="also time the flows' task sequence (wall_tasks_s)")
    ap.add_argument("--repeat", type=int, default=1, help="repeats per side (fresh caches each); figures are medians")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--run", choices=list(RUNS), help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--base-url", help=argparse.SUPPRESS)
    ap.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    figures: dict = {"prompts": args.prompts, "m2": args.m2, "n_pe": args.n_pe, "latency_ms": args.latency_ms,
                     "repeats": args.repeat,
                     "concurrency": args.concurrency, "encoder_threads": args.encoder_threads or "all cores"}
    for name in args.sides.split(","):
        if name == "before":
            tree = Path(tempfile.mkdtemp(prefix="picaco-before-"))
            archive = subprocess.run(["git", "archive", args.before], cwd=ROOT, capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        else:
            tree = ROOT
        figures[name] = side(name, tree, args)
        figures[f"{name}_ratio"] = round(figures[name]["ratio"], 3)
        for extra in ("tasks_ratio", "wall_over_cpu_bound"):
            if extra in figures[name]:
                figures[f"{name}_{extra}"] = round(figures[name][extra], 3)
    if "before" in figures and "after" in figures:
        figures["same_best"] = figures["before"]["wall_best"] == figures["after"]["wall_best"]
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
