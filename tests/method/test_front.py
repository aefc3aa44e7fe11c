"""The per-value scores and the Pareto front of candidates (picaco/method/front.py)."""

from __future__ import annotations

import numpy as np
import pytest

from picaco.method.front import front_first, non_dominated, pick, select_balanced, value_estimates, weight_vectors
from picaco.method.picaco import select_best
from picaco.method.state import Candidate

NAMES = ["Tradition", "Hedonism"]


def cand(text: str, tc: float, tradition: float, hedonism: float, born: int = 1) -> Candidate:
    return Candidate(instruction=text, born=born, tc=tc, value_scores={"Tradition": tradition, "Hedonism": hedonism})


def test_value_estimates_weight_the_pool_by_normalized_pe():
    # prompt 1: all p_e on the first response (scores 5, 1); prompt 2: equal p_e over (1, 3) and (3, 5)
    per_prompt = [(np.array([1.0, 0.0]), np.array([[5.0, 1.0], [1.0, 5.0]])),
                  (np.array([0.5, 0.5]), np.array([[1.0, 3.0], [3.0, 5.0]]))]
    est = value_estimates(per_prompt, NAMES)
    assert est == pytest.approx({"Tradition": (5 + 2) / 2, "Hedonism": (1 + 4) / 2})
    assert value_estimates([(np.zeros(0), np.zeros((0, 2)))], NAMES) is None


def test_non_dominated_keeps_only_unbeaten_points():
    points = {"a": {"Tradition": 4.0, "Hedonism": 1.0}, "b": {"Tradition": 1.0, "Hedonism": 4.0},
              "c": {"Tradition": 2.0, "Hedonism": 2.0}, "d": {"Tradition": 1.5, "Hedonism": 1.5},
              "e": {"Tradition": 4.0, "Hedonism": 1.0}, "f": {"Tradition": None, "Hedonism": 5.0}}
    # d is dominated by c; a and e tie (neither dominates); f has no Tradition score
    assert non_dominated(points, NAMES) == ["a", "b", "c", "e"]
    assert non_dominated(points, ["Tradition"]) == ["a", "e"]


def test_pick_follows_the_weights():
    front = {"a": {"Tradition": 4.0, "Hedonism": 1.0}, "b": {"Tradition": 1.0, "Hedonism": 4.0},
             "c": {"Tradition": 3.0, "Hedonism": 3.0}}
    assert pick(front, NAMES, [1, 0]) == "a"
    assert pick(front, NAMES, [0, 1]) == "b"
    assert pick(front, NAMES, [1, 1]) == "c"
    with pytest.raises(ValueError):
        pick(front, NAMES, [0, 0])


def test_weight_vectors_start_balanced_and_cover_each_value():
    assert weight_vectors(2) == [(0.5, 0.5), (1.0, 0.0), (0.0, 1.0)]
    w3 = weight_vectors(3)
    assert w3[0] == pytest.approx((1 / 3,) * 3) and len(w3) == 1 + 3 + 3


def test_chebyshev_selection_differs_from_the_papers_argmax():
    # the TC_e argmax is lopsided; equal Chebyshev weights prefer the balanced candidate
    lopsided = cand("lopsided", tc=-1.0, tradition=4.8, hedonism=1.2)
    balanced = cand("balanced", tc=-1.5, tradition=3.6, hedonism=3.4)
    hedonist = cand("hedonist", tc=-2.0, tradition=1.1, hedonism=4.6)
    dominated = cand("dominated", tc=-1.2, tradition=3.0, hedonism=3.0)
    cands = [lopsided, balanced, hedonist, dominated]
    assert select_best(cands).instruction == "lopsided"
    assert select_balanced(cands, NAMES).instruction == "balanced"
    # the kept set spans the front: each weight vector's best first, the dominated one after them
    order = [c.instruction for c in front_first(cands, NAMES)]
    assert order[:3] == ["balanced", "lopsided", "hedonist"]
    assert order[3] == "dominated"


def test_candidates_without_value_scores_fall_back_to_tc():
    old = [Candidate(instruction="x", born=0, tc=-1.0), Candidate(instruction="y", born=1, tc=-0.5)]
    assert select_balanced(old, NAMES) is None
    assert [c.instruction for c in front_first(old, NAMES)] == ["y", "x"]
