"""Exact p_e(y|x) for Eq. (4) (picaco's extension, `picaco.pe_estimator: logprob`; docs/method.md).

The paper's Eq. (6) estimates p_e(y|x) for black-box models by the mean similarity of y to n samples drawn
under e. An engine that reports token log-probs gives the quantity itself: log p(y | e, x) is the sum of
the log-probs of y's tokens after the prompt the target sees under e, rendered with the model's own chat
template (picaco/llm/logprobs.py). The context is the one Eq. (6)'s samples are drawn in (the Fig. 7
system prompt holding e and `PE_DEMONSTRATIONS`, the query as the user turn), so both estimate the same
p_e(y|x) and can be compared (bench/logprob_pe.py).

Normalization: each response counts by its mean log-prob per token, p = exp(mean), the geometric-mean
probability of its tokens, in (0, 1]. Eq. (4) then normalizes p over each prompt's pool as it does Eq. (6)'s
similarities (`pe_weighting: normalized`: p_j / sum p, a softmax of the per-token means). The sum over
tokens (the probability of the whole text) is not used: it falls by the length of the text, so between two
responses of 40 and 80 tokens it differs by tens of nats whatever the instruction, the pool's weight would
go to its shortest response, and a candidate would win by making answers short, not by making the
better-weighted ones likely.
"""

from __future__ import annotations

import asyncio
import math

import numpy as np

from picaco.llm.logprobs import ResponseLogprob, chat_template_for, prefix_echo, response_logprob
from picaco.llm.request import split_model
from picaco.method.context import RunContext, instructed_request
from picaco.method.pools import AlignedEntry

# The demonstrations in the context of p_e(y|x), for Eq. (6)'s samples and the exact log-prob alike:
# none (docs/method.md, Estimators): the E-step's demonstrations are shared by every candidate, so they do
# not tell candidates apart, and leaving them out isolates e.
PE_DEMONSTRATIONS: tuple = ()


def pe_from_logprob(score: ResponseLogprob) -> float:
    """exp(mean log-prob per response token): the value Eq. (4) weights a pooled response by."""
    return math.exp(score.mean)


async def prompt_scores(ctx: RunContext, instruction: str, query: str, pool: list[AlignedEntry]
                        ) -> list[ResponseLogprob]:
    """log p(y | e, x) of every response in one prompt's pool: the prompt without a response is echoed once,
    then every response after it."""
    model = ctx.config.models.target
    template = chat_template_for(split_model(model)[0], ctx.config.client.providers)
    messages = instructed_request(ctx, instruction, list(PE_DEMONSTRATIONS), query).messages
    extra = tuple(sorted(ctx.key_extra.items()))
    prefix = await prefix_echo(ctx.client, model, messages, template, key_extra=extra)
    return list(await asyncio.gather(*[
        response_logprob(ctx.client, model, messages, e.text, template, key_extra=extra, prefix=prefix)
        for e in pool]))


async def exact_pe(ctx: RunContext, instruction: str, pools: dict[str, list[AlignedEntry]]) -> dict[str, np.ndarray]:
    """p_e of every pooled response under `instruction`, per prompt id (prompts with an empty pool left out)."""
    filled = [p for p in ctx.prompts if pools.get(p.prompt_id)]
    scores = await asyncio.gather(*[prompt_scores(ctx, instruction, p.text, pools[p.prompt_id]) for p in filled])
    return {p.prompt_id: np.array([pe_from_logprob(s) for s in per]) for p, per in zip(filled, scores)}
