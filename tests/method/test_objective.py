"""Eq. (4)-(6) and the pool updates against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from picaco.base.errors import PicacoError
from picaco.method.estimators import cosine, p_e, q_phi
from picaco.method.objective import log_q_phi, normalize_pe, response_weight, tc_objective
from picaco.method.picaco import select_best, stratified_examples
from picaco.method.pools import AlignedEntry, NoisyEntry, select_noisy_pool, update_aligned_pool
from picaco.method.state import Candidate
from picaco.rng import derive_rng


def test_response_weight_is_eq4_bracket():
    # sum_k log(q_w^beta / q_phi^(1/K)) with q_w = 5/5, 4/5; q_phi = 0.8; beta = 5; K = 2
    w = response_weight({"a": 5, "b": 4}, q_phi=0.8, beta=5.0, floor=0.05)
    expected = (5 * math.log(1.0) - 0.5 * math.log(0.8)) + (5 * math.log(0.8) - 0.5 * math.log(0.8))
    assert w == pytest.approx(expected) and w == pytest.approx(4 * math.log(0.8))


def test_response_weight_rejects_scores_outside_1_to_5():
    with pytest.raises(ValueError, match="'a'.*within 1-5"):
        response_weight({"a": 6}, 1.0, 1.0, 0.05)


def test_log_q_phi_is_floored_not_infinite():
    assert log_q_phi(-0.2, 0.05) == pytest.approx(math.log(0.05))
    assert log_q_phi(0.0, 0.05) == pytest.approx(math.log(0.05))
    assert log_q_phi(1.5, 0.05) == pytest.approx(math.log(1.5))


def test_q_phi_eq5():
    y = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    x = np.array([0.0, 1.0])
    s = np.array([[1.0, 0.0], [0.6, 0.8]])
    got = q_phi(y, x, s)
    # y0: max sim to S = 1, sim to x = 0 -> 2; y1: max(0, .8) = .8, sim x = 1 -> .8
    # y2 (unit [.707,.707]): max(.707, .990) = .990, sim x = .707 -> 1.283
    assert got == pytest.approx([2.0, 0.8, 1 + (0.6 + 0.8) / math.sqrt(2) - 1 / math.sqrt(2)], abs=1e-5)


def test_p_e_eq6_is_mean_similarity_to_the_samples():
    pool = np.array([[1.0, 0.0], [0.0, 2.0]])
    samples = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    got = p_e(pool, samples)
    r = 1 / math.sqrt(2)
    assert got == pytest.approx([(1 + 0 + r) / 3, (0 + 1 + r) / 3], abs=1e-6)
    assert cosine(pool, pool) == pytest.approx(np.eye(2), abs=1e-6)


def test_tc_objective_hand_computed_both_weightings():
    aligned = [(np.array([0.6, 0.2]), np.array([-1.0, -3.0])), (np.array([0.5]), np.array([2.0]))]
    noisy = [(np.array([0.2, 0.8]), np.array([math.log(0.5), 0.0])), (np.array([1.0]), np.array([math.log(2.0)]))]
    norm = tc_objective(aligned, noisy, "normalized")
    # prompt 1: p~ = (.75, .25) -> -.75 - .75 = -1.5; prompt 2: p~ = 1 -> 2; mean .25
    assert norm.aligned_term == pytest.approx(0.25)
    # noisy: p~ = (.2,.8) -> .2*log .5; p~ = 1 -> log 2; mean
    assert norm.noisy_term == pytest.approx((0.2 * math.log(0.5) + math.log(2.0)) / 2)
    assert norm.total == pytest.approx(norm.aligned_term + norm.noisy_term)
    paper = tc_objective(aligned, noisy, "paper")
    assert paper.aligned_term == pytest.approx(((0.6 * -1 + 0.2 * -3) + 0.5 * 2) / 2)
    assert norm.prompts_used == 2


def test_empty_pools_are_left_out_of_n():
    out = tc_objective([(np.array([]), np.array([])), (np.array([1.0]), np.array([-2.0]))], [], "normalized")
    assert out.prompts_used == 1 and out.aligned_term == pytest.approx(-2.0)


def test_normalize_pe_clips_negative_similarities():
    assert normalize_pe(np.array([-0.5, 1.0, 3.0])) == pytest.approx([0.0, 0.25, 0.75])
    assert normalize_pe(np.array([-1.0, -1.0])) == pytest.approx([0.5, 0.5])


def test_flipping_the_redundancy_term_changes_the_selected_instruction():
    """Pool: y1 conforms better but copies S (q_phi high); y2 conforms a little less and copies nothing.
    Candidate A makes y1 likely, candidate B makes y2 likely."""
    beta, floor = 0.5, 0.05
    y1 = dict(scores={"Tradition": 5, "Hedonism": 4}, q_phi=2.0)
    y2 = dict(scores={"Tradition": 4, "Hedonism": 4}, q_phi=0.6)
    p_a, p_b = np.array([0.9, 0.3]), np.array([0.3, 0.9])
    noisy = [(np.array([1.0]), np.array([0.0]))]

    def winner(sign: float) -> str:
        w = np.array([response_weight(y["scores"], y["q_phi"], beta, floor, redundancy_weight=sign) for y in (y1, y2)])
        cands = [Candidate(instruction=name, born=1, tc=tc_objective([(p, w)], noisy).total)
                 for name, p in (("A", p_a), ("B", p_b))]
        return select_best(cands).instruction

    assert winner(+1.0) == "B"  # the paper's sign penalizes copying
    assert winner(-1.0) == "A"  # flipped, the copier wins
    assert winner(0.0) == "A"  # without q_phi, conformity alone decides


def _entry(text, weight, origin):
    return AlignedEntry(text=text, origin=origin, scores={"v": 3}, q_phi=1.0, weight=weight)


def test_aligned_pool_accumulates_and_keeps_top_m1():
    old = [_entry("a", -1.0, "t001/b0/s000"), _entry("b", -5.0, "t001/b0/s001")]
    new = [_entry("c", -0.5, "t002/b0/s000"), _entry("a", 9.0, "t002/b1/s000"), _entry("d", -1.0, "t002/b0/s001")]
    out = update_aligned_pool(old, new, m1=3)
    # "a" is kept once, as its earliest draw; ties (-1.0) break by origin
    assert [e.text for e in out] == ["c", "a", "d"] and out[1].origin == "t001/b0/s000"
    assert update_aligned_pool(out, [], 3) == out


def test_noisy_pool_keeps_the_most_redundant():
    entries = [NoisyEntry(text=t, origin=f"raw/s{k:03d}", q_phi=q, p=0.5)
               for k, (t, q) in enumerate([("x", 0.9), ("y", 1.4), ("z", 1.1), ("y", 1.4)])]
    assert [e.text for e in select_noisy_pool(entries, 2)] == ["y", "z"]


def test_stratified_examples_span_tc_levels():
    cands = [Candidate(instruction=f"i{k}", born=0, tc=float(k)) for k in range(8)]
    picks = stratified_examples(cands, derive_rng(0, "x"))
    levels = [int(p[1:]) for p in picks]
    assert levels == sorted(levels) and levels[0] <= 1 and levels[-1] >= 6
    one = stratified_examples([Candidate(instruction="seed", born=0)], derive_rng(0, "y"))
    assert one == ["seed"] * 4


def test_select_best_is_deterministic_on_ties():
    a = Candidate(instruction="b-text", born=2, tc=1.0)
    b = Candidate(instruction="a-text", born=1, tc=1.0)
    assert select_best([a, b]).instruction == "a-text"  # older wins
    with pytest.raises(PicacoError, match="no candidate could be scored"):
        select_best([Candidate(instruction="x", born=0)])


def test_unscored_candidates_rank_lowest_everywhere():
    from picaco.method.picaco import dedupe
    from picaco.method.state import Proposal, best_first

    scored = [Candidate(instruction=f"s{k}", born=1, tc=float(k)) for k in range(3)]
    never, nan = Candidate(instruction="never", born=0), Candidate(instruction="nan", born=1, tc=float("nan"))
    everyone = [never, nan, *scored]
    assert [c.instruction for c in best_first(everyone)][:3] == ["s2", "s1", "s0"]
    kept = dedupe(2, everyone, [Proposal(slot=0, instruction="s1", reason=None, attempts=1, filtered=0)], m2=3)
    assert [c.instruction for c in kept.kept] == ["s2", "s1", "s0"] and kept.skipped == [
        "slot 0: duplicate of an existing candidate"]
    # lowest first: with one candidate per stratum, the unscored two fill the lowest strata
    picks = stratified_examples([*everyone, Candidate(instruction="s3", born=1, tc=3.0),
                                 Candidate(instruction="s4", born=1, tc=4.0)], derive_rng(0, "z"), k=7)
    assert set(picks[:2]) == {"never", "nan"} and picks[2:] == ["s0", "s1", "s2", "s3", "s4"]
    assert select_best(everyone).instruction == "s2"
