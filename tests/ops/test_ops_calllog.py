"""Counting calls from call logs: a run's lines, its paid calls, and repeats of paid samples."""

from __future__ import annotations

import json

import pytest

from ops import calllog


def _write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        for line in lines:
            fh.write(json.dumps(line) + "\n")


def chat(key, status, calls):
    """A request line and the call lines it paid for (one sample each)."""
    return [*(call(key, i) for i in range(calls)), {"kind": "chat", "key": key, "status": status, "provider_calls": calls}]


def call(request, first, n=1, **extra):
    return {"kind": "call", "op": "chat", "request": request, "key": f"{request}{first}", "first": first, "n": n,
            "calls": 1, "prompt_tokens": 3, "completion_tokens": 2, **extra}


def test_lines_since_a_snapshot_cover_every_log_under_the_runs_dir(tmp_path):
    run_log, eval_log = tmp_path / "r" / "calls.jsonl", tmp_path / "r" / "eval" / "r" / "calls.jsonl"
    _write(run_log, chat("a", "miss", 1))
    snap = calllog.snapshot(tmp_path)
    _write(run_log, chat("b", "miss", 2))
    _write(eval_log, chat("c", "hit", 0) + [{"kind": "call", "op": "embed", "n": 4, "calls": 1},
                                           {"kind": "embed", "status": "miss", "provider_calls": 1}])
    new = calllog.lines_since(tmp_path, snap)
    assert [line.get("key") for line in new if line["kind"] != "call"] == ["b", "c", None]
    assert calllog.paid_calls(new) == 3
    assert calllog.summary(new) == {"requests": 3, "calls": 3, "by_status": {"miss": 2, "hit": 1}}


def test_calls_paid_by_a_request_that_never_finished_are_counted(tmp_path):
    # killed while a request of three calls was running: its two answered calls are on the log, its line is not
    log = tmp_path / "r" / "calls.jsonl"
    _write(log, chat("a", "miss", 1) + [call("b", 0, n=4), call("b", 4, n=4)])
    lines = calllog.lines_since(tmp_path, {})
    assert calllog.paid_calls(lines) == 3
    assert calllog.summary(lines) == {"requests": 1, "calls": 3, "by_status": {"miss": 1}}


def test_repeated_calls_count_calls_for_samples_already_paid():
    before = [call("a", 0, n=4), call("b", 0), {"kind": "chat", "key": "c", "status": "hit", "provider_calls": 0}]
    after = [call("a", 2, n=4),  # samples 2-5: 2 and 3 were paid -> a repeat
             call("a", 4, n=2),  # samples 4-5: new
             call("b", 1),  # new sample of b
             call("d", 0, n=3)]
    assert calllog.repeated_calls(before, after) == 1
    assert calllog.repeated_calls(before, [call("a", 0, n=1, filtered=1)]) == 0  # refused samples are asked again


def test_a_corrupt_line_is_an_error_naming_the_file_and_line(tmp_path):
    log = tmp_path / "r" / "calls.jsonl"
    _write(log, chat("a", "miss", 1))
    with open(log, "a") as fh:
        fh.write('{"kind": "chat", "ke\n')
    with pytest.raises(calllog.CallLogError, match=r"calls.jsonl:3: not a JSON line"):
        calllog.snapshot(tmp_path)


def test_a_call_paid_but_never_stored_before_a_crash_may_be_repeated():
    # the crashed process logged two calls; only the first one's samples reached the cache before the kill
    before = [{"kind": "call", "op": "chat", "request": "r1", "key": "k1", "first": 0, "n": 2, "calls": 1},
              {"kind": "call", "op": "chat", "request": "r2", "key": "k2", "first": 0, "n": 1, "calls": 1}]
    after = [{"kind": "call", "op": "chat", "request": "r1", "key": "k1", "first": 0, "n": 2, "calls": 1},
             {"kind": "call", "op": "chat", "request": "r2", "key": "k2", "first": 0, "n": 1, "calls": 1}]
    assert calllog.repeated_calls(before, after) == 2
    assert calllog.repeated_calls(before, after, stored={"k1"}.__contains__) == 1
