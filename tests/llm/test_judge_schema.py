"""Structured judge replies: the schema is part of the request and its key; each provider form on the wire;
a server that rejects it falls back to free text once, with a warning."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest

from picaco.base.config import ProviderSettings
from picaco.base.errors import ConfigError
from picaco.llm.errors import TransientError
from picaco.llm.providers.base import ChatCall
from picaco.llm.providers.openai import OpenAIProvider
from picaco.llm.request import KEY_SCHEMA_VERSION, ChatRequest, Message, SamplingParams, canonical_json, scores_schema

SCHEMA = scores_schema(["honesty", "kindness"])
MESSAGES = (Message(role="user", content="Rate the response."),)
OK = {"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
      "choices": [{"index": 0, "finish_reason": "stop",
                   "message": {"role": "assistant", "content": '{"honesty": 4, "kindness": 5}'}}],
      "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}


def recording_provider(monkeypatch, name: str, kind: str, reject: str | None = None, **options):
    """A provider whose HTTP goes to a handler that records each body; `reject`: a 500 message for bodies
    carrying response_format."""
    import httpx2
    import openai

    bodies: list[dict] = []

    def handler(request):
        body = json.loads(request.content)
        bodies.append(body)
        if reject is not None and "response_format" in body:
            return httpx2.Response(500, json={"error": {"message": reject, "type": "server_error"}})
        return httpx2.Response(200, json=OK)

    p = OpenAIProvider(name, ProviderSettings(kind=kind, base_url="http://127.0.0.1:9/v1", options=options))
    monkeypatch.setattr(p, "_new_client", lambda: openai.AsyncOpenAI(
        base_url="http://127.0.0.1:9/v1", api_key="x", max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(transport=httpx2.MockTransport(handler))))
    return p, bodies


def call(schema: str | None = SCHEMA) -> ChatCall:
    return ChatCall(model="m", messages=MESSAGES, params=SamplingParams(seed=1, response_schema=schema), n=1, seed=1)


@pytest.mark.parametrize("name,kind,options,expected", [
    ("openai", "openai", {}, {"type": "json_schema",
                              "json_schema": {"name": "reply", "schema": json.loads(SCHEMA), "strict": True}}),
    ("vllm", None, {}, {"type": "json_object", "schema": json.loads(SCHEMA)}),
    ("mylab", "llamacpp", {}, {"type": "json_object", "schema": json.loads(SCHEMA)}),
    ("mylab", "openai", {"schema_form": "json_object"}, {"type": "json_object", "schema": json.loads(SCHEMA)}),
    ("openai", "openai", {"schema_form": "none"}, None),
])
async def test_the_schema_goes_on_the_wire_in_the_providers_form(monkeypatch, name, kind, options, expected):
    p, bodies = recording_provider(monkeypatch, name, kind, **options)
    await p.generate(call())
    await p.generate(call(schema=None))
    await p.aclose()
    assert bodies[0].get("response_format") == expected
    assert "response_format" not in bodies[1]


async def test_a_server_that_rejects_the_schema_gets_free_text_once_with_a_warning(monkeypatch, caplog):
    message = "1 validation error: response_format.type Input should be 'text' or 'json_object'"
    p, bodies = recording_provider(monkeypatch, "mylab", "openai", reject=message)
    with caplog.at_level(logging.WARNING, logger="picaco.llm.providers.openai"):
        first = await p.generate(call())
        second = await p.generate(call())
    await p.aclose()
    assert first.completions[0].text == second.completions[0].text == '{"honesty": 4, "kindness": 5}'
    assert ["response_format" in b for b in bodies] == [True, False, False]
    warnings = [r for r in caplog.records if "rejects response_format" in r.getMessage()]
    assert len(warnings) == 1 and "mylab" in warnings[0].getMessage()


async def test_a_server_error_that_does_not_name_the_schema_is_raised(monkeypatch):
    p, bodies = recording_provider(monkeypatch, "mylab", "openai", reject="out of memory")
    with pytest.raises(TransientError, match="out of memory"):
        await p.generate(call())
    await p.aclose()
    assert len(bodies) == 1 and p.schema_form == "openai"


def test_unknown_schema_form_is_a_config_error():
    with pytest.raises(ConfigError, match="schema_form"):
        OpenAIProvider("mylab", ProviderSettings(kind="openai", base_url="http://127.0.0.1:9/v1",
                                                 options={"schema_form": "xml"}))


def test_the_cache_key_differs_with_and_without_schema_and_old_keys_hold():
    plain = ChatRequest.of("sim/m", None, "Rate it.", role="judge", seed=1)
    schema = ChatRequest.of("sim/m", None, "Rate it.", role="judge", seed=1, response_schema=SCHEMA)
    other = ChatRequest.of("sim/m", None, "Rate it.", role="judge", seed=1,
                           response_schema=scores_schema(["honesty"]))
    keys = {r.sample_keys("e", 0, 1)[0] for r in (plain, schema, other)}
    assert len(keys) == 3
    # without a schema the key is the one from before the field existed (cached answers stay valid)
    old_body = {"v": KEY_SCHEMA_VERSION, "kind": "chat", "provider": "sim", "model": "m", "endpoint": "e",
                "messages": [["user", "Rate it."]],
                "params": {"temperature": 1.0, "max_tokens": 512, "top_p": None, "seed": 1, "stop": None},
                "role": "judge", "extra": []}
    old = hashlib.sha256(('{"request":' + canonical_json(old_body) + ',"sample":0}').encode()).hexdigest()
    assert plain.sample_keys("e", 0, 1) == [old]
    # the schema is canonical: the same schema spelled differently is the same key
    spaced = json.dumps(json.loads(SCHEMA), indent=2)
    assert ChatRequest.of("sim/m", None, "Rate it.", role="judge", seed=1,
                          response_schema=spaced).sample_keys("e", 0, 1) == schema.sample_keys("e", 0, 1)
    with pytest.raises(ValueError, match="response_schema"):
        SamplingParams(response_schema="[1, 2]")


def test_gemini_gets_json_output_with_the_schema_in_its_config():
    from google.genai import types

    from picaco.llm.providers.gemini import gemini_schema_config

    assert gemini_schema_config(None) == {}
    config = types.GenerateContentConfig(**gemini_schema_config(json.loads(SCHEMA)))
    assert config.response_mime_type == "application/json"
    schema = types.Schema.model_validate(config.response_schema)  # what the SDK sends; no unknown fields
    assert set(schema.properties) == {"honesty", "kindness"} and schema.required == ["honesty", "kindness"]
    assert schema.properties["honesty"].maximum == 5


async def test_the_sim_server_accepts_the_schema_without_a_fallback(server, caplog):
    p = OpenAIProvider("mylab", ProviderSettings(kind="openai", base_url=server.openai_base_url, timeout_s=2))
    with caplog.at_level(logging.WARNING, logger="picaco.llm.providers.openai"):
        reply = await p.generate(ChatCall(model="sim-a", messages=MESSAGES,
                                          params=SamplingParams(seed=1, response_schema=SCHEMA), n=1, seed=1))
    await p.aclose()
    assert reply.completions[0].text and p.schema_form == "openai"
    assert server.request_log()[-1]["status"] == 200 and not caplog.records
