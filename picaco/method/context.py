"""What every step of Algorithm 1 needs: the config, the loaded inputs and the one LLM client."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from picaco.base.config import RunConfig
from picaco.base.prompts import TaskPrompt
from picaco.llm.client import LLMClient
from picaco.llm.request import ChatRequest, ChatResponse, Sample
from picaco.method.estimators import Judgement, judge_many, judge_schema, value_judge_parser
from picaco.templates import TEMPLATE_VERSION, render_e_step, render_value_judge
from picaco.templates.render import render_query
from picaco.values import Composition


@dataclass(frozen=True)
class RunContext:
    """Built once per run (or per Prefect task) from the config and its checked inputs; no global state.
    `client` is None where a step makes no call (merging E-step shards)."""

    config: RunConfig
    composition: Composition
    prompts: list[TaskPrompt]
    client: LLMClient | None
    seeds: tuple[str, ...] = ()  # a from_run run's e^0 and first candidates (picaco/method/incremental.py)
    block_offset: int = 0  # a from_run run's iteration t samples in block block_offset + t

    @property
    def start_instructions(self) -> tuple[str, ...]:
        """e^0 first, then the other existing candidates of iteration 1."""
        return self.seeds or (self.composition.seed_instruction,)

    @property
    def beta(self) -> float:
        return self.config.picaco.beta if self.config.picaco.beta is not None else float(self.composition.beta)

    @property
    def value_names(self) -> list[str]:
        return [v.name for v in self.composition.values]

    @property
    def key_extra(self) -> dict[str, str]:
        return {"templates": TEMPLATE_VERSION}

    def calls(self) -> LLMClient:
        """The client of a step that makes calls."""
        if self.client is None:
            raise RuntimeError("this run context has no client: it was built for a step that makes no call")
        return self.client

    async def embed(self, texts: list[str]) -> np.ndarray:
        return await self.calls().embed(self.config.models.embedding, texts)

    async def chat(self, request: ChatRequest, n: int = 1, start: int = 0) -> ChatResponse:
        """Every chat of the method: a sample a content filter refused comes back empty and filtered,
        for the step to count as missing."""
        return await self.calls().chat(request, n=n, start=start, filtered="missing")

    def target_request(self, system: str | None, user: str) -> ChatRequest:
        s = self.config.sampling
        return ChatRequest.of(self.config.models.target, system, user, role="target", key_extra=self.key_extra,
                              seed=self.config.seed, temperature=s.target_temperature,
                              max_tokens=s.target_max_tokens)

    async def judge(self, items: list[tuple[str, str]]) -> list[Judgement]:
        """Fig. 9 over all values in one request per response; with picaco.judge_per_value, one request
        per value (Fig. 9 listing that value alone), so a value added later leaves the others' requests,
        and their cached answers, unchanged."""
        if not self.config.picaco.judge_per_value:
            return await self._judge_values(list(self.composition.values), items)
        per_value = await asyncio.gather(*[self._judge_values([v], items) for v in self.composition.values])
        return [combine_judgements(list(row)) for row in zip(*per_value)]

    async def _judge_values(self, values: list, items: list[tuple[str, str]]) -> list[Judgement]:
        comp, s = self.composition, self.config.sampling
        names = [v.name for v in values]
        return await judge_many(
            self.calls(), items, model=self.config.models.judge,
            render=lambda q, r: render_value_judge(values, comp.judge_variant, q, r),
            parse=value_judge_parser(names, comp.judge_variant),
            attempts=self.config.picaco.judge_attempts, temperature=s.judge_temperature,
            retry_temperature=s.judge_retry_temperature, max_tokens=s.judge_max_tokens,
            seed=self.config.seed, key_extra=self.key_extra, response_schema=judge_schema(s, names))


def combine_judgements(parts: list[Judgement]) -> Judgement:
    """One response's per-value judgements as one: missing when any value is missing (a response is
    judged on every value or left out, as with one request)."""
    missing = [p for p in parts if p.scores is None]
    scores = None if missing else {v: x for p in parts for v, x in (p.scores or {}).items()}
    return Judgement(scores, sum(p.attempts for p in parts), missing[0].last_error if missing else None,
                     filtered=sum(p.filtered for p in parts))


def usable(sample: Sample) -> bool:
    """A sample the method can use: not empty, and not cut by a content filter (a refused or partly
    refused answer is missing, whatever text it kept)."""
    return bool(sample.text.strip()) and not sample.filtered


def user_prompt(query: str) -> str:
    """The user turn of Fig. 7 on its own: what the raw model (no meta-instruction) is asked."""
    return render_query(query)


def instructed_request(ctx: RunContext, instruction: str, demos, query: str) -> ChatRequest:
    """Fig. 7: the meta-instruction and demonstrations as the system prompt, the wrapped query as user."""
    system, user = render_e_step(instruction, list(demos), query)
    return ctx.target_request(system, user)
