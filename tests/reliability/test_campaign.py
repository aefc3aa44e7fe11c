"""Every case of the bad-input and fault campaign (see reliability_campaign.py): one line, no traceback,
nothing half-written. `bench/reliability.py` prints the same cases as a table."""

from __future__ import annotations

import pytest
from reliability_campaign import all_cases, run_case

CASES = all_cases()


@pytest.mark.parametrize("case", CASES, ids=[f"{c.id}-{c.area}" for c in CASES])
def test_case(case, tmp_path):
    verdict = run_case(case, tmp_path)
    assert verdict.clear and verdict.disk_ok, (
        f"{case.id} ({case.what}): the user saw {verdict.shown!r}; problems: {verdict.problems}")
