"""picaco.llm.usage: how a request's sample indices become provider calls, and the usage record."""

from __future__ import annotations

from picaco.llm.usage import RoleUsage, contiguous_runs, split_evenly


def test_contiguous_runs_split_at_every_gap():
    assert contiguous_runs([0, 1, 2, 5, 6]) == [[0, 1, 2], [5, 6]]
    assert contiguous_runs([3]) == [[3]]
    assert contiguous_runs([0, 2, 4]) == [[0], [2], [4]]
    assert contiguous_runs([]) == []


def test_split_evenly_gives_the_remainder_to_the_first_parts():
    assert split_evenly(10, 3) == [4, 3, 3]
    assert split_evenly(2, 4) == [1, 1, 0, 0]
    assert split_evenly(-5, 2) == [0, 0]
    assert sum(split_evenly(1001, 7)) == 1001


def test_role_usage_as_dict_is_a_copy_of_every_counter():
    u = RoleUsage(calls=2, cost_usd=0.5)
    d = u.as_dict()
    assert d["calls"] == 2 and d["cost_usd"] == 0.5 and d["errors"] == 0 and len(d) == 17
    d["calls"] = 99
    assert u.calls == 2
