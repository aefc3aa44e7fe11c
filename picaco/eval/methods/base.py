"""What every evaluated method shares: the context (models, composition, demonstration buckets) and the
`Method` contract.

A method answers one query in one bucket: `respond(query, bucket, start, n)` returns n responses. The
protocol (picaco.eval.protocol) asks each method for `samples_per_bucket` responses in each of
`buckets` buckets per query, at sample indices bucket*r .. bucket*r+r-1, so a method without
demonstrations still gets buckets*r distinct samples of one request. `prepare()` does any one-off work
(OPRO's optimization, URIAL+SUM's teacher demonstrations, CICL's negatives) and returns what the report
shows about it (e.g. the instruction used).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from picaco.base.prompts import TaskPrompt
from picaco.eval.config import METHOD_LABELS, EvalConfig
from picaco.eval.inputs import UrialPrompt
from picaco.eval.texts import EVAL_TEMPLATE_VERSION
from picaco.llm.client import LLMClient
from picaco.llm.request import ChatRequest, Message, Role, SamplingParams
from picaco.rng import derive_rng
from picaco.templates import TEMPLATE_VERSION
from picaco.values import Composition


@dataclass
class EvalContext:
    config: EvalConfig
    composition: Composition
    client: LLMClient
    # Inputs resolved before the async work (they may need a sync optimize() or a file/URL read).
    picaco_instruction: str | None = None
    optimization_prompts: list[TaskPrompt] = field(default_factory=list)
    urial_prompt: UrialPrompt | None = None
    opro_budget: tuple[int, int] = (10, 15)  # (T, M2)

    @property
    def key_extra(self) -> dict[str, str]:

        # "purpose" keeps test-set samples apart from the optimization's samples in the cache, even when
        # a prompt, instruction and demonstrations happen to coincide.
        return {"templates": TEMPLATE_VERSION, "eval_templates": EVAL_TEMPLATE_VERSION, "purpose": "eval"}

    def buckets(self) -> list[list]:
        """App. C.2 / C.1: each bucket holds `demos_per_bucket` demonstrations drawn without replacement
        from D, one triple per bucket for all queries (protocol.demos: shared); every method sees the same
        ones, so methods differ only in the method."""
        return [self.demos_for(b) for b in range(self.config.protocol.buckets)]

    def demos_for(self, bucket: int, query: str | None = None) -> list:
        """The demonstrations of `bucket` for `query`: drawn per query under protocol.demos: per_query
        (still the same for every method), else the bucket's shared triple."""
        p = self.config.protocol
        demos = list(self.composition.demonstrations)
        k = min(p.demos_per_bucket, len(demos))
        parts: tuple = ("eval-bucket", self.composition.digest, bucket)
        if p.demos == "per_query" and query is not None:
            parts += (query,)
        return derive_rng(self.config.seed, *parts).sample(demos, k)

    def _params(self) -> SamplingParams:
        s = self.config.sampling
        return SamplingParams(temperature=s.target_temperature, max_tokens=s.target_max_tokens, seed=self.config.seed)

    def target_request(self, system: str | None, user: str, *, model: str | None = None,
                       role: Role = "target") -> ChatRequest:
        s = self.config.sampling
        return ChatRequest.of(model or self.config.models.target, system, user, role=role, key_extra=self.key_extra,
                              seed=self.config.seed, temperature=s.target_temperature, max_tokens=s.target_max_tokens)

    def target_messages(self, messages: list[Message]) -> ChatRequest:
        return ChatRequest(model=self.config.models.target, messages=tuple(messages), params=self._params(),
                           role="target", key_extra=tuple(sorted(self.key_extra.items())))


class Method:
    id: ClassVar[str]
    uses_demonstrations: ClassVar[bool] = False

    def __init__(self, ctx: EvalContext) -> None:
        self.ctx = ctx
        self._buckets = ctx.buckets()

    @property
    def label(self) -> str:
        return METHOD_LABELS[self.id]

    def bucket_demos(self, bucket: int, query: str | None = None) -> list:
        if query is None or self.ctx.config.protocol.demos == "shared":
            return self._buckets[bucket]
        return self.ctx.demos_for(bucket, query)

    def usable_demos(self) -> list:
        """Every demonstration a query may be given: the buckets' triples, or all of D when drawn per query."""
        if self.ctx.config.protocol.demos == "per_query":
            return list(self.ctx.composition.demonstrations)
        return list({id(d): d for b in self._buckets for d in b}.values())

    async def prepare(self) -> dict:
        return {}

    async def respond(self, query: str, bucket: int, start: int, n: int) -> list[str]:
        raise NotImplementedError

    async def sample(self, request: ChatRequest, start: int, n: int) -> list[str]:
        reply = await self.ctx.client.chat(request, n=n, start=start)
        return [s.text for s in reply.samples]
