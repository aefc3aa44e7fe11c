"""What both wire formats of the simulator server share: the 400 they raise, JSON out, parameter checks.

A wire module (wire_openai, wire_gemini) turns a request body into `(model, n, prompt_tokens, answer)`
and supplies its API's error bodies; picaco.sim.server_app does the rest (auth, faults, latency, log).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from picaco.sim.engine import SimEngine, count_tokens


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


@dataclass(frozen=True)
class Sampling:
    """A chat request's sampling parameters, validated, as the engine takes them."""

    n: int
    seed: int | None
    temperature: float
    max_tokens: int | None
    stop: list[str]
    schema: dict | None = None  # the reply schema the request carried (engine.schema_reply)


def sampling(p: dict, *, n: tuple[str, int], max_choices: int | None, top_p: str, max_tokens: tuple[str, ...],
             stop: tuple[str, str, int]) -> Sampling:
    """Parameters under each API's names: n = (name, API limit), `max_tokens` the names in order of precedence
    (the first one given counts), stop = (name, where it is named in errors, most sequences)."""
    count = min(int_param(p, n[0], 1, 1, n[1]), max_choices or n[1])  # a server like llama.cpp answers fewer
    seed = int_param(p, "seed", None, None, None)
    temperature = float_param(p, "temperature", 1.0, 0.0, 2.0)
    float_param(p, top_p, None, 0.0, 1.0)  # accepted and validated; the engine has no nucleus
    limit = None
    for name in max_tokens:
        limit = int_param(p, name, None, 1, None)
        if limit is not None:
            break
    return Sampling(count, seed, temperature, limit, stop_param(p.get(stop[0]), stop[1], stop[2]))


def prompt_tokens(messages: list[dict]) -> int:
    return sum(count_tokens(m["content"]) + 4 for m in messages)


def draw(engine: SimEngine, model: str, messages: list[dict], s: Sampling):
    """The engine's n replies cut at the stop sequences: (its reply, [(text, stopped, engine finish reason)],
    completion tokens of the texts as cut)."""
    reply = engine.chat(model, messages, n=s.n, seed=s.seed, temperature=s.temperature, max_tokens=s.max_tokens,
                        response_schema=s.schema)
    drawn, completion_tokens = [], 0
    for text, reason in zip(reply.texts, reply.finish_reasons):
        text, stopped = apply_stop(text, s.stop)
        completion_tokens += count_tokens(text)
        drawn.append((text, stopped, reason))
    return reply, drawn, completion_tokens


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
