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
rerun makes no call and another engine or template makes other keys. Calls take the provider's slot and
retries, and are written to the call log (`"op": "score"`) and the role's usage like chat calls.

Who can answer (`chat_template_for`): a managed llama.cpp engine started with `logits_all: true` (its
template is the GGUF's), or an OpenAI-compatible server with options `prompt_logprobs: true` and
`chat_template: <a GGUF or Jinja file>` (e.g. vLLM, or a llama.cpp server of your own). Anything else is one
ConfigError naming the provider.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass

from picaco.base.config import ProviderSettings
from picaco.base.errors import ConfigError, PicacoError
from picaco.llm.cache import encode_sample
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


def _from_record(rec: dict) -> EchoedPrompt:
    usage = rec.get("usage", {})
    return EchoedPrompt(tuple(rec["tokens"]), tuple(rec["text_offset"]), tuple(rec["token_logprobs"]),
                        int(usage.get("prompt_tokens", 0)), int(rec.get("generated", 0)))


async def _fetch_echo(prov: OpenAIProvider, model_name: str, prompt: str) -> tuple[EchoedPrompt, str | None]:
    """One `/completions` call with echo; maps the reply (a malformed one is MalformedReply)."""
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
    echoed = EchoedPrompt(tuple(tokens), tuple(offsets), tuple(None if x is None else float(x) for x in logprobs),
                          int(usage.get("prompt_tokens", 0) or 0), generated)
    return echoed, request_id if isinstance(request_id, str) else None


async def echo_prompt(client, model: str, prompt: str, *, role: str = "target",
                      key_extra: tuple[tuple[str, str], ...] = ()) -> EchoedPrompt:
    """The engine's tokens and log-probs of `prompt`, from the cache or one call (then cached)."""
    provider_name, model_name = split_model(model)
    t0 = time.perf_counter()
    key = echo_key(model, client.endpoint_of(model), prompt, key_extra)
    usage = client.usage[role]
    usage.requests += 1
    rec = client.cache.get_sample(key)
    if rec is not None and rec.get("kind") == KIND:
        echoed = _from_record(rec)
        usage.samples_hit += 1
        usage.saved_prompt_tokens += echoed.prompt_tokens
        _log(client, role, model, key, "hit", 0, 0, t0)
        return echoed
    chat_template_for(provider_name, client.config.providers)  # one clear line for a provider that cannot
    prov = client.provider(provider_name)

    async def make_call():
        t_call = time.perf_counter()
        return await _fetch_echo(prov, model_name, prompt), t_call

    try:
        ((echoed, request_id), t_call), tries = await client._with_retries(prov, role, make_call)
    except ProviderError as exc:
        usage.errors += 1
        _log(client, role, model, key, "error", 0, 0, t0, error=exc)
        raise
    cost = client.prices.cost(model, echoed.prompt_tokens, echoed.generated)
    client.call_log.write({
        "t": round(time.time(), 3), "kind": "call", "op": "score", "role": role, "model": model, "key": key,
        "request": request_id, "n": 1, "calls": 1, "attempts": tries, "prompt_tokens": echoed.prompt_tokens,
        "completion_tokens": echoed.generated, "cost_usd": cost, "filtered": 0,
        "latency_ms": round((time.perf_counter() - t_call) * 1000, 3)})
    usage.samples_miss += 1
    client.charge(usage, model, 1, echoed.prompt_tokens, echoed.generated)
    await client.cache.write_rows([(key, encode_sample({
        "text": "", "kind": KIND, "tokens": list(echoed.tokens), "text_offset": list(echoed.offsets),
        "token_logprobs": list(echoed.logprobs), "generated": echoed.generated,
        "usage": {"prompt_tokens": echoed.prompt_tokens, "completion_tokens": echoed.generated}}))])
    _log(client, role, model, key, "miss", 1, tries, t0)
    return echoed


def _log(client, role, model, key, status, calls, attempts, t0, error: Exception | None = None) -> None:
    client.call_log.write({
        "t": round(time.time(), 3), "kind": "score", "role": role, "model": model, "key": key, "n": 1,
        "hits": int(status == "hit"), "misses": int(status != "hit"), "status": status, "provider_calls": calls,
        "retries": max(0, attempts - calls), "latency_ms": round((time.perf_counter() - t0) * 1000, 3),
        **({"error": type(error).__name__} if error else {})})


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
        prefix = await echo_prompt(client, model, prefix_text, role=role, key_extra=key_extra)
    full = await echo_prompt(client, model, full_text, role=role, key_extra=key_extra)
    return response_tokens(prefix, full, response)


async def prefix_echo(client, model: str, messages: tuple[Message, ...], template: ChatTemplate, *,
                      role: str = "target", key_extra: tuple[tuple[str, str], ...] = ()) -> EchoedPrompt:
    """The echo of the prompt without a response: fetch it once and pass it to `response_logprob`."""
    turns = [{"role": m.role, "content": m.content} for m in messages]
    return await echo_prompt(client, model, template.render(turns, add_generation_prompt=True), role=role,
                             key_extra=key_extra)
