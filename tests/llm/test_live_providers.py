"""Real OpenAI and Gemini calls through the providers. They spend money, so they run only when asked for
with `--live` (tests/conftest.py), and each only when its provider's API key is set.

Run with `OPENAI_API_KEY=... GEMINI_API_KEY=... pytest --live tests/llm/test_live_providers.py`.
Models can be changed with PICACO_LIVE_OPENAI_MODEL / PICACO_LIVE_OPENAI_EMBED_MODEL /
PICACO_LIVE_GEMINI_MODEL / PICACO_LIVE_GEMINI_EMBED_MODEL. Each test makes one or two small calls.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from picaco.llm.errors import BadRequest
from picaco.llm.providers import make_provider
from picaco.llm.providers.base import ChatCall
from picaco.llm.request import Message, SamplingParams

pytestmark = pytest.mark.live

needs_openai = pytest.mark.skipif(not os.environ.get("OPENAI_API_KEY"), reason="OPENAI_API_KEY is not set")
needs_gemini = pytest.mark.skipif(not (os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY")),
                                  reason="GEMINI_API_KEY / GOOGLE_API_KEY is not set")

CALL = ChatCall(model="", messages=(Message(role="system", content="Answer with one word."),
                                    Message(role="user", content="What colour is a ripe banana?")),
                params=SamplingParams(temperature=0.7, max_tokens=256, seed=7), n=2, seed=7)


def with_model(call: ChatCall, model: str) -> ChatCall:
    return ChatCall(model=model, messages=call.messages, params=call.params, n=call.n, seed=call.seed)


@needs_openai
async def test_openai_chat_and_embeddings():
    p = make_provider("openai")
    try:
        reply = await p.generate(with_model(CALL, os.environ.get("PICACO_LIVE_OPENAI_MODEL", "gpt-4o-mini")))
        assert len(reply.completions) == 2
        assert all("yellow" in c.text.lower() for c in reply.completions)
        assert reply.prompt_tokens > 0 and reply.request_id
        emb = await p.embed(os.environ.get("PICACO_LIVE_OPENAI_EMBED_MODEL", "text-embedding-3-small"),
                            ["a ripe banana", "a green apple"])
        assert emb.vectors.dtype == np.float32 and emb.vectors.shape[0] == 2 and emb.vectors.shape[1] >= 256
        with pytest.raises(BadRequest) as ei:
            await p.generate(with_model(CALL, "no-such-model-picaco"))
        assert ei.value.status == 404
    finally:
        await p.aclose()


@needs_gemini
async def test_gemini_chat_and_embeddings():
    p = make_provider("gemini")
    try:
        reply = await p.generate(with_model(CALL, os.environ.get("PICACO_LIVE_GEMINI_MODEL", "gemini-2.0-flash")))
        assert len(reply.completions) == 2
        assert all("yellow" in c.text.lower() for c in reply.completions)
        assert reply.prompt_tokens > 0
        emb = await p.embed(os.environ.get("PICACO_LIVE_GEMINI_EMBED_MODEL", "gemini-embedding-001"),
                            ["a ripe banana", "a green apple"])
        assert emb.vectors.dtype == np.float32 and emb.vectors.shape[0] == 2 and emb.vectors.shape[1] >= 256
    finally:
        await p.aclose()
