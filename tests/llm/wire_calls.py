"""What the OpenAI and Gemini provider tests share: the chat call they send to the sim server's wire, and
one generate on a provider that is closed afterwards."""

from __future__ import annotations

from picaco.llm.providers.base import ChatCall, ChatReply, Provider
from picaco.llm.request import Message, SamplingParams

PROMPT = "Which fruit keeps longest in a cold cellar, apples or pears, and why does it matter for winter storage?"
MESSAGES = (Message(role="system", content="Be brief."), Message(role="user", content=PROMPT))


def chat_call(model: str, n: int = 1, seed: int | None = 1, **params) -> ChatCall:
    return ChatCall(model=model, messages=MESSAGES, params=SamplingParams(seed=seed, **params), n=n, seed=seed)


async def generate_once(provider: Provider, call: ChatCall) -> ChatReply:
    try:
        return await provider.generate(call)
    finally:
        await provider.aclose()
