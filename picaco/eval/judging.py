"""The evaluation judges: Fig. 9 value conformity and, for Schwartz compositions, Fig. 10 relevance.

Scores are stored as conformity, 5 = best, whatever the Fig. 9 wording: with the `harm` wording the
judge rates harm (5 = most harmful) and the score is turned into 6 - harm (docs/values_and_templates.md).

Unusable judge replies are asked again (`protocol.judge_attempts` in all); after the last attempt the
score is recorded as missing (None) and counted, never filled in (picaco.method.estimators).
"""

from __future__ import annotations

from dataclasses import dataclass

from picaco.llm.client import LLMClient
from picaco.method.estimators import Judgement, judge_many, judge_schema, value_judge_parser
from picaco.templates import TEMPLATE_VERSION, parse_relevance, render_relevance_judge, render_value_judge
from picaco.values import default_judge_variant, load_composition


@dataclass(frozen=True)
class JudgeSetup:
    values: tuple  # picaco.values.Value, in the order of the report's columns
    variant: str  # Fig. 9 wording
    relevance: bool  # Fig. 10 + Eq. (7)

    @property
    def value_names(self) -> list[str]:
        return [v.name for v in self.values]


def hh_paper_values(composition) -> tuple:
    """The eight HH Balance values followed by any value of the composition that is not among them."""
    base = list(load_composition("hh_balance").values)
    keys = {v.key for v in base}
    return tuple(base + [v for v in composition.values if v.key not in keys])


def judge_setup(composition, judged_values: str = "paper", relevance: str = "auto") -> JudgeSetup:
    if judged_values == "paper" and composition.kind == "hh":
        values = hh_paper_values(composition)
        variant = default_judge_variant(values)
    else:
        values, variant = tuple(composition.values), composition.judge_variant
    use_relevance = composition.uses_relevance if relevance == "auto" else relevance == "on"
    return JudgeSetup(values=values, variant=variant, relevance=use_relevance)


def _key_extra() -> dict[str, str]:
    return {"templates": TEMPLATE_VERSION}


async def judge_values(client: LLMClient, setup: JudgeSetup, items: list[tuple[str, str]], *, model: str,
                       attempts: int, sampling, seed: int) -> list[Judgement]:

    return await judge_many(
        client, items, model=model,
        render=lambda q, r: render_value_judge(setup.values, setup.variant, q, r),
        # conformity scores (5 = best) in every wording: the harm wording's scores are inverted there
        parse=value_judge_parser(setup.value_names, setup.variant),
        attempts=attempts, temperature=sampling.judge_temperature, retry_temperature=sampling.judge_retry_temperature,
        max_tokens=sampling.judge_max_tokens, seed=seed, key_extra=_key_extra(),
        response_schema=judge_schema(sampling, setup.value_names))


async def judge_relevance(client: LLMClient, items: list[tuple[str, str]], *, model: str, attempts: int, sampling,
                          seed: int) -> list[Judgement]:
    return await judge_many(
        client, items, model=model, render=render_relevance_judge,
        parse=lambda reply: {"Relevance": parse_relevance(reply)},
        attempts=attempts, temperature=sampling.judge_temperature, retry_temperature=sampling.judge_retry_temperature,
        max_tokens=sampling.judge_max_tokens, seed=seed, key_extra=_key_extra(),
        response_schema=judge_schema(sampling, ["score"]))
