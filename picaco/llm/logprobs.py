"""Exact log-probs of a chat response, log p(y | messages), through the LLMClient and its cache.

    render the model's own chat template twice (picaco/llm/chat_template.py):
        prefix = messages + the generation prompt        (what the model sees before it answers)
        full   = messages + y as the assistant's turn    (prefix + y + the end-of-turn text)
    ask the engine for the log-prob of every token of each text (`/v1/completions`, echo, logprobs 1,
    max_tokens 1: one generated token, never used), and take the tokens of `full` that lie where y lies:
    from the prefix's length (in the engine's own text offsets) to that plus len(y).

Each echoed text is one cache entry (a row like a chat sample: `{"text": "", "kind": "prompt_logprobs",
tokens, text_offset, token_logprobs, usage}`) keyed by the provider, model, endpoint identity (for a managed
engine the GGUF's content hash and the settings that change answers) and the rendered text itself, so a
rerun makes no call and another engine or template makes other keys. An echo is a request on the client's
one call path (`LLMClient.echo`, `ScoreJob` in picaco/llm/jobs.py) like chat and embeddings: cache, in-flight
sharing, claims between workers, the provider's slot and retries, the run's budget, the role's usage and
the call log (`"op": "score"`). This module keeps what is particular to it: the template, the wire call
and the record, and finding a response's tokens.

Who can answer (`chat_template_for`): a managed llama.cpp engine started with `logits_all: true` (its
template is the GGUF's), or an OpenAI-compatible server with options `prompt_logprobs: true` and
`chat_template: <a GGUF or Jinja file>` (e.g. vLLM, or a llama.cpp server of your own). Anything else is one
ConfigError naming the provider.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

from picaco.base.config import ProviderSettings
from picaco.base.errors import ConfigError, PicacoError
from picaco.llm.chat_template import ChatTemplate, load_template, template_from_gguf
from picaco.llm.errors import MalformedReply, ProviderError
from picaco.llm.local_engine import resolve_gguf
from picaco.llm.providers import provider_class
from picaco.llm.providers.llamacpp import engine_spec
from picaco.llm.providers.openai import OpenAIProvider
from picaco.llm.request import KEY_SCHEMA_VERSION, Message, canonical_json, split_model

KIND = "prompt_logprobs"
_HOW = ("a managed llama.cpp engine (kind llamacpp, options.logits_all: true) or an OpenAI-compatible server "
        "whose /completions echoes prompt log-probs (options prompt_logprobs: true and chat_template: <GGUF or "
        "Jinja file>, e.g. vLLM)")


class LogprobError(PicacoError):
    """A response whose tokens cannot be found in the rendered prompt (the template changes its text)."""


@dataclass(frozen=True)
class EchoedPrompt:
    """The engine's tokens of a prompt: text, offset in the engine's detokenized text, log-prob (None for
    the first). The last `generated` entries are the token it generated after the prompt."""

    tokens: tuple[str, ...]
    offsets: tuple[int, ...]
    logprobs: tuple[float | None, ...]
    prompt_tokens: int
    generated: int

    @property
    def prompt_chars(self) -> int:
        """The prompt's length in the engine's offsets (special tokens may detokenize to nothing)."""
        n = len(self.tokens) - self.generated
        if n < len(self.tokens):
            return self.offsets[n]
        return self.offsets[-1] + len(self.tokens[-1]) if self.tokens else 0

    @property
    def completion_tokens(self) -> int:
        """Tokens generated (and billed as completion): the budget settles a call with these."""
        return self.generated


@dataclass(frozen=True)
class ResponseLogprob:
    """log p(y | messages): the response's tokens and each one's log-prob."""

    tokens: tuple[str, ...]
    token_logprobs: tuple[float, ...]

    @property
    def total(self) -> float:
        return float(sum(self.token_logprobs))

    @property
    def mean(self) -> float:
        return self.total / len(self.token_logprobs)


# -- who can answer ---------------------------------------------------------------------------------------
_TEMPLATES: dict[str, ChatTemplate] = {}


def chat_template_for(provider: str, providers: dict[str, ProviderSettings]) -> ChatTemplate:
    """The chat template the provider's server applies, when it can give prompt log-probs; else ConfigError."""
    cls, settings = provider_class(provider, providers)
    kind = settings.kind or provider
    memo = f"{provider}|{settings.model_dump_json()}"
    if memo in _TEMPLATES:
        return _TEMPLATES[memo]
    spec = engine_spec(provider, settings) if kind == "llamacpp" else None
    if spec is not None:
        if not spec.logits_all:
            raise ConfigError(f"provider {provider!r}: exact p_e needs prompt log-probs from the engine: set "
                              f"options.logits_all: true")
        if spec.chat_format:
            raise ConfigError(f"provider {provider!r}: exact p_e renders the GGUF's own chat template, but "
                              f"options.chat_format {spec.chat_format!r} makes the engine use another; remove it")
        template = template_from_gguf(resolve_gguf(spec.gguf))
    elif issubclass(cls, OpenAIProvider) and settings.options.get("prompt_logprobs") is True:
        path = settings.options.get("chat_template")
        if not isinstance(path, str) or not path:
            raise ConfigError(f"provider {provider!r}: options.prompt_logprobs needs options.chat_template, the "
                              f"GGUF or Jinja file of the template the server applies")
        template = load_template(path, str(settings.options.get("bos_token", "")),
                                 str(settings.options.get("eos_token", "")))
    else:
        raise ConfigError(f"provider {provider!r} (kind {kind}) gives no prompt log-probs, which exact p_e "
                          f"(picaco.pe_estimator: logprob) needs: use {_HOW}")
    _TEMPLATES[memo] = template
    return template


