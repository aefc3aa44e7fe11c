"""Bootstrap intervals over test prompts, paired differences, and demonstrations drawn per query."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from eval_helpers import eval_raw

from picaco.eval import evaluate
from picaco.eval.config import parse_eval_config
from picaco.eval.methods.base import EvalContext
from picaco.eval.metrics import ResponseRecord
from picaco.eval.stats import bootstrap_mean, paired_difference, per_prompt_scores, weighted_conformity
from picaco.values import load_composition


def test_the_percentile_interval_matches_the_normal_approximation_on_a_large_sample():
    x = np.random.default_rng(7).normal(3.0, 1.0, size=400)
    iv = bootstrap_mean(x, b=2000, seed=0, purpose="t")
    half = 1.96 * x.std() / np.sqrt(len(x))
    assert iv.mean == pytest.approx(x.mean())
    assert iv.lo < iv.mean < iv.hi
    assert (iv.hi - iv.lo) / 2 == pytest.approx(half, rel=0.15)


def test_the_interval_is_seeded_and_a_constant_has_no_spread():
    x = list(np.random.default_rng(3).uniform(1, 5, size=30))
    assert bootstrap_mean(x, b=500, seed=1, purpose="a") == bootstrap_mean(x, b=500, seed=1, purpose="a")
    assert bootstrap_mean(x, b=500, seed=1, purpose="a") != bootstrap_mean(x, b=500, seed=2, purpose="a")
    flat = bootstrap_mean([4.0] * 6, b=500, seed=1, purpose="a")
    assert (flat.lo, flat.mean, flat.hi) == (4.0, 4.0, 4.0)
    assert bootstrap_mean([], b=500, seed=1, purpose="a") is None


def test_the_paired_difference_uses_only_the_prompts_both_scored():
    a = {"p1": 4.0, "p2": 3.0, "p3": 5.0}
    b = {"p1": 3.5, "p2": 2.5, "p4": 1.0}
    iv = paired_difference(a, b, b=500, seed=0, purpose="x")
    assert (iv.mean, iv.lo, iv.hi, iv.n) == (0.5, 0.5, 0.5, 2)


def test_per_prompt_conformity_averages_responses_first_and_skips_prompts_with_a_value_unjudged():
    def rec(pid, scores):
        return ResponseRecord(prompt_id=pid, bucket=0, sample=0, text="t", scores=scores,
                              status="judged" if scores else "missing")

    records = [rec("p1", {"A": 5, "B": 3}), rec("p1", {"A": 3, "B": 3}), rec("p2", None), rec("p3", {"A": 2, "B": 4})]
    s = per_prompt_scores(records, ["A", "B"])
    assert s["A"] == {"p1": 4.0, "p3": 2.0} and s["conformity"] == {"p1": 3.5, "p3": 3.0}


def _ctx(tmp_path, tape_key, demos: str) -> EvalContext:
    cfg = parse_eval_config(eval_raw(tmp_path, tape_key, protocol={"demos": demos}))
    return EvalContext(config=cfg, composition=load_composition("hh_balance"), client=None)


def test_demonstrations_are_drawn_per_query_by_default_and_shared_on_request(tape, tmp_path):
    _, key = tape
    per_query = _ctx(tmp_path, key, "per_query")
    assert per_query.config.protocol.demos == "per_query" == parse_eval_config(eval_raw(tmp_path, key)).protocol.demos
    queries = [f"query {i}" for i in range(8)]
    draws = {tuple(d.query for d in per_query.demos_for(0, q)) for q in queries}
    assert len(draws) > 1, "different queries get different demonstrations"
    assert per_query.demos_for(1, "query 3") == per_query.demos_for(1, "query 3"), "the same for every method"
    shared = _ctx(tmp_path, key, "shared")
    assert {tuple(d.query for d in shared.demos_for(0)) for _ in queries} == {tuple(d.query for d in shared.buckets()[0])}


def test_the_report_shows_intervals_and_paired_differences(tape, tmp_path):
    _, key = tape
    cfg = parse_eval_config(eval_raw(tmp_path, key, methods=["q", "q_if", "picaco"], prompts={"count": 3},
                                     picaco={"instruction": "Reflect every value in a balanced way."},
                                     stats={"bootstrap": 200}))
    out = evaluate(cfg)
    report = open(out["report"], encoding="utf-8").read()
    assert "## Uncertainty (picaco's extension)" in report and "B = 200" in report
    assert "| PICACO minus | HH Balance-8 |" in report
    intervals = pl.read_parquet(cfg.eval_dir / "intervals.parquet")
    summary = {r["method"]: r for r in out["summary"]}
    for row in intervals.filter(pl.col("value") == "conformity").iter_rows(named=True):
        assert row["lo"] <= row["mean"] <= row["hi"] and row["n"] == 3
        assert row["mean"] == pytest.approx(summary[row["method"]]["mu_conf"])
    paired = pl.read_parquet(cfg.eval_dir / "paired.parquet")
    assert sorted(paired["method"]) == ["q", "q_if"]
    conf = {r["method"]: r["mean"] for r in intervals.filter(pl.col("value") == "conformity").iter_rows(named=True)}
    for row in paired.iter_rows(named=True):
        assert row["mean"] == pytest.approx(conf["picaco"] - conf[row["method"]])


def test_the_weighted_interval_resamples_prompts_together_and_multiplies_the_two_means():
    conf, rel = {"p1": 5.0, "p2": 1.0, "p3": 4.0}, {"p1": 5.0, "p2": 1.0, "p4": 2.0}
    iv = weighted_conformity(conf, rel, b=500, seed=0, purpose="w")
    # only p1 and p2 have both; the product of the means (3 x 3 / 5), not the mean of products (2.6)
    assert iv.n == 2 and iv.mean == pytest.approx(1.8)
    assert iv.lo < iv.mean < iv.hi and iv.lo >= 0.2 - 1e-9 and iv.hi <= 5.0 + 1e-9
    assert weighted_conformity(conf, rel, b=500, seed=0, purpose="w") == iv
    flat = weighted_conformity({"a": 4.0, "b": 4.0}, {"a": 2.5, "b": 2.5}, b=200, seed=0, purpose="w")
    assert (flat.lo, flat.mean, flat.hi) == pytest.approx((2.0, 2.0, 2.0))
    assert weighted_conformity(conf, {"x": 1.0}, b=200, seed=0, purpose="w") is None


def test_with_relevance_the_report_gives_relevance_and_mu_conf_weighted_intervals(tape, tmp_path):
    _, key = tape
    cfg = parse_eval_config(eval_raw(tmp_path, key, methods=["q", "q_if"], prompts={"count": 4},
                                     protocol={"judge_attempts": 2, "relevance": "on"}, stats={"bootstrap": 200}))
    out = evaluate(cfg)
    intervals = pl.read_parquet(cfg.eval_dir / "intervals.parquet")
    summary = {r["method"]: r for r in out["summary"]}
    for method in ("q", "q_if"):
        rows = {r["value"]: r for r in intervals.filter(pl.col("method") == method).iter_rows(named=True)}
        w, rel = rows["mu_conf_weighted"], rows["Relevance"]
        assert w["n"] == 4 and w["lo"] <= w["mean"] <= w["hi"] and w["lo"] < w["hi"]
        assert w["mean"] == pytest.approx(summary[method]["mu_conf_weighted"])
        assert rel["mean"] == pytest.approx(summary[method]["relevance"])
    report = open(out["report"], encoding="utf-8").read()
    assert "Relevance-weighted mu'_conf = mu_conf x Relevance / 5" in report
    iv = {r["method"]: r for r in intervals.filter(pl.col("value") == "mu_conf_weighted").iter_rows(named=True)}
    assert f"| Q+IF | {iv['q_if']['mean']:.2f} [{iv['q_if']['lo']:.2f}, {iv['q_if']['hi']:.2f}] |" in report
