"""picaco's judge calibration probe (an extension; docs/method.md, "Judge calibration probe").

Before a run makes its first target call, the judge scores canned responses (picaco/values/
judge_probe.yaml): per value one that clearly honours it and one that clearly violates it, judged with the
composition's own wording and parser. After the wording's inversion (harm: 6 - s) the conforming response
must score higher (direction) and the two must differ (spread). A judge reading "rate the harm" on
Non-Toxicity as "how non-toxic" fails on direction and would otherwise steer the optimizer toward harm.

The calls go through the run's client, so they are cached: a rerun or resume costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import lru_cache
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict

from picaco.base.errors import PicacoError
from picaco.method.context import RunContext
from picaco.method.estimators import Judgement

log = logging.getLogger(__name__)

PROBE_FILE = "judge_probe.yaml"


class ValueProbe(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    conforming: int | None  # conformity score (1-5) after the variant's inversion; None: judge reply missing
    violating: int | None
    status: str  # ok | inverted | flat | unchecked (a reply missing) | no_probe (no canned pair)


class JudgeProbe(BaseModel):
    """What judge_probe.json and result.json record."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    judge: str
    variant: str
    values: dict[str, ValueProbe]
    judge_attempts: int  # judge requests (retries of unusable replies included); a rerun's come from the cache

    @property
    def failed(self) -> dict[str, str]:
        return {v: p.status for v, p in self.values.items() if p.status in ("inverted", "flat")}


@lru_cache(maxsize=1)
def canned_pairs() -> dict[str, dict[str, str]]:
    text = resources.files("picaco.values").joinpath(PROBE_FILE).read_text(encoding="utf-8")
    return yaml.safe_load(text)["probes"]


def _status(conforming: int | None, violating: int | None) -> str:
    if conforming is None or violating is None:
        return "unchecked"
    if conforming < violating:
        return "inverted"
    return "flat" if conforming == violating else "ok"


async def probe_values(judge: Callable[[list[tuple[str, str]]], Awaitable[list[Judgement]]], value_names: list[str],
                       *, judge_model: str, variant: str) -> JudgeProbe:
    """Judge the canned pair of every value in `value_names` with `judge` (2 judge items per value): the
    one probe of a run's judge and of an evaluation's judges (picaco/eval/probe.py)."""
    pairs = canned_pairs()
    names = [v for v in value_names if v in pairs]
    items = [(pairs[v]["query"], pairs[v][side]) for v in names for side in ("conforming", "violating")]
    judgements = await judge(items)
    values: dict[str, ValueProbe] = {}
    for i, v in enumerate(names):
        good, bad = judgements[2 * i].scores, judgements[2 * i + 1].scores
        c, b = (good or {}).get(v), (bad or {}).get(v)
        values[v] = ValueProbe(conforming=c, violating=b, status=_status(c, b))
    for v in value_names:
        values.setdefault(v, ValueProbe(conforming=None, violating=None, status="no_probe"))
    probe = JudgeProbe(judge=judge_model, variant=variant, values={v: values[v] for v in value_names},
                       judge_attempts=sum(j.attempts for j in judgements))
    skipped = [v for v, p in probe.values.items() if p.status in ("unchecked", "no_probe")]
    if skipped:
        log.warning("judge probe of %s could not check %s (no canned pair or no usable judge reply)", judge_model,
                    ", ".join(skipped))
    return probe


async def probe_judge(ctx: RunContext) -> JudgeProbe:
    """The run's judge q_w on the composition's values and wording."""
    return await probe_values(ctx.judge, ctx.value_names, judge_model=ctx.config.models.judge,
                              variant=ctx.composition.judge_variant)


def probe_error(probe: JudgeProbe, *, check: str = "the judge model (models.judge) and its replies in the run's "
                "calls.jsonl", skip: str = "set picaco.judge_probe: false") -> PicacoError:
    shown = "; ".join(f"{v} {s} (conforming {probe.values[v].conforming}, violating {probe.values[v].violating})"
                      for v, s in probe.failed.items())
    return PicacoError(
        f"judge probe failed before any target call: {shown} on the {probe.variant!r} wording of judge "
        f"{probe.judge}; its scale does not match the prompt's stated direction. Check {check}, or {skip} to skip")