# -- one echoed prompt, cached ----------------------------------------------------------------------------
def echo_key(model: str, endpoint: str, prompt: str, key_extra: tuple[tuple[str, str], ...] = ()) -> str:
    provider, name = split_model(model)
    body = {"v": KEY_SCHEMA_VERSION, "kind": KIND, "provider": provider, "model": name, "endpoint": endpoint,
            "prompt": prompt, "extra": [list(kv) for kv in key_extra]}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def echoed_from_record(rec: dict) -> EchoedPrompt | None:
    """The echo cached in `rec` (a row of the sample cache), or None when the row is not one."""
    if rec.get("kind") != KIND:
        return None
    usage = rec.get("usage", {})
    return EchoedPrompt(tuple(rec["tokens"]), tuple(rec["text_offset"]), tuple(rec["token_logprobs"]),
                        int(usage.get("prompt_tokens", 0)), int(rec.get("generated", 0)))


def echo_record(echoed: EchoedPrompt) -> dict:
    """The cache row of an echo: shaped like a chat sample's (empty text), so the sample cache holds it."""
    return {"text": "", "kind": KIND, "tokens": list(echoed.tokens), "text_offset": list(echoed.offsets),
            "token_logprobs": list(echoed.logprobs), "generated": echoed.generated,
            "usage": {"prompt_tokens": echoed.prompt_tokens, "completion_tokens": echoed.generated}}


async def fetch_echo(prov: OpenAIProvider, model_name: str, prompt: str) -> EchoedPrompt:
    """One `/completions` call with echo; maps the reply (a malformed one is MalformedReply). The client's
    one call path (ScoreJob in picaco/llm/jobs.py) makes it, in a slot, with retries and the budget."""
    client = prov._client()
    body = {"model": model_name, "prompt": prompt, "echo": True, "logprobs": 1, "max_tokens": 1,
            "temperature": 0.0}
    try:
        resp = await prov._call(f"prompt log-probs with model {model_name!r}", lambda: client.post(
            "/completions", body=body, cast_to=object, options={"security": {"bearer_auth": True}}))
    except ProviderError:
        engine = getattr(prov, "engine", None)
        if engine is not None and not engine.alive():
            raise engine.died_error() from None
        raise
    request_id = resp.get("id") if isinstance(resp, dict) else None
    try:
        lp = resp["choices"][0]["logprobs"]
        tokens, offsets, logprobs = list(lp["tokens"]), list(lp["text_offset"]), list(lp["token_logprobs"])
        usage = resp.get("usage") or {}
        generated = int(usage.get("completion_tokens", 0) or 0)
        if not (len(tokens) == len(offsets) == len(logprobs)) or generated > len(tokens):
            raise ValueError("tokens, text_offset and token_logprobs differ in length")
        if not all(isinstance(t, str) for t in tokens) or not all(isinstance(o, int) for o in offsets):
            raise ValueError("a token is not text or an offset not an integer")
        if any(x is not None and not (isinstance(x, (int, float)) and math.isfinite(x)) for x in logprobs):
            raise ValueError("a log-prob is not a finite number")
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedReply(f"prompt log-probs with model {model_name!r}: not an echoed completion with "
                             f"logprobs ({exc})", provider=prov.name, status=200,
                             request_id=request_id if isinstance(request_id, str) else None) from None
    return EchoedPrompt(tuple(tokens), tuple(offsets), tuple(None if x is None else float(x) for x in logprobs),
                        int(usage.get("prompt_tokens", 0) or 0), generated)


