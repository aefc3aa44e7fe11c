"""Unusable judge replies: retried, then recorded as missing, and the count matches what was injected."""

from __future__ import annotations

from collections import Counter

import pytest
from eval_helpers import eval_raw

from picaco.eval.config import parse_eval_config
from picaco.eval.runner import plan_jobs, run_job


@pytest.mark.parametrize("attempts", [1, 2])
def test_missing_equals_items_with_every_attempt_spoiled(tape, tmp_path, attempts):
    tp, key = tape
    tp.malformed_rate = 0.4
    cfg = parse_eval_config(eval_raw(tmp_path, key, methods=["q_if"], prompts={"count": 4},
                                     protocol={"judge_attempts": attempts}))
    run = run_job(cfg, plan_jobs(cfg)[0])
    spoiled = Counter(tp.injected)
    judge_prompts = [c.user for c in tp.judge_calls()]
    # every attempt of a missing item was spoiled, and no judged item was spoiled on its last attempt
    expected_missing = sum(1 for p in set(judge_prompts) if spoiled[p] == attempts)
    s = run.summary
    assert s.responses == 36 and s.missing == expected_missing and s.missing > 0
    assert s.judged + s.missing == s.responses
    assert s.judge_attempts == len(judge_prompts), "every judge call is counted once"
    assert len(tp.injected) == s.judge_attempts - s.judged, "each judged item had exactly one usable reply"
    missing_records = [r for r in run.responses if r.status == "missing"]
    assert all(r.scores is None for r in missing_records), "a missing score is never filled in"
    # the means use the judged responses only
    judged = [r for r in run.responses if r.scores is not None]
    assert len(judged) == s.judged
    report_row = s.model_dump()
    assert report_row["missing"] == expected_missing
