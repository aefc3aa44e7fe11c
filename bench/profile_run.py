"""Where a run's time goes: wall and CPU seconds by stage (noisy pool, E-steps, M-steps, final report) and
py-spy samples by component (embedding forward / tokenize / load, simulator, cache, call layer, method,
imports). A fresh cache and run directory, so every call is paid. Prints figures and a final JSON line.

    .venv/bin/python bench/profile_run.py --config configs/demo.yaml [--rate 100] [--keep DIR]

py-spy (in the dev extras) samples every thread of the child process, the embedding encodes that run
in worker threads included, which cProfile (one thread) would miss; idle threads are not sampled. The
stage timer is optimize()'s own event callback. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# First match from the leaf of a stack down to its root names the component, so time in the cache
# called by the client counts as cache, and an encode's thread counts as embedding.
COMPONENTS = [
    ("embedding: model forward", ("torch/nn/", "transformers/models/", "onnxruntime/")),
    ("embedding: tokenize", ("tokenizers/", "transformers/tokenization")),
    ("embedding: load / export", ("safetensors/", "torch/onnx/", "onnxscript/", "onnx/", "embed_onnx")),
    ("embedding: other", ("sentence_transformers/", "providers/st.py", "torch/")),
    ("simulator", ("picaco/sim/", "providers/sim.py")),
    ("cache", ("picaco/llm/cache.py", "diskcache/", "sqlite3/")),
    ("call layer", ("picaco/llm/",)),
    ("templates", ("picaco/templates/",)),
    ("method (estimators, steps)", ("picaco/method/",)),
    ("pydantic (run store, configs)", ("pydantic",)),
    ("imports", ("importlib", "<frozen")),
    ("event loop", ("asyncio/", "selectors.py", "threading.py")),
]


# py-spy's idle test misses these blocking waits (an event loop in epoll, a thread pool worker or tqdm's
# monitor waiting for work); they use no CPU, so they are counted apart.
WAITS = {"EpollSelector.select", "Condition.wait", "Event.wait", "_worker", "Thread._wait_for_tstate_lock"}


def component(stack: str) -> str:
    frames = stack.split(";")
    if frames[-1].split(" (")[0] in WAITS:
        return "waiting"
    for frame in reversed(frames):
        where = frame[frame.rfind("(") + 1:] if "(" in frame else frame
        for name, markers in COMPONENTS:
            if any(m in where for m in markers):
                return name
    return "other"


def read_stacks(path: Path) -> Counter:
    """py-spy's raw format: one line per distinct stack, 'frame;frame;... count'."""
    counts: Counter = Counter()
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[component(stack)] += int(n)
    return counts


def child(config_path: str, workdir: Path) -> None:
    from picaco.config import load_run_config
    from picaco.method.run import optimize

    cfg = load_run_config(config_path)
    cfg = cfg.model_copy(update={"runs_dir": workdir / "runs",
                                 "client": cfg.client.model_copy(update={"cache_dir": workdir / "cache"})})
    stages: list[dict] = []
    mark = {"stage": "start-up (imports, config)", "wall": float(os.environ["PROFILE_T0"]), "cpu": 0.0}

    def close(now_wall: float, now_cpu: float) -> None:
        stages.append({"stage": mark["stage"], "wall_s": now_wall - mark["wall"], "cpu_s": now_cpu - mark["cpu"]})

    names = {"noisy_pool": "noisy pool", "e_step": "E-step", "m_step": "M-step", "final": "final report"}

    def on_event(event: str, t: int = 0, **_) -> None:
        if event not in names:
            return
        now_wall, now_cpu = time.time(), time.process_time()
        close(now_wall, now_cpu)
        mark.update(stage=f"{names[event]} t={t}" if event in ("e_step", "m_step") else names[event],
                    wall=now_wall, cpu=now_cpu)

    optimize(cfg, on_event=on_event)
    close(time.time(), time.process_time())
    (workdir / "stages.json").write_text(json.dumps(stages))


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    ap.add_argument("--keep", type=Path, help="keep the stacks, stages and run here")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.config, args.child)
        return {}
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        sys.exit("bench/profile_run.py: py-spy is not installed; run `.venv/bin/pip install py-spy` (dev extras)")
    workdir = Path(tempfile.mkdtemp(prefix="picaco-profile-")) if args.keep is None else args.keep
    workdir.mkdir(parents=True, exist_ok=True)
    stacks = workdir / "stacks.txt"
    env = dict(os.environ, PROFILE_T0=repr(time.time()))
    subprocess.run([spy, "record", "--format", "raw", "--rate", str(args.rate), "-o", str(stacks), "--",
                    sys.executable, __file__, "--config", args.config, "--child", str(workdir)],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    stages = json.loads((workdir / "stages.json").read_text())
    counts = read_stacks(stacks)
    waiting = counts.pop("waiting", 0)
    total = sum(counts.values())
    wall = sum(s["wall_s"] for s in stages)
    print(f"{args.config}: {wall:.1f} s wall, fresh cache; by stage (wall s / CPU s of all threads):")
    for s in stages:
        print(f"  {s['stage']:28s} {s['wall_s']:7.1f} {s['cpu_s']:7.1f}")
    print(f"by component ({total} py-spy samples of busy threads at {args.rate}/s; {waiting} more in blocking "
          f"waits, left out):")
    for name, n in counts.most_common():
        print(f"  {name:28s} {100 * n / total:5.1f}%")
    figures = {"config": args.config, "wall_s": round(wall, 1),
               "stages": {s["stage"]: [round(s["wall_s"], 2), round(s["cpu_s"], 2)] for s in stages},
               "components_pct": {k: round(100 * v / total, 1) for k, v in counts.most_common()},
               "samples": total, "waiting_samples": waiting}
    if args.keep is None:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
