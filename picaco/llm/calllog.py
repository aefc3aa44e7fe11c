"""The per-run call log (`calls.jsonl`): what was paid for, written the moment it was paid.

One JSON line per event, appended line-buffered, so a process killed with -9 loses no line it wrote:

- `"kind": "call"`: one provider call that answered. Written as soon as the answer arrives and *before*
  its samples are cached, so every paid call, and every sample in the cache, has its line, even when the
  process dies while the client request that made the call is still running (a request of n samples
  may take several calls). Fields: `op` ("chat", "embed" or "score": an exact-p_e echo), `role`, `model`,
  `key` (cache key of the call's first sample or text), chat only: `request` (the request's key without its sample index) and
  `first` (index of its first sample); `n` (samples or texts drawn), `calls` (1), `attempts` (tries,
  failed ones included), `prompt_tokens`, `completion_tokens`, `cost_usd`, `filtered` (samples refused
  by a content filter), `latency_ms`, `t`.
- `"kind": "chat"`, `"embed"` or `"score"`: one client request, when it ends: `key` (cache key of its first
  sample), `start`, `n`, `hits`, `shared`, `misses`, `filtered`, `status` (hit, miss, partial, error),
  `provider_calls`, `retries`, `latency_ms`, and `error`/`error_status` when it failed.

Paid quantities (`calls`, tokens, `cost_usd`) are on call lines only, so summing a field over every line
counts each paid call once (logs written before call lines existed had them on request lines, and sum
the same way). The readers below do exactly that.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

PAID_FIELDS = ("calls", "prompt_tokens", "completion_tokens")


class CallLogError(ValueError):
    """A line of a call log is not JSON (the message names the file and line)."""


class CallLog:
    """Append-only JSONL writer; line-buffered, so each line reaches the OS as soon as it is written."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fh = None
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(path, "a", encoding="utf-8", buffering=1)

    def write(self, record: dict) -> None:
        if self._fh is not None:
            line = json.dumps(record, separators=(",", ":")) + "\n"
            with self._lock:
                if self._fh is not None:
                    self._fh.write(line)

    def flush(self) -> None:
        if self._fh is not None:
            with self._lock:
                self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            with self._lock:
                self._fh.close()
            self._fh = None


def read_call_log(path: Path) -> list[dict]:
    """Every line of a call log (none when it does not exist); a line that is not JSON is an error."""
    path = Path(path)
    if not path.exists():
        return []
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


def paid_calls(lines: list[dict]) -> int:
    """Provider calls that answered (what a provider bills)."""
    return sum(int(line.get("calls", 0) or 0) for line in lines)


def is_request(line: dict) -> bool:
    return line.get("kind") != "call"


def usage_by_role(lines: list[dict]) -> dict[str, dict[str, int]]:
    """Per role: paid `calls`, client `requests`, `prompt_tokens`, `completion_tokens` and the chat
    `samples_drawn` from providers."""
    out: dict[str, dict[str, int]] = {}
    for line in lines:
        role = out.setdefault(line.get("role", "?"), {"calls": 0, "requests": 0, "prompt_tokens": 0,
                                                       "completion_tokens": 0, "samples_drawn": 0})
        for field in PAID_FIELDS:
            role[field] += int(line.get(field, 0) or 0)
        if is_request(line):
            role["requests"] += 1
        elif line.get("op") == "chat":
            role["samples_drawn"] += int(line.get("n", 0))
    return out
