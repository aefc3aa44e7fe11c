"""picaco.method.result: the history rows, the result's Markdown and the per-iteration artifacts."""

from __future__ import annotations

import math

from picaco.method.result import (
    HistoryRow,
    OptimizeResult,
    history_row,
    iteration_markdown,
    iteration_table,
    result_markdown,
)
from picaco.method.state import Candidate, EStepReport, IterationState, MStepReport


def _iteration(t: int, candidates: list[Candidate], best: Candidate, conformity: float = 3.5) -> IterationState:
    estep = EStepReport(instruction="prev", responses=6, judged=5, missing=1, judge_attempts=7,
                        value_means={"Care": 3.0, "Honesty": None}, conformity=conformity, mean_q_phi=0.9)
    mstep = MStepReport(proposed=2, new_unique=2, skipped=[], kept=1, best_changed=best.born == t)
    return IterationState(t=t, best=best, candidates=candidates, pools={}, estep=estep, mstep=mstep,
                          usage_by_role={"judge": {"calls": 2, "samples_hit": 1, "samples_miss": 3,
                                                   "prompt_tokens": 10, "completion_tokens": 5}})


def test_history_row_of_an_iteration():
    best = Candidate(instruction="b", born=1, tc=-1.25)
    assert history_row(_iteration(1, [best], best)) == HistoryRow(t=1, tc=-1.25, conformity_under_previous_best=3.5,
                                                                  best_changed=True)


def test_iteration_table_ranks_scored_candidates_first_and_shortens_long_instructions():
    long_text = "x" * 200
    a = Candidate(instruction="a", born=1, tc=-2.0, aligned_term=-2.5, noisy_term=0.5)
    b = Candidate(instruction=long_text, born=1, tc=-1.0)
    unscored = Candidate(instruction="u", born=1, tc=math.nan)
    rows = iteration_table(_iteration(1, [unscored, a, b], b))
    assert [(r["rank"], r["tc_e"], r["best"]) for r in rows][:2] == [(1, -1.0, True), (2, -2.0, False)]
    assert rows[2]["instruction"] == "u" and rows[2]["rank"] == 3
    assert rows[0]["instruction"] == "x" * 157 + "..." and rows[1]["aligned_term"] == -2.5


def test_iteration_markdown_shows_tc_per_iteration_so_far_and_the_calls():
    first_best = Candidate(instruction="first", born=1, tc=-3.0)
    best = Candidate(instruction="line one\nline two", born=2, tc=-2.0)
    md = iteration_markdown(_iteration(2, [best], best, conformity=3.25), [_iteration(1, [first_best], first_best),
                                                                        _iteration(3, [best], best)])
    assert "## Iteration 2" in md and "(born in iteration 2; changed: True)" in md
    assert "| 1 | -3.0000 | 3.500 |" in md and "| 2 | -2.0000 | 3.250 |" in md and "\n| 3 | -2.0000" not in md
    assert "| Honesty | - |" in md and "> line one\n> line two" in md
    assert "| judge | 2 | 1 | 3 | 15 |" in md


def test_result_markdown_has_the_instruction_scores_and_history():
    result = OptimizeResult(run_name="r", composition="hh_balance", best_instruction="Be kind.\nBe honest.",
                            best_tc=-1.0, best_born=2, value_scores={"Care": 4.0, "Honesty": None}, conformity=4.0,
                            missing_judgements=2, filtered_replies=1, seed_instruction="seed",
                            seed_value_scores={"Care": 3.0}, seed_conformity=3.0,
                            history=[HistoryRow(t=1, tc=-1.5, conformity_under_previous_best=3.0, best_changed=True)])
    md = result_markdown(result)
    assert md.startswith("# PICACO result: r\n") and "> Be kind.\n> Be honest." in md
    assert "| Care | 3.000 | 4.000 |" in md and "| Honesty | - | - |" in md
    assert "Missing judge scores: 2." in md and "content filter (left out as missing): 1." in md
    assert "| 1 | -1.5000 | 3.000 |" in md
    assert "Judge probe" not in md and "held-out prompts" not in md
