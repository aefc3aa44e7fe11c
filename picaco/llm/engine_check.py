"""The check of exact log-probs against the engine itself (tests/llm/test_logprobs.py, bench/logprob_pe.py).

A greedy generation (temperature 0) from the engine's chat endpoint, with the log-prob of every token it
generated; then picaco's score of that text after the same messages (picaco/llm/logprobs.py: the model's own
chat template rendered by picaco, the prompt echoed by `/completions`, the response's tokens found by their
offsets). The two must agree token by token. The generation is deliberately not cached: it measures what
the engine says now; the score goes through the client and its cache like every call of a run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from picaco.llm.chat_template import ChatTemplate
from picaco.llm.logprobs import response_logprob
from picaco.llm.request import Message


@dataclass(frozen=True)
class EngineCheck:
    text: str
    engine_tokens: tuple[str, ...]
    engine_logprobs: tuple[float, ...]  # reported while generating
    picaco_tokens: tuple[str, ...]
    picaco_logprobs: tuple[float, ...]  # picaco's score of the same text
    generate_s: float

    @property
    def tokens_match(self) -> bool:
        return self.engine_tokens == self.picaco_tokens

    @property
    def max_abs_err_per_token(self) -> float:
        """The largest per-token difference; inf when the two do not have the same tokens."""
        if not self.tokens_match:
            return float("inf")
        return max((abs(a - b) for a, b in zip(self.engine_logprobs, self.picaco_logprobs)), default=0.0)

    @property
    def sum_abs_err(self) -> float:
        return abs(sum(self.engine_logprobs) - sum(self.picaco_logprobs))


async def greedy_generation(base_url: str, messages: tuple[Message, ...], max_tokens: int, timeout_s: float = 600.0
                      ) -> tuple[str, tuple[str, ...], tuple[float, ...], float]:
    """(text, tokens, their log-probs, seconds) of a temperature-0 chat completion from an OpenAI-compatible
    server that reports `logprobs` per generated token."""
    body = {"messages": [{"role": m.role, "content": m.content} for m in messages], "temperature": 0.0,
            "max_tokens": max_tokens, "logprobs": True, "top_logprobs": 1}
    t0 = time.perf_counter()
    async with httpx.AsyncClient(timeout=timeout_s) as http:
        resp = await http.post(f"{base_url.rstrip('/')}/chat/completions", json=body)
    resp.raise_for_status()
    choice = resp.json()["choices"][0]
    content = choice["logprobs"]["content"]
    return (choice["message"]["content"], tuple(c["token"] for c in content),
            tuple(float(c["logprob"]) for c in content), time.perf_counter() - t0)


async def check_engine(client, model: str, base_url: str, messages: tuple[Message, ...], template: ChatTemplate,
                       max_tokens: int = 16) -> EngineCheck:
    """Generate greedily from the engine at `base_url`, then score the text with picaco through `client`."""
    text, tokens, logprobs, seconds = await greedy_generation(base_url, messages, max_tokens)
    scored = await response_logprob(client, model, messages, text, template)
    return EngineCheck(text, tokens, logprobs, scored.tokens, scored.token_logprobs, seconds)
