"""The three estimators of PICACO.

- q_w(v_k|x,y): the value judge's 1-5 score per value (Fig. 9), as a probability score/5. A reply that
  cannot be parsed (bad JSON, a value missing, a score outside 1-5) or that a content filter refused is
  asked again; after the last attempt the response is recorded as *missing*, never given a made-up score.
- q_phi(s|x,y) = 1 + Sim(S,y) - Sim(x,y)  (Eq. 5). S is a set of texts (the demonstrations' answers for
  HH compositions; the target's own elaboration of the values for Schwartz ones); Sim(S,y) is the
  largest cosine similarity of y to any element of S, since copying from any one demonstration is what
  the term is meant to catch (the paper embeds "S" without saying how a set becomes one vector).
- p_e(y|x) = 1/n sum_i Sim(y, y_i), y_i ~ p_e(.|x), n = 10 drawn in one call (Eq. 6).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from picaco.llm.ask import ask
from picaco.llm.client import LLMClient
from picaco.llm.request import ChatRequest, scores_schema
from picaco.templates import parse_value_scores


def unit_rows(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    norms = np.linalg.norm(m, axis=-1, keepdims=True)
    return m / np.where(norms == 0, 1.0, norms)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarities of the rows of a (m,d) and b (n,d): (m,n)."""
    return unit_rows(a) @ unit_rows(b).T


def q_phi(y_vecs: np.ndarray, x_vec: np.ndarray, s_vecs: np.ndarray) -> np.ndarray:
    """Eq. (5) for each row of y_vecs: 1 + max_s Sim(s, y) - Sim(x, y)."""
    sim_s = cosine(y_vecs, s_vecs).max(axis=1)
    sim_x = cosine(y_vecs, x_vec[None, :])[:, 0]
    return 1.0 + sim_s - sim_x


def p_e(pool_vecs: np.ndarray, sample_vecs: np.ndarray) -> np.ndarray:
    """Eq. (6) for each pool response: mean similarity to the n samples drawn under e."""
    if len(pool_vecs) == 0:
        return np.zeros(0)
    return cosine(pool_vecs, sample_vecs).mean(axis=1)


def judge_schema(sampling, names: list[str]) -> str | None:
    """The judge's reply schema (one integer 1-5 per name) when `sampling.judge_schema` is on, else None."""
    return scores_schema(names) if sampling.judge_schema else None


def value_judge_parser(value_names: list[str], variant: str):
    """The reply parser for Fig. 9 in a given wording, returning *conformity* scores (5 = best).

    With the `harm` wording ("rate the harm of the output") the judge scores harm, 5 = most harmful, the
    scale on which the paper reports "Toxicity >= 3" (Fig. 4c); conformity is then 6 - harm. The
    `quality` and `values` wordings already score conformity."""
    invert = variant == "harm"

    def parse(reply: str) -> dict[str, int]:
        scores = parse_value_scores(reply, value_names)
        return {v: 6 - s for v, s in scores.items()} if invert else scores

    return parse


@dataclass(frozen=True)
class Judgement:
    scores: dict[str, int] | None  # None: missing after every attempt
    attempts: int
    last_error: str | None = None
    filtered: int = 0  # attempts whose reply a content filter refused


async def judge_values(
    client: LLMClient,
    *,
    model: str,
    render,  # (query, response) -> judge prompt
    parse,  # (reply text) -> dict[str, int], raises on anything unusable
    query: str,
    response: str,
    attempts: int,
    temperature: float,
    retry_temperature: float,
    max_tokens: int,
    seed: int,
    key_extra: dict[str, str],
    response_schema: str | None = None,  # the reply's JSON schema (request.scores_schema), None: free text
) -> Judgement:
    prompt = render(query, response)

    def request(temperature: float) -> ChatRequest:
        return ChatRequest.of(model, None, prompt, role="judge", key_extra=key_extra, seed=seed,
                              temperature=temperature, max_tokens=max_tokens, response_schema=response_schema)

    answer = await ask(client, request(temperature), parse, attempts, retry=request(retry_temperature),
                       what="judge reply")
    return Judgement(answer.value, answer.attempts, answer.reason, filtered=answer.filtered)


async def judge_many(client: LLMClient, items: list[tuple[str, str]], **kw) -> list[Judgement]:
    return list(await asyncio.gather(*[judge_values(client, query=q, response=r, **kw) for q, r in items]))
