"""picaco.stats: percentile bootstrap intervals, reproducible from (seed, purpose)."""

from __future__ import annotations

import pytest

from picaco.stats import Interval, bootstrap_mean, fmt_interval, paired_difference


def test_the_interval_holds_the_mean_and_is_reproducible():
    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    a = bootstrap_mean(values, b=500, seed=1, purpose="p")
    assert a is not None and a.mean == pytest.approx(4.0) and a.n == 5
    assert min(values) <= a.lo < a.mean < a.hi <= max(values)
    assert bootstrap_mean(values, b=500, seed=1, purpose="p") == a
    assert bootstrap_mean(values, b=500, seed=1, purpose="other") != a


def test_constant_values_give_a_zero_width_interval_and_no_values_none():
    iv = bootstrap_mean([2.5] * 4, b=100, seed=0, purpose="c")
    assert iv == Interval(mean=2.5, lo=2.5, hi=2.5, n=4)
    assert bootstrap_mean([], b=100, seed=0, purpose="c") is None


def test_paired_difference_uses_only_the_prompts_both_have():
    a = {"q1": 3.0, "q2": 5.0, "q3": 1.0}
    b = {"q1": 1.0, "q2": 4.0, "q9": 100.0}
    iv = paired_difference(a, b, b=200, seed=3, purpose="d")
    assert iv is not None and iv.n == 2 and iv.mean == pytest.approx(1.5)
    assert paired_difference({"x": 1.0}, {"y": 1.0}, b=10, seed=3, purpose="d") is None


def test_fmt_interval_from_a_record_a_dict_or_nothing():
    iv = Interval(mean=1.234, lo=0.5, hi=2.0, n=3)
    assert fmt_interval(iv) == "1.23 [0.50, 2.00]"
    assert fmt_interval(iv.model_dump(), digits=1) == "1.2 [0.5, 2.0]"
    assert fmt_interval(None) == "-"
