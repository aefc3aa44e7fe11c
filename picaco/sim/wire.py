"""What both wire formats of the simulator server share: the 400 they raise, JSON out, parameter checks.

A wire module (wire_openai, wire_gemini) turns a request body into `(model, n, prompt_tokens, answer)`
and supplies its API's error bodies; picaco.sim.server_app does the rest (auth, faults, latency, log).
"""

from __future__ import annotations

import json
from typing import Any


class BadRequest(Exception):
    """A request body the API would refuse with 400; `param` names the offending field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def apply_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def int_param(p: dict, name: str, default, lo, hi):
    v = p.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise BadRequest(f"'{name}' must be an integer, got {v!r}", name)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise BadRequest(f"'{name}' must be within [{lo}, {hi}], got {v}", name)
    return v


def float_param(p: dict, name: str, default, lo, hi):
    v = p.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BadRequest(f"'{name}' must be a number, got {v!r}", name)
    if not lo <= v <= hi:
        raise BadRequest(f"'{name}' must be within [{lo}, {hi}], got {v}", name)
    return float(v)


def stop_param(v: Any, name: str, most: int) -> list[str]:
    if v is None:
        return []
    stops = [v] if isinstance(v, str) else v
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops) or len(stops) > most:
        raise BadRequest(f"'{name}' must be a string or a list of at most {most} strings", name)
    return stops
