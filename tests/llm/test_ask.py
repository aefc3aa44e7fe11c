"""ask: a reply that must parse is asked again (sample start+attempt), then recorded missing, never made up."""

from __future__ import annotations

import logging

import pytest

from picaco.llm.ask import REFUSED, ask
from picaco.llm.request import ChatRequest, ChatResponse, Sample


class ScriptedClient:
    """Answers sample i with script[i] (None: refused by a content filter); records what was asked."""

    def __init__(self, script: list[str | None]) -> None:
        self.script = script
        self.asked: list[tuple[float, int, str]] = []

    async def chat(self, request: ChatRequest, n: int = 1, start: int = 0, *, filtered: str = "raise") -> ChatResponse:
        assert n == 1 and filtered == "missing"
        self.asked.append((request.params.temperature, start, filtered))
        text = self.script[start]
        sample = Sample(text=text or "", index=start, finish_reason="content_filter" if text is None else "stop")
        return ChatResponse(model=request.model, role=request.role, samples=(sample,))


def number(reply: str) -> int:
    return int(reply)  # ValueError on anything else: unusable


def request(temperature: float) -> ChatRequest:
    return ChatRequest.of("sim/j", None, "score it", role="judge", seed=3, temperature=temperature)


async def test_the_first_usable_reply_is_parsed_and_later_tries_use_the_retry_request():
    client = ScriptedClient(["n/a", None, "4", "5"])
    answer = await ask(client, request(0.0), number, 4, retry=request(0.7))
    assert (answer.value, answer.attempts, answer.reason, answer.filtered) == (4, 3, None, 1)
    assert [(t, i) for t, i, _ in client.asked] == [(0.0, 0), (0.7, 1), (0.7, 2)]


async def test_unusable_after_every_attempt_is_missing_with_the_reason_and_a_warning(caplog):
    client = ScriptedClient([None, "x", "y", "z", "7", "8"])
    with caplog.at_level(logging.INFO, logger="picaco.llm.ask"):
        answer = await ask(client, request(1.0), number, 3, start=1, what="optimizer reply (slot 2)")
    assert answer.value is None and answer.attempts == 3 and answer.filtered == 0
    assert "invalid literal" in answer.reason
    assert [i for _, i, _ in client.asked] == [1, 2, 3]  # samples start .. start+attempts-1, no more
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"optimizer reply (slot 2) missing after 3 attempts: {answer.reason}"]


async def test_a_reply_refused_every_time_is_missing_and_counted():
    answer = await ask(ScriptedClient([None, None]), request(0.0), number, 2)
    assert (answer.value, answer.attempts, answer.reason, answer.filtered) == (None, 2, REFUSED, 2)


@pytest.mark.parametrize("attempts", [1, 2])
async def test_a_usable_first_reply_is_asked_once(attempts):
    client = ScriptedClient(["3", "9"])
    answer = await ask(client, request(0.0), number, attempts)
    assert answer.value == 3 and answer.attempts == 1 and len(client.asked) == 1
