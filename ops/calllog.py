"""Counting provider calls from the per-run call logs (`<runs_dir>/<run>/calls.jsonl`).

The format is picaco's (`picaco/llm/calllog.py`): a `call` line for every provider call, written the
moment it is paid (before its answer is cached, so a killed run's log still counts every call it paid
for), and one line per client request when it ends (`status` hit/miss/partial/error). A run's share of a
log is the lines appended while it ran, so callers take a `snapshot` before and read `lines_since(snapshot)`
after.
"""

from __future__ import annotations

from pathlib import Path

from picaco.llm.calllog import CallLogError, is_request, paid_calls, read_call_log

Snapshot = dict[str, int]

__all__ = ["CallLogError", "Snapshot", "lines_since", "paid_calls", "repeated_calls", "snapshot", "summary"]


def _logs(runs_dir: Path) -> list[Path]:
    return sorted(Path(runs_dir).glob("**/calls.jsonl"))


def snapshot(runs_dir: Path) -> Snapshot:
    """Lines per call log now."""
    return {str(p): len(read_call_log(p)) for p in _logs(runs_dir)}


def lines_since(runs_dir: Path, snap: Snapshot) -> list[dict]:
    out = []
    for p in _logs(runs_dir):
        out += read_call_log(p)[snap.get(str(p), 0):]
    return out


def _samples(line: dict) -> set[tuple[str, int]]:
    first, n = int(line.get("first", 0)), int(line.get("n", 0))
    return {(line["request"], i) for i in range(first, first + n)}


def repeated_calls(before: list[dict], after: list[dict], stored=lambda key: True) -> int:
    """Provider calls made in `after` for chat samples that `before` already paid for and stored (a repeat
    that the cache should have answered). Every paid call is on the log when it is paid, just before its
    samples reach the cache, so a process killed in between paid for answers it never kept: `stored(key)`
    (the call's first sample key; a call's samples are stored together) says whether they were kept, and
    only those count. Calls with a content-filtered sample are left out on both sides (such samples are
    never cached, so asking again is right)."""
    paid: set[tuple[str, int]] = set()
    for line in before:
        if _is_chat_call(line) and not line.get("filtered") and stored(line["key"]):
            paid |= _samples(line)
    return sum(1 for line in after if _is_chat_call(line) and not line.get("filtered") and _samples(line) & paid)


def _is_chat_call(line: dict) -> bool:
    return line.get("kind") == "call" and line.get("op") == "chat" and "request" in line


def summary(lines: list[dict]) -> dict:
    by_status: dict[str, int] = {}
    requests = [line for line in lines if is_request(line)]
    for line in requests:
        by_status[line.get("status", "?")] = by_status.get(line.get("status", "?"), 0) + 1
    return {"requests": len(requests), "calls": paid_calls(lines), "by_status": by_status}
