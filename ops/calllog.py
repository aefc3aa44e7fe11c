"""Counting provider calls from the per-run call logs (`<runs_dir>/<run>/calls.jsonl`).

One line per client request: `calls` is the number of provider calls it made (0 for a cache hit),
`status` is hit/miss/partial/error, and chat lines carry `key`, the cache key of their first sample.
A run's share of a log is the lines appended while it ran, so callers take a `snapshot` before and
read `lines_since(snapshot)` after.
"""

from __future__ import annotations

import json
from pathlib import Path

Snapshot = dict[str, int]


class CallLogError(ValueError):
    pass


def _logs(runs_dir: Path) -> list[Path]:
    return sorted(Path(runs_dir).glob("**/calls.jsonl"))


def _read(path: Path) -> list[dict]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise CallLogError(f"{path}:{n}: not a JSON line ({exc.msg})") from None
    return out


def snapshot(runs_dir: Path) -> Snapshot:
    """Lines per call log now."""
    return {str(p): len(_read(p)) for p in _logs(runs_dir)}


def lines_since(runs_dir: Path, snap: Snapshot) -> list[dict]:
    out = []
    for p in _logs(runs_dir):
        out += _read(p)[snap.get(str(p), 0):]
    return out


def paid_calls(lines: list[dict]) -> int:
    return sum(int(line.get("calls", 0)) for line in lines)


def repeated_calls(before: list[dict], after: list[dict]) -> int:
    """Provider calls made in `after` for chat requests that `before` already completed (a repeat that the
    cache should have answered). Requests in flight when a run crashed never reach its log, so they are
    not counted here: the benchmark compares whole-run totals to catch those."""
    done = {line["key"] for line in before if line.get("kind") == "chat" and line.get("status") != "error"}
    return sum(int(line.get("calls", 0)) for line in after if line.get("kind") == "chat" and line.get("key") in done)


def summary(lines: list[dict]) -> dict:
    by_status: dict[str, int] = {}
    for line in lines:
        by_status[line.get("status", "?")] = by_status.get(line.get("status", "?"), 0) + 1
    return {"requests": len(lines), "calls": paid_calls(lines), "by_status": by_status}
