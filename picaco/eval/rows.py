"""The rows of the evaluation's tables (see picaco/eval/report.py for each table), shared by the report
and the figures."""

from __future__ import annotations

import json

from picaco.eval.metrics import jailbreak_shares
from picaco.eval.stats import method_intervals, paired_difference, per_prompt_scores
from picaco.eval.store import MethodRun


def summary_rows(runs: list[MethodRun]) -> list[dict]:
    rows = []
    for r in runs:
        s, c = r.summary, r.calls()
        by_role = {role: int(u.get("calls", 0)) for role, u in r.usage_by_role.items()}
        rows.append({
            "key": r.key, "group": r.group, "composition": r.composition, "method": r.method, "label": r.label,
            "variant": r.variant, "overall": s.overall, "mu_conf": s.mu_conf, "relevance": s.relevance,
            "mu_conf_weighted": s.mu_conf_weighted, "cv": s.cv, "queries": s.queries, "queries_scored": s.queries_scored,
            "responses": s.responses, "empty": s.empty, "judged": s.judged, "missing": s.missing,
            "judge_attempts": s.judge_attempts, "relevance_missing": s.relevance_missing,
            "requests": c["requests"], "provider_calls": c["calls"], "samples_hit": c["samples_hit"],
            "samples_fetched": c["samples_miss"], "tokens": c["prompt_tokens"] + c["completion_tokens"],
            "target_calls": by_role.get("target", 0), "judge_calls": by_role.get("judge", 0),
            "optimizer_calls": by_role.get("optimizer", 0), "other_calls": by_role.get("other", 0),
            "wall_s": r.wall_s,
        })
    return rows


def value_rows(runs: list[MethodRun]) -> list[dict]:
    rows = []
    for r in runs:
        base = {"key": r.key, "group": r.group, "composition": r.composition, "method": r.method, "label": r.label,
                "variant": r.variant}
        for v, m in r.summary.value_means.items():
            rows.append({**base, "value": v, "mean": m})
        if r.relevance:
            rows.append({**base, "value": "Relevance", "mean": r.summary.relevance})
    return rows


def response_rows(runs: list[MethodRun]) -> list[dict]:
    return [{"key": r.key, "composition": r.composition, "method": r.method, "label": r.label, "variant": r.variant,
             "prompt_id": x.prompt_id, "prompt": r.prompts.get(x.prompt_id, ""), "bucket": x.bucket,
             "sample": x.sample, "response": x.text, "status": x.status, "judge_attempts": x.judge_attempts,
             "scores": json.dumps(x.scores) if x.scores is not None else None, "relevance": x.relevance,
             "relevance_status": x.relevance_status}
            for r in runs for x in r.responses]


def score_rows(runs: list[MethodRun]) -> list[dict]:
    return [{"key": r.key, "composition": r.composition, "method": r.method, "label": r.label, "variant": r.variant,
             "prompt_id": x.prompt_id, "bucket": x.bucket, "sample": x.sample, "value": v, "score": s}
            for r in runs for x in r.responses if x.scores is not None for v, s in x.scores.items()]


def value_set_rows(runs: list[MethodRun]) -> list[dict]:
    """Fig. 3: per size n, each method's mean conformity, its delta over Q on the same n values, and CV."""
    vs = [r for r in runs if r.group == "value_sets"]
    base = {r.variant: r.summary.mu_conf for r in vs if r.method == "q"}
    rows = []
    for r in sorted(vs, key=lambda r: (int(r.variant or 0), r.method != "q", r.method)):
        q = base.get(r.variant)
        mu = r.summary.mu_conf
        rows.append({"n": int(r.variant or 0), "method": r.method, "label": r.label, "mu_conf": mu,
                     "delta_vs_q": mu - q if (mu is not None and q is not None) else None, "cv": r.summary.cv,
                     "missing": r.summary.missing})
    return rows


def jailbreak_rows(runs: list[MethodRun], threshold: float) -> list[dict]:
    rows = []
    for r in runs:
        if r.group != "jailbreak":
            continue
        sh = jailbreak_shares(r.responses, threshold)
        rows.append({"method": r.method, "label": r.label, "composition": r.composition,
                     "queries_scored": sh.queries_scored, "helpful_share": sh.helpful_share,
                     "toxic_share": sh.toxic_share, "threshold": threshold, "missing": r.summary.missing})
    return rows


def interval_rows(runs: list[MethodRun], b: int, seed: int) -> list[dict]:
    """Per main-group method and value (and "conformity": each prompt's mean over the values; with relevance
    also "Relevance" and "mu_conf_weighted", Eq. 7), the mean over test prompts with its percentile
    bootstrap 95% interval (picaco/eval/stats.py)."""
    rows = []
    for r in runs:
        if r.group != "main":
            continue
        for v, iv in method_intervals(r.responses, r.value_names, b=b, seed=seed, purpose=r.key,
                                      relevance=r.relevance).items():
            rows.append({"composition": r.composition, "method": r.method, "label": r.label, "value": v,
                         **({"mean": iv.mean, "lo": iv.lo, "hi": iv.hi, "n": iv.n} if iv else
                            {"mean": None, "lo": None, "hi": None, "n": 0})})
    return rows


def paired_rows(runs: list[MethodRun], b: int, seed: int) -> list[dict]:
    """PICACO minus each baseline, prompt by prompt on the prompts both scored: the mean difference of
    conformity with its bootstrap 95% interval (an interval above 0: PICACO better on these prompts)."""
    main = [r for r in runs if r.group == "main"]
    rows = []
    for pic in (r for r in main if r.method == "picaco"):
        mine = per_prompt_scores(pic.responses, pic.value_names)["conformity"]
        for other in (r for r in main if r.composition == pic.composition and r.method != "picaco"):
            theirs = per_prompt_scores(other.responses, other.value_names)["conformity"]
            iv = paired_difference(mine, theirs, b=b, seed=seed, purpose=f"{pic.key}-{other.key}")
            rows.append({"composition": pic.composition, "method": other.method, "label": other.label,
                         **({"mean": iv.mean, "lo": iv.lo, "hi": iv.hi, "n": iv.n} if iv else
                            {"mean": None, "lo": None, "hi": None, "n": 0})})
    return rows
