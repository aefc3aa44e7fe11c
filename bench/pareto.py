"""Pareto view and incremental re-optimization on the simulated world (issue 16, parts 1-2). Prints each
figure and ends with one JSON line.

    .venv/bin/python bench/pareto.py [--keep DIR]

World: the value world with `integration_resolves: false` and `conflict_strength: 1.0`, so Tradition and
Hedonism conflict whatever an instruction says (in the default world an instruction that integrates
them escapes the conflict, and the front collapses to one point).

1. Front. Composition Tradition + Hedonism (Schwartz, the confucianism demonstrations). Two runs of the
   same size: the paper's selection (Eq. 4 argmax) and `selection: chebyshev`. `picaco pareto` on each
   (held-out prompts): `pareto_points` = instructions on the held-out front of the paper-selection run;
   `front_best` = the best held-out score of each value on that front; `paper_instruction` = the held-out
   scores of the paper's single instruction e^T; `chebyshev_run` the same figures for the other run.
2. Incremental. An earlier run of Tradition + Hedonism, then Benevolence is added: a fresh run of the
   new composition (T iterations) vs a `from_run` run (T_inc iterations), each on its own copy of the cache
   the earlier run left (what the user has). Calls = paid provider calls of the new run (its call log:
   probe, noisy pool, iterations, final report with held-out comparison). Conformity = the world's exact
   expected conformity (no sampling noise) of the run's best instruction on the new composition, and the
   judge's held-out conformity beside it. Done twice: with the default Fig. 9 judge (all values in one
   request) and with `judge_per_value` for all runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from picaco.config import parse_run_config  # noqa: E402
from picaco.llm.calllog import paid_calls, read_call_log  # noqa: E402
from picaco.method.front import non_dominated  # noqa: E402
from picaco.method.run import optimize  # noqa: E402
from picaco.pareto import pareto_report  # noqa: E402
from picaco.sim.world import conformity, expected_conformity  # noqa: E402
from picaco.sim.world_config import WorldConfig  # noqa: E402

WORLD = {"integration_resolves": False, "conflict_strength": 1.0}
PAIR = ["Tradition", "Hedonism"]
ADDED = "Benevolence"
T, T_INC = 4, 1


def composition(path: Path, name: str, values: list[str]) -> Path:
    path.write_text(json.dumps({"name": name, "kind": "schwartz", "beta": 0.5, "values": values,
                                "demonstrations_from": "confucianism"}), encoding="utf-8")
    return path


def config(work: Path, name: str, comp: Path, cache: str = "cache", iterations: int = T, **extra) -> object:
    picaco = {"n_prompts": 10, "m1": 5, "m2": 4, "iterations": iterations, "n_pe_samples": 4, "noisy_samples": 6,
              "buckets": 3, "samples_per_bucket": 2, "held_out": 20, **extra.pop("picaco", {})}
    options = {"world": "values", **{f"world_{k}": v for k, v in WORLD.items()}}
    return parse_run_config({
        "run_name": name, "composition": str(comp), "prompts": {"demo_family": "schwartz"},
        "runs_dir": str(work / "runs"), "models": {"embedding": "sim/embedding"},
        "client": {"cache_dir": str(work / cache), "providers": {"sim": {"kind": "sim", "options": options}}},
        "picaco": picaco, **extra})


def run(cfg) -> dict:
    t0 = time.perf_counter()
    result = optimize(cfg)
    comp_values = list(result.value_scores)
    return {"result": result, "wall_s": round(time.perf_counter() - t0, 1),
            "calls": paid_calls(read_call_log(cfg.run_dir / "calls.jsonl")),
            "truth": conformity(result.best_instruction, comp_values, config=WorldConfig(**WORLD)),
            "judge_held_out": (result.held_out or {}).get("optimized", {}).get("conformity")}


def front_part(work: Path) -> dict:
    pair = composition(work / "pair.yaml", "tradition_hedonism", PAIR)
    paper = run(config(work, "front-paper", pair))
    cheb = run(config(work, "front-chebyshev", pair, picaco={"selection": "chebyshev"}))
    reports = {name: pareto_report(work / "runs", name, PAIR, None, None, work / "pareto" / name)
               for name in ("front-paper", "front-chebyshev")}
    for name, rep in reports.items():
        print(f"{name}: {len(rep['front'])} on the held-out front of {len(rep['points'])} evaluated; best on front "
              + ", ".join(f"{v} {rep['best_on_front'][v]:.2f}" for v in PAIR)
              + "; its e^T " + ", ".join(f"{v} {rep['paper_best'][v]:.2f}" for v in PAIR))
    print(f"world's exact conformity of e^T: paper selection {paper['truth']:.3f}, chebyshev {cheb['truth']:.3f}")

    def figures(rep: dict) -> dict:
        # the world's exact per-value expectation of the same points: the front without judge and sampling noise
        truth = {k: expected_conformity(p["instruction"], PAIR, config=WorldConfig(**WORLD))
                 for k, p in rep["points"].items()}
        truth_front = non_dominated(truth, PAIR)
        e_t = next(k for k, p in rep["points"].items() if p["paper_best"])
        return {"pareto_points": len(rep["front"]), "front_best": {v: round(rep["best_on_front"][v], 3) for v in PAIR},
                "single_instruction": {v: round(rep["paper_best"][v], 3) for v in PAIR},
                "evaluated": len(rep["points"]), "truth_pareto_points": len(truth_front),
                "truth_front_best": {v: round(max(truth[k][v] for k in truth_front), 3) for v in PAIR},
                "truth_single_instruction": {v: round(truth[e_t][v], 3) for v in PAIR}}

    paper_fig = figures(reports["front-paper"])
    print(f"world truth of the same points: paper run {paper_fig['truth_pareto_points']} on the front, best "
          f"{paper_fig['truth_front_best']} vs its e^T {paper_fig['truth_single_instruction']}")
    return {"pareto_points": paper_fig["pareto_points"], "front_best": paper_fig["front_best"],
            "paper_instruction": paper_fig["single_instruction"], "paper_run": paper_fig,
            "chebyshev_run": figures(reports["front-chebyshev"]),
            "e_T_truth": {"paper": round(paper["truth"], 3), "chebyshev": round(cheb["truth"], 3)}}


def incremental_part(work: Path, per_value: bool) -> dict:
    tag = "pv" if per_value else "joint"
    extra = {"judge_per_value": True} if per_value else {}
    pair = composition(work / "pair.yaml", "tradition_hedonism", PAIR)
    triple = composition(work / "triple.yaml", "tradition_hedonism_benevolence", PAIR + [ADDED])
    earlier = run(config(work, f"old-{tag}", pair, cache=f"cache-{tag}", picaco=extra))
    for copy in ("fresh", "from"):
        shutil.copytree(work / f"cache-{tag}", work / f"cache-{tag}-{copy}")
    fresh = run(config(work, f"fresh-{tag}", triple, cache=f"cache-{tag}-fresh", picaco=extra))
    inc = run(config(work, f"from-{tag}", triple, cache=f"cache-{tag}-from", iterations=T_INC, picaco=extra,
                     from_run=f"old-{tag}"))
    ratio = inc["calls"] / fresh["calls"]
    print(f"[{tag} judge] earlier run {earlier['calls']} calls; fresh T={T}: {fresh['calls']} calls, truth "
          f"{fresh['truth']:.3f}, judge held-out {fresh['judge_held_out']:.3f}; from_run T={T_INC}: {inc['calls']} "
          f"calls, truth {inc['truth']:.3f}, judge held-out {inc['judge_held_out']:.3f}; ratio {ratio:.3f}")
    return {"calls_ratio": round(ratio, 3), "conformity_delta": round(inc["truth"] - fresh["truth"], 4),
            "judge_held_out_delta": round(inc["judge_held_out"] - fresh["judge_held_out"], 4),
            "calls": {"earlier": earlier["calls"], "fresh": fresh["calls"], "from_run": inc["calls"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="picaco-pareto-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        front = front_part(work)
        joint = incremental_part(work, per_value=False)
        per_value = incremental_part(work, per_value=True)
    figures = {**front, "incremental_calls_ratio": joint["calls_ratio"],
               "incremental_conformity_delta": joint["conformity_delta"],
               "incremental_judge_held_out_delta": joint["judge_held_out_delta"], "incremental_calls": joint["calls"],
               "incremental_per_value_judge": per_value, "iterations": {"fresh": T, "from_run": T_INC},
               "wall_s": round(time.perf_counter() - t0, 1)}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
