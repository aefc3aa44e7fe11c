"""Counting calls from call logs: a run's lines, its paid calls, and repeats of completed requests."""

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
    return {"kind": "chat", "key": key, "status": status, "calls": calls}


def test_lines_since_a_snapshot_cover_every_log_under_the_runs_dir(tmp_path):
    run_log, eval_log = tmp_path / "r" / "calls.jsonl", tmp_path / "r" / "eval" / "r" / "calls.jsonl"
    _write(run_log, [chat("a", "miss", 1)])
    snap = calllog.snapshot(tmp_path)
    _write(run_log, [chat("b", "miss", 2)])
    _write(eval_log, [chat("c", "hit", 0), {"kind": "embed", "status": "miss", "calls": 1}])
    new = calllog.lines_since(tmp_path, snap)
    assert [line.get("key") for line in new] == ["b", "c", None]
    assert calllog.paid_calls(new) == 3
    assert calllog.summary(new) == {"requests": 3, "calls": 3, "by_status": {"miss": 2, "hit": 1}}


def test_repeated_calls_count_only_provider_calls_for_completed_requests():
    before = [chat("a", "miss", 1), chat("b", "error", 0), chat("c", "hit", 0)]
    after = [chat("a", "miss", 1), chat("b", "miss", 1), chat("c", "hit", 0), chat("d", "miss", 3)]
    assert calllog.repeated_calls(before, after) == 1  # 'a' again; 'b' had failed, 'd' is new
    assert calllog.repeated_calls(before, [chat("a", "hit", 0)]) == 0


def test_a_corrupt_line_is_an_error_naming_the_file_and_line(tmp_path):
    log = tmp_path / "r" / "calls.jsonl"
    _write(log, [chat("a", "miss", 1)])
    with open(log, "a") as fh:
        fh.write('{"kind": "chat", "ke\n')
    with pytest.raises(calllog.CallLogError, match=r"calls.jsonl:2: not a JSON line"):
        calllog.snapshot(tmp_path)
