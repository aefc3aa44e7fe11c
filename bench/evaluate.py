"""Evaluation benchmark on the simulated value world. Prints each figure and a final JSON line.

    .venv/bin/python bench/evaluate.py [--composition hh_balance] [--test 20] [--malformed 0.05] [--keep DIR]

1. PICACO is optimized (small budget) on the first `--x` bundled demo prompts of the composition's family.
2. The full comparison runs on the next `--test` prompts (held out): all eleven methods (Q, the nine
   baselines, PICACO), 3 buckets x 3 repetitions per query, judged by a separate evaluation-judge model.
   Wall time and calls by method are printed.
3. The world spoils `--malformed` of its judge replies. A subclass of the world records each reply it
   spoiled (with the model and the prompt), so the bench knows, per evaluation judge item, whether every
   attempt was spoiled: that count must equal the report's missing count, and the spoiled replies must
   equal the failed judge attempts (`missing_match_injected`). With 3 attempts almost nothing stays
   missing at 5%, so the same comparison is judged again with a single attempt (a second judge name, so
   nothing is cached), where every spoiled reply is a missing score.

Everything runs in a fresh temporary folder (a warm cache would answer the judge without the world, and
nothing would be injected); `--keep DIR` writes there instead and keeps it.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from picaco.eval.config import METHOD_LABELS, parse_eval_config  # noqa: E402
from picaco.eval.stats import fmt_interval  # noqa: E402
from picaco.llm.providers import register_kind  # noqa: E402
from picaco.llm.providers.sim import SimProvider  # noqa: E402

URIAL = ROOT.parent / "shared" / "data" / "urial" / "inst_1k_v4.txt"


def counting_world(malformed_rate: float):
    """The values world, recording every judge reply it spoils as (model, judge prompt).

    The world has no public counter of injected replies, so this hooks its private `_malformed`, which it
    calls exactly when it spoils a reply (picaco/sim/world.py, `_emit`)."""
    from picaco.sim.world import ValueWorld, WorldConfig

    class CountingWorld(ValueWorld):
        def __init__(self, config):
            super().__init__(config)
            self.spoiled: list[tuple[str, str]] = []
            self.judge_calls: Counter = Counter()
            self._current: tuple[str, str] | None = None

        def respond(self, model, messages, *, seed, temperature, max_tokens):
            last = [m["content"] for m in messages if m.get("role") == "user"][-1:]
            self._current = (model, last[0] if last else "")
            if last and ("Please act as an impartial judge" in last[0] or "Rate the relevance" in last[0]):
                self.judge_calls[self._current] += 1
            return super().respond(model, messages, seed=seed, temperature=temperature, max_tokens=max_tokens)

        def _malformed(self, rng, good):
            self.spoiled.append(self._current)
            return super()._malformed(rng, good)

    return CountingWorld(WorldConfig(malformed_rate=malformed_rate))


WORLD = None


class BenchSimProvider(SimProvider):
    """The in-process simulator, answered by the one CountingWorld of this bench."""

    def __init__(self, name, settings):
        super().__init__(name, settings)
        self._engine = BenchSimProvider.engine
        self.endpoint = f"sim-inproc:bench-values-{WORLD.config.malformed_rate:g}"

    engine = None


def injection_check(cfg, out, runs, comp, judge_name: str, attempts: int, spoiled: list[tuple[str, str]]) -> dict:
    """Per evaluation-judge item (one per non-empty response): were all its attempts spoiled? Compared
    with the missing count the report shows."""
    from picaco.eval.judging import judge_setup
    from picaco.templates import render_value_judge

    setup = judge_setup(comp, cfg.protocol.judged_values, cfg.protocol.relevance)
    by_prompt = Counter(p for m, p in spoiled if m == judge_name)
    injected_missing = 0
    for r in runs:
        for rec in r.responses:
            if rec.status != "empty":
                prompt = render_value_judge(setup.values, setup.variant, r.prompts[rec.prompt_id], rec.text)
                injected_missing += by_prompt[prompt] >= attempts
    missing = sum(row["missing"] for row in out["summary"])  # what the report's table shows
    failed = sum(r.summary.judge_attempts - r.summary.judged for r in runs)
    injected = sum(by_prompt.values())
    return {"missing": missing, "injected_missing": injected_missing, "injected_replies": injected,
            "failed_attempts": failed, "match": missing == injected_missing and injected == failed}


def main(argv: list[str] | None = None) -> int:
    global WORLD
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--composition", default="hh_balance")
    ap.add_argument("--x", type=int, default=10, help="optimization prompts (PICACO's X, OPRO's query set)")
    ap.add_argument("--test", type=int, default=20, help="held-out test prompts")
    ap.add_argument("--iterations", type=int, default=2, help="PICACO's T (OPRO gets the same budget)")
    ap.add_argument("--m2", type=int, default=5, help="PICACO's M2 (OPRO gets the same budget)")
    ap.add_argument("--malformed", type=float, default=0.05, help="share of judge replies the world spoils")
    ap.add_argument("--attempts", type=int, default=3, help="judge attempts per score")
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = ap.parse_args(argv)
    # each spoiled judge reply is logged as a warning by the estimators; the counts below say it all
    logging.getLogger("picaco.method.estimators").setLevel(logging.ERROR)

    from picaco.config import parse_run_config
    from picaco.eval.runner import evaluate
    from picaco.eval.store import EvalStore
    from picaco.method.run import optimize
    from picaco.sim.engine import SimEngine

    WORLD = counting_world(args.malformed)
    BenchSimProvider.engine = SimEngine(WORLD)
    register_kind("benchsim", BenchSimProvider)
    work = args.keep or Path(tempfile.mkdtemp(prefix="picaco-bench-eval-"))
    work.mkdir(parents=True, exist_ok=True)
    client = {"cache_dir": str(work / "cache"), "providers": {"bsim": {"kind": "benchsim", "max_concurrency": 256}}}
    from picaco.values import load_composition

    comp = load_composition(args.composition)
    try:
        run_cfg = parse_run_config({
            "run_name": "bench-picaco", "composition": args.composition, "prompts": {"demo_family": comp.kind},
            "models": {"target": "bsim/target", "judge": "bsim/judge-run", "embedding": "bsim/embed"},
            "picaco": {"n_prompts": args.x, "m1": 5, "m2": args.m2, "iterations": args.iterations, "n_pe_samples": 5,
                       "noisy_samples": max(10, args.m2), "judge_attempts": args.attempts},
            "client": client, "runs_dir": str(work / "runs")})
        t0 = time.perf_counter()
        picaco = optimize(run_cfg)
        optimize_s = time.perf_counter() - t0
        print(f"PICACO: optimized in {optimize_s:.1f}s (N={args.x}, T={args.iterations}, M2={args.m2}); "
              f"instruction: {picaco.best_instruction[:100]!r}...")

        cfg = parse_eval_config({
            "name": "bench", "compositions": [args.composition], "prompts": {"count": args.test},
            "picaco": {"result": str(run_cfg.run_dir / "result.json")},
            "models": {"target": "bsim/target", "judge": "bsim/judge-eval", "scorer": "bsim/judge-run",
                       "teacher": "bsim/teacher"},
            "protocol": {"judge_attempts": args.attempts}, "urial": {"prompt": str(URIAL)},
            "client": client, "out_dir": str(work / "eval")})
        spoiled_before = len(WORLD.spoiled)
        t0 = time.perf_counter()
        out = evaluate(cfg)
        wall = time.perf_counter() - t0
        runs = [EvalStore(cfg.eval_dir).load(f"main/{comp.name}/{m}") for m in cfg.methods]

        print(f"\nfull comparison: {len(runs)} methods x {args.test} test prompts x 9 responses in {wall:.1f}s")
        print(f"{'method':<14}{'overall':>9}{'CV':>7}{'missing':>9}{'requests':>10}{'calls':>8}{'target':>8}"
              f"{'judge':>7}{'optim':>7}{'other':>7}{'wall s':>8}")
        calls_by_method = {}
        for r in runs:
            c = r.calls()
            role = {k: int(v.get("calls", 0)) for k, v in r.usage_by_role.items()}
            calls_by_method[r.label] = c["calls"]
            s = r.summary
            print(f"{r.label:<14}{'-' if s.overall is None else f'{s.overall:.3f}':>9}"
                  f"{'-' if s.cv is None else f'{s.cv:.3f}':>7}{s.missing:>9}{c['requests']:>10}{c['calls']:>8}"
                  f"{role.get('target', 0):>8}{role.get('judge', 0):>7}{role.get('optimizer', 0):>7}"
                  f"{role.get('other', 0):>7}{r.wall_s:>8.2f}")

        print("\nconformity [bootstrap 95% interval over test prompts]; PICACO minus the method, paired by prompt")
        paired = {r["label"]: r for r in out["paired"]}
        for r in (x for x in out["intervals"] if x["value"] == "conformity"):
            d = paired.get(r["label"])
            print(f"{r['label']:<14}{fmt_interval(r if r['n'] else None, 3):>24}"
                  f"{fmt_interval(d if d and d['n'] else None, 3):>28}")

        main_check = injection_check(cfg, out, runs, comp, "judge-eval", args.attempts, WORLD.spoiled[spoiled_before:])
        print(f"\njudge replies spoiled by the world for the evaluation judge: {main_check['injected_replies']}; "
              f"failed judge attempts counted by the evaluation: {main_check['failed_attempts']}")
        print(f"missing after {args.attempts} attempts: report {main_check['missing']}, injected "
              f"{main_check['injected_missing']}")

        # The same comparison judged with one attempt per score (a new judge name, so nothing is cached):
        # here every spoiled reply becomes a missing score, so the counts are far from zero.
        single = cfg.model_copy(update={"name": "bench-1attempt",
                                        "models": cfg.models.model_copy(update={"judge": "bsim/judge-eval-single"}),
                                        "protocol": cfg.protocol.model_copy(update={"judge_attempts": 1})})
        before = len(WORLD.spoiled)
        out1 = evaluate(single)
        runs1 = [EvalStore(single.eval_dir).load(f"main/{comp.name}/{m}") for m in single.methods]
        single_check = injection_check(single, out1, runs1, comp, "judge-eval-single", 1, WORLD.spoiled[before:])
        print(f"with a single judge attempt: missing in the report {single_check['missing']}, injected "
              f"{single_check['injected_missing']}")
        result = {
            "methods": [METHOD_LABELS[m] for m in cfg.methods],
            "wall_s": round(wall, 2),
            "missing_match_injected": main_check["match"] and single_check["match"],
            "missing": main_check["missing"],
            "injected_missing_after_retries": main_check["injected_missing"],
            "injected_malformed_replies": main_check["injected_replies"],
            "failed_judge_attempts": main_check["failed_attempts"],
            "missing_single_attempt": single_check["missing"],
            "injected_single_attempt": single_check["injected_missing"],
            "malformed_rate": args.malformed,
            "judge_attempts": args.attempts,
            "responses": sum(r.summary.responses for r in runs),
            "test_prompts": args.test,
            "optimize_wall_s": round(optimize_s, 2),
            "calls_by_method": calls_by_method,
            # bootstrap 95% intervals over the test prompts: conformity per method, PICACO minus each baseline
            "conformity_ci": {r["label"]: [round(r["mean"], 3), round(r["lo"], 3), round(r["hi"], 3)]
                              for r in out["intervals"] if r["value"] == "conformity" and r["n"]},
            "picaco_minus_ci": {r["label"]: [round(r["mean"], 3), round(r["lo"], 3), round(r["hi"], 3)]
                                for r in out["paired"] if r["n"]},
            "report": out["report"] if args.keep else None,  # the temporary folder is removed
        }
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))
    return 0 if result["missing_match_injected"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
