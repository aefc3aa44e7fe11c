"""Simulated-world benchmark (issue: the value world and `make demo`). Prints figures and a final JSON line.

    .venv/bin/python bench/world.py

1. The paper configuration on the world (the run bench/method.py leaves in artifacts/bench/, run here if
   missing): ground-truth conformity of the optimized instruction / the world's optimum under the
   length limit (goal >= 0.9), and optimized vs seed on held-out prompts, by the judge and by the truth.
2. `picaco demo` on a fresh directory: wall time, backend calls, peak memory (goal <= 5 min, <= 1.5 GB);
   a second run: backend calls (goal 0).
3. The null optimizer (returns an instruction it was shown, unchanged), on the demo configuration:
   its ground-truth gain over the seed (goal: none), next to the real optimizer's gain.
4. The simulated target's reply time (`target_reply_ms`, goal < 0.5 ms on a quiet machine): one reply to a
   Fig. 7 prompt (the optimum instruction, three demonstrations, a Schwartz prompt), as a run asks for it
   thousands of times. `--reply-only` prints this figure alone (seconds, not the minutes of 1-3).
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from picaco.config import load_run_config, parse_run_config  # noqa: E402
from picaco.demo import compare_on_held_out, ground_truth  # noqa: E402
from picaco.method.run import load_composition_for, optimize  # noqa: E402
from picaco.sim.world import ValueWorld, WorldConfig, optimum  # noqa: E402
from picaco.templates import render_e_step  # noqa: E402
from picaco.values.model import load_demo_prompts  # noqa: E402

REPLY_VALUES = ["Benevolence", "Conformity", "Tradition", "Security"]
REPLIES = 3000


@dataclass(frozen=True)
class Demo:
    query: str
    answer: str


def paper_figures() -> dict:
    from method import paper_config  # bench/method.py

    cfg = parse_run_config(paper_config("st/all-MiniLM-L6-v2"))
    t0 = time.perf_counter()
    result = optimize(cfg)  # cached if bench/method.py ran it
    seed = load_composition_for(cfg).seed_instruction
    instructions = {"seed": seed, "optimized": result.best_instruction}
    truth = ground_truth(cfg, instructions)
    held_out = 84 - cfg.picaco.n_prompts  # the rest of the bundled HH demo prompts
    judged = asyncio.run(compare_on_held_out(cfg, instructions, held_out))
    opt = truth["per_instruction"]["optimized"]["conformity"]
    seed_gt = truth["per_instruction"]["seed"]["conformity"]
    print(f"paper configuration on the world ({time.perf_counter() - t0:.0f} s here): ground truth optimized "
          f"{opt:.3f}, seed {seed_gt:.3f}, optimum {truth['optimum']:.3f} -> optimality ratio "
          f"{opt / truth['optimum']:.3f} (goal >= 0.9)")
    print(f"  held-out prompts ({held_out}), judge: optimized {judged['optimized']['conformity']:.3f} vs seed "
          f"{judged['seed']['conformity']:.3f}; missing judge scores {judged['optimized']['missing']} / "
          f"{judged['seed']['missing']}")
    return {"optimality_ratio": opt / truth["optimum"], "optimized_gt_conformity": opt, "seed_gt_conformity": seed_gt,
            "world_optimum": truth["optimum"], "held_out_judge_optimized": judged["optimized"]["conformity"],
            "held_out_judge_seed": judged["seed"]["conformity"], "paper_best_instruction": result.best_instruction}


def demo_figures() -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="picaco-bench-demo-"))
    picaco = str(ROOT / ".venv" / "bin" / "picaco")

    def run() -> tuple[str, float]:
        t0 = time.perf_counter()
        out = subprocess.run([picaco, "demo"], cwd=workdir, capture_output=True, text=True, timeout=1800)
        if out.returncode != 0:
            raise RuntimeError(f"picaco demo failed: {out.stderr[-2000:]}")
        return out.stdout, time.perf_counter() - t0

    first, wall = run()
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    second, wall2 = run()
    calls = [int(m) for m in re.findall(r"Backend calls this run: (\d+)", first + second)]
    print(f"picaco demo (fresh directory): wall {wall:.0f} s, backend calls {calls[0]}, peak RSS {rss_mb:.0f} MB "
          f"(goal <= 300 s, <= 1536 MB); second run: {calls[1]} backend calls in {wall2:.1f} s")
    return {"demo_wall_s": wall, "demo_calls": calls[0], "demo_peak_rss_mb": rss_mb, "demo_rerun_calls": calls[1],
            "demo_workdir": str(workdir)}


def null_optimizer_figures() -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="picaco-bench-null-"))
    gains = {}
    for world in ("values", "values-null"):
        cfg = load_run_config(ROOT / "configs" / "demo.yaml")
        cfg = cfg.model_copy(update={
            "run_name": f"null-check-{world}", "runs_dir": workdir / "runs",
            "client": cfg.client.model_copy(update={"cache_dir": workdir / "cache", "providers": {
                "sim": cfg.client.providers["sim"].model_copy(update={"options": {"world": world}})}})})
        result = optimize(cfg)
        seed = load_composition_for(cfg).seed_instruction
        truth = ground_truth(cfg, {"seed": seed, "optimized": result.best_instruction})
        gains[world] = truth["per_instruction"]["optimized"]["conformity"] - truth["per_instruction"]["seed"]["conformity"]
    print(f"demo configuration, ground-truth gain over the seed: real optimizer {gains['values']:+.3f}, "
          f"null optimizer {gains['values-null']:+.3f} (goal: 0)")
    return {"null_optimizer_gain": gains["values-null"], "demo_config_method_gain": gains["values"]}


def reply_figures() -> dict:
    """Per-reply time of the simulated target on Fig. 7 prompts (was a timed unit test; a bound is a goal
    here, not an assertion)."""
    world = ValueWorld(WorldConfig(judge_noise=0.0, malformed_rate=0.0, fence_rate=0.0))
    instruction = optimum(REPLY_VALUES, 150).instruction
    prompts = [r["prompt"] for r in load_demo_prompts("schwartz")]
    system = [{"role": "system", "content": instruction}]
    demos = [Demo(q, world.respond("t", system + [{"role": "user", "content": q}], seed=i, temperature=1,
                                   max_tokens=None)) for i, q in enumerate(prompts[:3])]
    messages = []
    for q in prompts[3:15]:
        sys_text, user = render_e_step(instruction, demos, q)
        messages.append([{"role": "system", "content": sys_text}, {"role": "user", "content": user}])
    world.respond("t", messages[0], seed=0, temperature=1, max_tokens=None)  # parse once, as in a run
    t0 = time.perf_counter()
    for k in range(REPLIES):
        world.respond("t", messages[k % len(messages)], seed=k, temperature=1, max_tokens=None)
    ms = (time.perf_counter() - t0) / REPLIES * 1000
    print(f"simulated target reply: {ms:.3f} ms per reply over {REPLIES} Fig. 7 prompts (goal < 0.5 ms, quiet)")
    return {"target_reply_ms": ms}


if __name__ == "__main__":
    if sys.argv[1:] == ["--reply-only"]:
        print(json.dumps(reply_figures()))
        sys.exit(0)
    figures = {}
    figures.update(paper_figures())
    figures.update(demo_figures())
    figures.update(null_optimizer_figures())
    figures.update(reply_figures())
    keys = ["optimality_ratio", "optimized_gt_conformity", "seed_gt_conformity", "null_optimizer_gain", "demo_wall_s",
            "demo_peak_rss_mb", "demo_rerun_calls", "target_reply_ms"]
    print(json.dumps({**{k: figures[k] for k in keys}, **{k: v for k, v in figures.items() if k not in keys}}))