# -- a response inside its rendered prompt ----------------------------------------------------------------
def render_pair(template: ChatTemplate, messages: tuple[Message, ...], response: str) -> tuple[str, str]:
    """(prefix, full): the messages with the generation prompt, and with `response` as the assistant's turn;
    the response must follow the prefix verbatim in `full`, or its tokens could not be told apart."""
    turns = [{"role": m.role, "content": m.content} for m in messages]
    prefix = template.render(turns, add_generation_prompt=True)
    full = template.render(turns + [{"role": "assistant", "content": response}], add_generation_prompt=False)
    if not full.startswith(prefix) or not full[len(prefix):].startswith(response):
        raise LogprobError(f"the chat template ({template.source}) does not put the response verbatim after the "
                           f"generation prompt, so its tokens cannot be scored exactly: "
                           f"{json.dumps(full[len(prefix) - 20:len(prefix) + 40])}")
    return prefix, full


def response_tokens(prefix: EchoedPrompt, full: EchoedPrompt, response: str) -> ResponseLogprob:
    """The tokens of `full` that overlap the response: from the prefix's length in the engine's offsets to
    that plus len(response). A token that straddles the start (a merge across the boundary) counts."""
    start = prefix.prompt_chars
    end = start + len(response)
    n = len(full.tokens) - full.generated
    picked = [i for i in range(n) if full.offsets[i] < end and full.offsets[i] + len(full.tokens[i]) > start]
    text = "".join(full.tokens[i] for i in picked)
    if not picked or response not in text or any(full.logprobs[i] is None for i in picked):
        raise LogprobError(f"cannot find the response's tokens in the engine's tokens of the prompt (chars "
                           f"{start}..{end} hold {text[:60]!r}, expected {response[:60]!r})")
    return ResponseLogprob(tuple(full.tokens[i] for i in picked),
                           tuple(lp for i in picked if (lp := full.logprobs[i]) is not None))


async def response_logprob(client, model: str, messages: tuple[Message, ...], response: str,
                           template: ChatTemplate, *, role: str = "target",
                           key_extra: tuple[tuple[str, str], ...] = (), prefix: EchoedPrompt | None = None
                           ) -> ResponseLogprob:
    """log p(response | messages) under `model`, rendered with `template`. `prefix`: the echo of the prompt
    without the response, when the caller already has it (it is shared by every response to one prompt)."""
    prefix_text, full_text = render_pair(template, messages, response)
    if prefix is None:
        prefix = await client.echo(model, prefix_text, role=role, key_extra=key_extra)
    full = await client.echo(model, full_text, role=role, key_extra=key_extra)
    return response_tokens(prefix, full, response)


async def prefix_echo(client, model: str, messages: tuple[Message, ...], template: ChatTemplate, *,
                      role: str = "target", key_extra: tuple[tuple[str, str], ...] = ()) -> EchoedPrompt:
    """The echo of the prompt without a response: fetch it once and pass it to `response_logprob`."""
    turns = [{"role": m.role, "content": m.content} for m in messages]
    return await client.echo(model, template.render(turns, add_generation_prompt=True), role=role,
                             key_extra=key_extra)
