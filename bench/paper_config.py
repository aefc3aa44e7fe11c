"""The paper configuration (N=50, M1=10, M2=15, T=10, HH Balance-8, in-process world), per embedding
backend, each side in its own process on a fresh cache: wall time, CPU time (user + sys of the process,
all threads), peak RSS, calls, and the best instruction at every iteration compared between the sides.
Prints each figure and ends with one JSON line.

    .venv/bin/python bench/paper_config.py [--sides auto,torch] [--out DIR] [--parallel]
    .venv/bin/python bench/paper_config.py --collect DIR      # compare sides already run into DIR
    .venv/bin/python bench/paper_config.py --sides auto --reference OLD/auto/side.json   # selection vs an earlier run

`auto` is the default backend (bf16 on CPUs that multiply it in hardware), `torch` is the fp32 reference.
A side's source tree can be another checkout (`--source torch=/path/to/tree`): the reference may then
be measured on the code before a change. The config is bench/method.py's `paper_config`. On a shared
machine the wall time depends on the other work; CPU time depends on it much less (but not nothing:
caches and memory bandwidth are shared too).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def side_config(backend: str, out: Path, iterations: int | None = None) -> dict:
    sys.path.insert(0, str(ROOT / "bench"))
    from method import paper_config  # bench/method.py: the one definition of the paper configuration

    raw = paper_config("st/all-MiniLM-L6-v2")
    if iterations:
        raw["picaco"]["iterations"] = iterations
    raw["runs_dir"] = str(out / "runs")
    raw["client"]["cache_dir"] = str(out / "cache")
    raw["client"]["providers"]["st"] = {"kind": "st", "options": {"backend": backend}}
    return raw


def current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def rss_by_iteration(stages: list) -> list[int]:
    """RSS (MB) when each iteration ended, from a side's stages (runs recorded before session 7 have none)."""
    return [s[4] for s in stages if s[0] == "iteration" and len(s) > 4]


