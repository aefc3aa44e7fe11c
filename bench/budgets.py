"""Matched budgets: PICACO against OPRO at several budgets on the simulated world, and the q_phi ablation.
Prints the tables and ends with one JSON line.

    .venv/bin/python bench/budgets.py [--budgets b1,b2,b3,b4,paper] [--test 34] [--ablation b3] [--work DIR]
    .venv/bin/python bench/budgets.py --picaco-only paper     # just optimize one budget (to warm the cache)

The budget is the number of paid chat calls of the optimization (target + judge + optimizer; embeddings
run locally and are counted apart; docs/evaluation.md, "Matched budgets"):
- PICACO at budget (N, M2, T), M1 = 10, n = 10, 3 buckets x 3 samples, 20 raw samples per prompt: the
  calls paid from the noisy pool to the end of iteration T on a fresh cache (the judge probe before it
  and the final report after it are not optimization), read from the run's call log.
- OPRO on the same query set X (the first N prompts), M2 new instructions per step, one response per
  prompt, the same judge model as PICACO's q_w and the same optimizer model: its steps T_opro are chosen
  so that its calls match PICACO's as closely as whole steps allow (each scored candidate costs about
  2N calls, each step M2 optimizer calls); its actual calls are reported beside PICACO's.
Both are evaluated like Table 1 (all eleven methods, `picaco evaluate`) on the same held-out test
prompts after the largest X (HH demo prompts 51..), by a separate evaluation judge, with per-query
demonstrations; quality is the conformity mean with its seeded bootstrap 95% interval over test prompts,
and PICACO minus OPRO is paired by prompt.

The q_phi ablation: PICACO at one budget with `picaco.redundancy_weight` 1 (Eq. 4-5 as written) and 0 (w_ij
= beta * sum_k log q_w only), both evaluated with the Fig. 10 relevance judge switched on: conformity,
relevance and mu'_conf (Eq. 7) with intervals, and the paired difference on minus off.

PICACO's embedding is the simulator's hashed bag of words by default (`--embedding`; with MiniLM the paper
budget did not finish iteration 1 of 10 in 11 min on this loaded machine). Everything goes through caches under --work (default
artifacts/bench-budgets/<embedding>): one per PICACO run (so
each run's calls are those of a fresh cache) and one for the evaluations; a rerun pays nothing and a
killed run resumes. The figure is written to <work>/budgets.png.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from picaco.config import parse_run_config  # noqa: E402
from picaco.demo import ground_truth  # noqa: E402
from picaco.eval.config import METHOD_LABELS, parse_eval_config  # noqa: E402
from picaco.eval.runner import evaluate, load_runs  # noqa: E402
from picaco.eval.stats import per_prompt_relevance, per_prompt_scores  # noqa: E402
from picaco.io import atomic_write_text  # noqa: E402
from picaco.llm.calllog import read_call_log, usage_by_role  # noqa: E402
from picaco.method.run import optimize  # noqa: E402
from picaco.stats import bootstrap_mean, fmt_interval, paired_difference, weighted_conformity  # noqa: E402
from picaco.values import load_composition  # noqa: E402

URIAL = ROOT.parent / "shared" / "data" / "urial" / "inst_1k_v4.txt"
# label -> (N, M2, T); "paper" is App. C.1's budget (N=50, M1=10, M2=15, T=10)
BUDGETS: dict[str, tuple[int, int, int]] = {"b1": (10, 5, 1), "b2": (10, 5, 3), "b3": (20, 10, 3),
                                            "b4": (30, 15, 5), "paper": (50, 15, 10)}
TEST_OFFSET = 50  # the test prompts follow the largest X, so every budget is judged on the same prompts
CHAT_ROLES = ("target", "judge", "optimizer")
SEED = 0
B = 1000


def run_config(work: Path, label: str, redundancy_weight: float = 1.0, embedding: str = "sim/embedding"):
    n, m2, t = BUDGETS[label]
    name = f"picaco-{label}" + ("" if redundancy_weight == 1.0 else f"-rw{redundancy_weight:g}")
    return parse_run_config({
        "run_name": name, "composition": "hh_balance", "prompts": {"demo_family": "hh"},
        "models": {"target": "sim/target", "judge": "sim/judge", "embedding": embedding},
        "picaco": {"n_prompts": n, "m1": 10, "m2": m2, "iterations": t, "n_pe_samples": 10, "noisy_samples": 20,
                   "buckets": 3, "samples_per_bucket": 3, "held_out": 0, "redundancy_weight": redundancy_weight},
        # each run pays on a cache of its own: a smaller budget's X is a prefix of a larger one's, so on a
        # shared cache it would be answered by the other run's calls and look free
        "client": {"cache_dir": str(work / f"cache-{name}"), "providers": {"sim": {"kind": "sim",
                                                                                    "options": {"world": "values"}}}},
        "runs_dir": str(work / "runs"), "seed": SEED})


def _paid(log: Path) -> dict[str, dict[str, int]]:
    return {role: {"calls": u["calls"], "tokens": u["prompt_tokens"] + u["completion_tokens"]}
            for role, u in usage_by_role(read_call_log(log)).items()}


def _minus(a: dict, b: dict) -> dict:
    return {role: {k: v - b.get(role, {}).get(k, 0) for k, v in u.items()} for role, u in a.items()}


def optimize_measured(cfg) -> tuple[object, dict]:
    """Optimize (or resume) and return the result with the paid calls of the optimization by role.

    The call log is read when the noisy pool starts and when the final report starts; the first reading
    is kept from the run's first start, so a resumed run counts what its restarts paid as well. Kept in
    <runs_dir>/<run>.budget.json, beside the run, so a cached rerun reports the same figures."""
    record_path = cfg.runs_dir / f"{cfg.run_name}.budget.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    log = cfg.run_dir / "calls.jsonl"

    def on_event(kind: str, t: int, **_) -> None:
        if kind in ("noisy_pool", "final") and ("start" if kind == "noisy_pool" else "end") not in record:
            record["start" if kind == "noisy_pool" else "end"] = _paid(log)
            atomic_write_text(record_path, json.dumps(record))
        if kind in ("iteration", "final"):
            print(f"    {cfg.run_name}: {kind} t={t} ({time.perf_counter() - t0:.0f} s)", flush=True)

    t0 = time.perf_counter()
    result = optimize(cfg, on_event=on_event)
    if "start" not in record or "end" not in record:
        raise SystemExit(f"{record_path}: no call counts for run {cfg.run_name} (it finished before this bench "
                         f"measured it); delete {cfg.run_dir} and that file to measure it again")
    spent = _minus(record["end"], record["start"])
    return result, {role: spent.get(role, {"calls": 0, "tokens": 0}) for role in (*CHAT_ROLES, "embedding")}


def opro_steps(picaco_calls: int, n: int, m2: int) -> int:
    """OPRO's steps T whose calls come closest to `picaco_calls`: the seed's score costs 2N calls (N target,
    N judge) and each step M2 optimizer calls plus M2 scores of 2N calls."""
    per_step = m2 * (2 * n + 1)
    return max(1, round((picaco_calls - 2 * n) / per_step))


def eval_config(work: Path, name: str, result: Path, test: int, opro: tuple[int, int] | None,
                methods: list[str], relevance: str = "auto"):
    raw = {"name": name, "compositions": ["hh_balance"], "methods": methods,
           "prompts": {"demo_family": "hh", "offset": TEST_OFFSET, "count": test}, "picaco": {"result": str(result)},
           "models": {"target": "sim/target", "judge": "sim/judge-eval", "scorer": "sim/judge", "teacher": "sim/teacher"},
           "protocol": {"relevance": relevance}, "urial": {"prompt": str(URIAL)},
           "stats": {"bootstrap": B}, "client": {"cache_dir": str(work / "cache-eval"),
                                                 "providers": {"sim": {"kind": "sim", "options": {"world": "values"}}}},
           "out_dir": str(work / "eval"), "seed": SEED}
    if opro is not None:
        raw["opro"] = {"iterations": opro[0], "per_iteration": opro[1]}
    return parse_eval_config(raw)


def _iv(iv) -> dict | None:
    return None if iv is None else {"mean": round(iv.mean, 4), "lo": round(iv.lo, 4), "hi": round(iv.hi, 4), "n": iv.n}


def budget_point(work: Path, label: str, test: int, embedding: str) -> dict:
    n, m2, t = BUDGETS[label]
    cfg = run_config(work, label, embedding=embedding)
    print(f"\n[{label}] PICACO N={n}, M1=10, M2={m2}, T={t}", flush=True)
    _, spent = optimize_measured(cfg)
    calls_p = sum(spent[r]["calls"] for r in CHAT_ROLES)
    t_opro = opro_steps(calls_p, n, m2)
    ecfg = eval_config(work, f"budget-{label}", cfg.run_dir / "result.json", test, (t_opro, m2), list(METHOD_LABELS))
    print(f"[{label}] PICACO paid {calls_p} chat calls {({r: spent[r]['calls'] for r in CHAT_ROLES})}; "
          f"OPRO gets T={t_opro}, M2={m2}; evaluating all methods on {test} test prompts", flush=True)
    evaluate(ecfg)
    runs = {r.method: r for r in load_runs(ecfg)}
    usage = runs["opro"].info.get("optimization_usage", {})
    calls_o = sum(usage.get(r, {}).get("requests", 0) for r in CHAT_ROLES)
    conf = {m: per_prompt_scores(r.responses, r.value_names)["conformity"] for m, r in runs.items()}
    means = {m: bootstrap_mean([c[q] for q in sorted(c)], b=B, seed=SEED, purpose=f"budgets/{label}/{m}")
             for m, c in conf.items()}
    minus = {m: paired_difference(conf["picaco"], conf[m], b=B, seed=SEED, purpose=f"budgets/{label}/picaco-{m}")
             for m in conf if m != "picaco"}
    d = minus["opro"]
    # the world's exact expected conformity of each instruction (no sampling, no judge): is the judge's
    # verdict the truth's?
    truth = ground_truth(cfg, {"picaco": runs["picaco"].info["instruction"], "opro": runs["opro"].info["instruction"],
                               "seed": load_composition("hh_balance").seed_instruction})
    gt = {k: round(v["conformity"], 4) for k, v in truth["per_instruction"].items()}
    return {"truth": {**gt, "optimum": round(truth["optimum"], 4)},"label": label, "N": n, "M2": m2, "T": t, "T_opro": t_opro, "calls_picaco": calls_p, "calls_opro": calls_o,
            "tokens_picaco": sum(spent[r]["tokens"] for r in CHAT_ROLES),
            "tokens_opro": sum(usage.get(r, {}).get("prompt_tokens", 0) + usage.get(r, {}).get("completion_tokens", 0)
                               for r in CHAT_ROLES),
            "embedding_calls_picaco": spent["embedding"]["calls"],
            "picaco": _iv(means["picaco"]), "opro": _iv(means["opro"]), "diff": _iv(d),
            "minus": {METHOD_LABELS[m]: _iv(iv) for m, iv in minus.items()},
            "means": {METHOD_LABELS[m]: _iv(iv) for m, iv in means.items()},
            "instruction_picaco": runs["picaco"].info.get("instruction"),
            "instruction_opro": runs["opro"].info.get("instruction")}


def ablation(work: Path, label: str, test: int, embedding: str) -> dict:
    """PICACO with and without the redundancy term, evaluated with the relevance judge on."""
    out, data = {}, {}
    for rw, key in ((1.0, "q_phi_on"), (0.0, "q_phi_off")):
        cfg = run_config(work, label, redundancy_weight=rw, embedding=embedding)
        print(f"\n[ablation {label}] PICACO redundancy_weight={rw:g}", flush=True)
        result, _ = optimize_measured(cfg)
        ecfg = eval_config(work, f"ablation-{label}-{key}", cfg.run_dir / "result.json", test, None, ["picaco"],
                           relevance="on")
        evaluate(ecfg)
        run = load_runs(ecfg)[0]
        conf = per_prompt_scores(run.responses, run.value_names)["conformity"]
        rel = per_prompt_relevance(run.responses)
        data[key] = (conf, rel)
        out[key] = {"instruction": result.best_instruction,
                    "truth": round(ground_truth(cfg, {"e": result.best_instruction})["per_instruction"]["e"]["conformity"], 4),
                    "conformity": _iv(bootstrap_mean([conf[q] for q in sorted(conf)], b=B, seed=SEED,
                                                     purpose=f"ablation/{key}/conformity")),
                    "relevance": _iv(bootstrap_mean([rel[q] for q in sorted(rel)], b=B, seed=SEED,
                                                    purpose=f"ablation/{key}/relevance")),
                    "mu_conf_weighted": _iv(weighted_conformity(conf, rel, b=B, seed=SEED,
                                                                purpose=f"ablation/{key}/weighted"))}
    for i, what in enumerate(("conformity", "relevance")):
        out[f"{what}_on_minus_off"] = _iv(paired_difference(data["q_phi_on"][i], data["q_phi_off"][i], b=B, seed=SEED,
                                                            purpose=f"ablation/{what}"))
    out["budget"] = label
    return out


def plot(points: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, calls, color in (("picaco", "calls_picaco", "tab:blue"), ("opro", "calls_opro", "tab:orange")):
        xs = [p[calls] for p in points]
        ys = [p[key]["mean"] for p in points]
        err = [[p[key]["mean"] - p[key]["lo"] for p in points], [p[key]["hi"] - p[key]["mean"] for p in points]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, color=color, label=key.upper())
    for label, style in (("Q+IF", ":"), ("Q+IF+CoT", "--")):
        m = points[-1]["means"].get(label)
        if m:
            ax.axhline(m["mean"], linestyle=style, color="grey", label=f"{label} (no optimization)")
    ax.set_xscale("log")
    ax.set_xlabel("paid chat calls of the optimization (target + judge + optimizer)")
    ax.set_ylabel("held-out conformity (1-5), 95% CI")
    ax.legend(fontsize=8)
    xs = list(range(len(points)))
    bx.errorbar(xs, [p["diff"]["mean"] for p in points],
                yerr=[[p["diff"]["mean"] - p["diff"]["lo"] for p in points],
                      [p["diff"]["hi"] - p["diff"]["mean"] for p in points]], marker="o", capsize=3, color="tab:green")
    bx.axhline(0, color="black", linewidth=0.8)
    bx.set_xticks(xs, [f"{p['label']}\n{p['calls_picaco']}/{p['calls_opro']}" for p in points], fontsize=8)
    bx.set_xlabel("budget (paid calls PICACO / OPRO)")
    bx.set_ylabel("PICACO minus OPRO, paired by prompt, 95% CI")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default=",".join(BUDGETS), help=f"comma-separated labels of {list(BUDGETS)}")
    ap.add_argument("--test", type=int, default=34, help="held-out test prompts (HH demo prompts after the 50th)")
    ap.add_argument("--ablation", default="b3", help="budget of the q_phi ablation ('' to skip)")
    ap.add_argument("--picaco-only", default=None, help="only optimize PICACO at this budget (warms the cache)")
    ap.add_argument("--embedding", default="sim/embedding",
                    help="PICACO's embedding model (st/all-MiniLM-L6-v2: the project default, far slower here)")
    ap.add_argument("--work", type=Path, default=None, help="default: artifacts/bench-budgets/<embedding>")
    args = ap.parse_args(argv)
    args.work = args.work or ROOT / "artifacts" / "bench-budgets" / re.sub(r"[^A-Za-z0-9.-]+", "-", args.embedding)
    labels = [x for x in args.budgets.split(",") if x]
    unknown = [x for x in labels + [args.ablation or "b1", args.picaco_only or "b1"] if x not in BUDGETS]
    if unknown:
        raise SystemExit(f"unknown budget label(s) {unknown}; known: {list(BUDGETS)}")
    if args.picaco_only:
        _, spent = optimize_measured(run_config(args.work, args.picaco_only, embedding=args.embedding))
        print(json.dumps({"budget": args.picaco_only, "spent": spent}))
        return 0
    t0 = time.perf_counter()
    points = [budget_point(args.work, label, args.test, args.embedding) for label in labels]
    print("\nquality against paid calls (held-out conformity, mean [95% CI] over test prompts)")
    print(f"{'budget':<7}{'N':>4}{'M2':>4}{'T':>4}{'T_opro':>7}{'calls P':>9}{'calls O':>9}{'tokens P':>11}"
          f"{'tokens O':>11}{'PICACO':>22}{'OPRO':>22}{'PICACO - OPRO':>24}")
    for p in points:
        print(f"{p['label']:<7}{p['N']:>4}{p['M2']:>4}{p['T']:>4}{p['T_opro']:>7}{p['calls_picaco']:>9}"
              f"{p['calls_opro']:>9}{p['tokens_picaco']:>11}{p['tokens_opro']:>11}{fmt_interval(p['picaco'], 3):>22}"
              f"{fmt_interval(p['opro'], 3):>22}{fmt_interval(p['diff'], 3):>24}")
    print("\nthe world's ground truth of each instruction (expected conformity, no judge; optimum under 150 words)")
    for p in points:
        t = p["truth"]
        print(f"{p['label']:<7} PICACO {t['picaco']:.3f}  OPRO {t['opro']:.3f}  seed {t['seed']:.3f}  "
              f"optimum {t['optimum']:.3f}  (ratios {t['picaco'] / t['optimum']:.3f} / {t['opro'] / t['optimum']:.3f})")
    print("\nPICACO minus each method, paired by prompt, per budget")
    others = [lab for lab in METHOD_LABELS.values() if lab != "PICACO"]
    print(f"{'method':<14}" + "".join(f"{p['label']:>24}" for p in points))
    for lab in others:
        print(f"{lab:<14}" + "".join(f"{fmt_interval(p['minus'].get(lab), 3):>24}" for p in points))
    figure = plot(points, args.work / "budgets.png")
    print(f"\nfigure: {figure}")
    abl = ablation(args.work, args.ablation, args.test, args.embedding) if args.ablation else None
    if abl:
        print(f"\nq_phi ablation at {abl['budget']} (relevance judge on):")
        for key in ("q_phi_on", "q_phi_off"):
            a = abl[key]
            print(f"  {key:<10} conformity {fmt_interval(a['conformity'], 3)}, relevance {fmt_interval(a['relevance'], 3)}"
                  f", mu'_conf {fmt_interval(a['mu_conf_weighted'], 3)}, ground truth {a['truth']:.3f}")
        print(f"  on minus off: conformity {fmt_interval(abl['conformity_on_minus_off'], 3)}, relevance "
              f"{fmt_interval(abl['relevance_on_minus_off'], 3)}")
    largest = points[-1]
    result = {
        "budget_measure": "paid chat calls of the optimization (target + judge + optimizer)",
        "budget_curve_points": [{"budget": p["label"], "calls_picaco": p["calls_picaco"], "calls_opro": p["calls_opro"],
                                 "picaco": p["picaco"]["mean"], "opro": p["opro"]["mean"], "diff": p["diff"]["mean"],
                                 "lo": p["diff"]["lo"], "hi": p["diff"]["hi"]} for p in points],
        "paired_diff_picaco_vs_q_if": {"budget": largest["label"], **largest["minus"]["Q+IF"]},
        "ground_truth": {p["label"]: p["truth"] for p in points},
        "paper_budget_reached": largest["label"] == "paper",
        "picaco_minus_at_largest_budget": {k: [v["mean"], v["lo"], v["hi"]] for k, v in largest["minus"].items()},
        "q_phi_ablation": abl,
        "embedding": args.embedding, "test_prompts": args.test, "bootstrap": B, "seed": SEED, "figure": str(figure),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
