"""The judges ask for their reply schema unless sampling.judge_schema is off; unusable replies stay missing."""

from __future__ import annotations

import json

from picaco.base.config import SamplingConfig
from picaco.eval.judging import JudgeSetup, judge_relevance, judge_values
from picaco.llm.request import ChatResponse, Sample, scores_schema
from picaco.values import load_composition


class RecordingClient:
    def __init__(self, reply: str) -> None:
        self.reply, self.requests = reply, []

    async def chat(self, request, n=1, start=0, filtered="raise"):
        self.requests.append(request)
        return ChatResponse(model=request.model, role=request.role,
                            samples=(Sample(text=self.reply, index=start, finish_reason="stop"),))


def setup() -> JudgeSetup:
    comp = load_composition("helpfulness")
    return JudgeSetup(values=tuple(comp.values), variant=comp.judge_variant, relevance=False)


async def test_value_and_relevance_judges_send_their_schema():
    s = setup()
    reply = json.dumps({n: 4 for n in s.value_names})
    client = RecordingClient(reply)
    [j] = await judge_values(client, s, [("q", "r")], model="sim/j", attempts=2, sampling=SamplingConfig(), seed=1)
    assert j.scores is not None and client.requests[0].params.response_schema == scores_schema(s.value_names)
    client = RecordingClient('{"score": 3}')
    [j] = await judge_relevance(client, [("q", "r")], model="sim/j", attempts=2, sampling=SamplingConfig(), seed=1)
    assert j.scores == {"Relevance": 3}
    assert json.loads(client.requests[0].params.response_schema)["required"] == ["score"]


async def test_judge_schema_off_sends_free_text_requests():
    client = RecordingClient('{"score": 3}')
    await judge_relevance(client, [("q", "r")], model="sim/j", attempts=1,
                          sampling=SamplingConfig(judge_schema=False), seed=1)
    assert client.requests[0].params.response_schema is None


async def test_a_reply_that_breaks_the_schema_is_retried_then_missing():
    s = setup()
    client = RecordingClient("{}")
    [j] = await judge_values(client, s, [("q", "r")], model="sim/j", attempts=3, sampling=SamplingConfig(), seed=1)
    assert j.scores is None and j.attempts == 3 and len(client.requests) == 3
    assert all(r.params.response_schema is not None for r in client.requests)