def run_side(backend: str, out: Path, iterations: int | None = None) -> None:
    """In the child: the whole run, then what it chose at every iteration. Imported here, before
    side_config puts this tree on sys.path, so a side given another --source runs that tree's picaco."""
    import picaco
    from picaco.config import parse_run_config
    from picaco.llm.calllog import read_call_log, usage_by_role
    from picaco.method.run import optimize

    cfg = parse_run_config(side_config(backend, out, iterations))
    t0 = time.perf_counter()
    stages = []

    def on_event(kind: str, t: int = 0, **_) -> None:
        # [kind, t, wall s, CPU s, RSS MB now, peak RSS MB so far]: memory along the run, not only its peak
        rss = current_rss_mb()
        stages.append([kind, t, round(time.perf_counter() - t0, 1), round(time.process_time(), 1), round(rss),
                       round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)])
        print(f"  {backend}: {kind} t={t} ({time.perf_counter() - t0:.0f} s wall, {time.process_time():.0f} s CPU, "
              f"RSS {rss:.0f} MB)", flush=True)

    result = optimize(cfg, on_event=on_event)
    wall = time.perf_counter() - t0
    best = [json.loads(p.read_text())["best"]["instruction"] for p in sorted(cfg.run_dir.glob("iter_[0-9][0-9][0-9].json"))]
    usage = usage_by_role(read_call_log(cfg.run_dir / "calls.jsonl"))
    (out / "side.json").write_text(json.dumps({
        "backend": backend, "source": str(Path(picaco.__file__).parents[1]), "wall_s": wall, "stages": stages,
        "best_per_iteration": best, "best_instruction": result.best_instruction, "best_tc": result.best_tc,
        "calls": {role: u["calls"] for role, u in usage.items() if u["calls"]},
        # this process alone: wait4's figure also covers children it waited for (a one-off model conversion)
        "run_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def launch(backend: str, out: Path, source: str | None, nice: int, iterations: int | None = None) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    if source:
        env["PYTHONPATH"] = source  # ahead of the editable install: that tree's picaco is imported
    cmd = [sys.executable, __file__, "--side", backend, "--out", str(out)] + (
        ["--iterations", str(iterations)] if iterations else [])
    return subprocess.Popen(cmd, env=env, cwd=source or ROOT, preexec_fn=lambda: os.nice(nice))


def wait_side(proc: subprocess.Popen, out: Path) -> dict:
    """The child's own CPU time and peak RSS, from the kernel's accounting of that one process."""
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"bench/paper_config.py: side {out.name} failed (exit {proc.returncode})")
    side = json.loads((out / "side.json").read_text())
    side.update(cpu_s=ru.ru_utime + ru.ru_stime, peak_rss_mb=ru.ru_maxrss / 1024)
    (out / "side.json").write_text(json.dumps(side))
    return side


def compare(sides: dict[str, dict]) -> dict:
    figures: dict = {}
    for name, s in sides.items():
        run_peak = s.get("run_peak_rss_mb", s["peak_rss_mb"])  # sides of an older tree lack the run's own figure
        print(f"{name} (source {s['source']}): wall {s['wall_s']:.0f} s, CPU {s['cpu_s']:.0f} s, peak RSS "
              f"{run_peak:.0f} MB (with the processes it started: {s['peak_rss_mb']:.0f} MB), calls "
              f"{sum(s['calls'].values())} {s['calls']}, final TC_e {s['best_tc']:.4f}")
        figures[name] = {k: s[k] for k in ("wall_s", "cpu_s", "peak_rss_mb", "best_tc", "calls")} | {"run_peak_rss_mb": run_peak}
        by_iteration = rss_by_iteration(s["stages"])
        if by_iteration:
            half = by_iteration[len(by_iteration) // 2:]
            figures[name].update(rss_by_iteration_mb=by_iteration, rss_growth_second_half_mb=half[-1] - half[0])
            print(f"{name}: RSS at the end of each iteration {by_iteration} MB; over the second half "
                  f"{half[-1] - half[0]:+d} MB")
    if "auto" in sides:
        a = sides["auto"]
        figures.update(paper_config_wall_s=round(a["wall_s"], 1), paper_config_cpu_s=round(a["cpu_s"], 1),
                       paper_config_peak_rss_mb=round(figures["auto"]["run_peak_rss_mb"]),
                       paper_config_peak_rss_with_children_mb=round(a["peak_rss_mb"]))
        if "rss_growth_second_half_mb" in figures["auto"]:
            figures.update(paper_config_rss_growth_second_half_mb=figures["auto"]["rss_growth_second_half_mb"])
    other = "torch" if "torch" in sides else "reference" if "reference" in sides else None
    if "auto" in sides and other:
        a, b = sides["auto"]["best_per_iteration"], sides[other]["best_per_iteration"]
        differ = [t for t, (x, y) in enumerate(zip(a, b), start=1) if x != y]
        same = len(a) == len(b) and not differ
        print(f"best instruction at every iteration, auto vs {other}: {'the same' if same else 'differs at t=' + str(differ)} "
              f"({len(a)} vs {len(b)} iterations)")
        figures.update(paper_config_same_selection=same, paper_config_differing_iterations=differ,
                       paper_config_selection_against=other)
    return figures


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sides", default="auto,torch")
    ap.add_argument("--out", type=Path, help="keep the runs here (default: a new temporary directory)")
    ap.add_argument("--source", action="append", default=[], help="BACKEND=DIR: run that side on the tree at DIR")
    ap.add_argument("--parallel", action="store_true", help="run the sides at once (each gets less CPU)")
    ap.add_argument("--nice", type=int, default=10)
    ap.add_argument("--collect", type=Path, help="only compare the sides already run into this directory")
    ap.add_argument("--iterations", type=int, help="fewer than the paper's T=10 (a shorter memory or speed check)")
    ap.add_argument("--reference", type=Path, help="an earlier run's side.json: its best instruction at every "
                    "iteration is compared with auto's (when no torch side runs)")
    ap.add_argument("--side", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        run_side(args.side, args.out, args.iterations)
        return
    if args.collect:
        sides = {p.parent.name: json.loads(p.read_text()) for p in sorted(args.collect.glob("*/side.json"))}
    else:
        out = args.out or Path(tempfile.mkdtemp(prefix="picaco-bench-paper-"))
        sources = dict(s.split("=", 1) for s in args.source)
        names = args.sides.split(",")
        sides = {}
        if args.parallel:
            procs = {n: launch(n, out / n, sources.get(n), args.nice, args.iterations) for n in names}
            sides = {n: wait_side(p, out / n) for n, p in procs.items()}
        else:
            for n in names:
                sides[n] = wait_side(launch(n, out / n, sources.get(n), args.nice, args.iterations), out / n)
    if args.reference:
        sides["reference"] = json.loads(args.reference.read_text())
    print(json.dumps(compare(sides)))


if __name__ == "__main__":
    main()
