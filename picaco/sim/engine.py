"""The simulator engine: deterministic replies given the request and its per-sample seed.

Sample k of a call with seed s is drawn from seed s+k, the same convention the client uses when it
splits samples across calls, so a sample's text depends only on (model, messages, params, s+k).
What the replies *say* comes from a `World` (see picaco.sim.world); the engine only does the plumbing
that the HTTP server and the in-process provider share: seeding, token counts, embeddings.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Protocol

import numpy as np

_WORD = re.compile(r"[A-Za-z0-9']+")


def count_tokens(text: str) -> int:
    """A stable stand-in for a tokenizer: ~1.3 tokens per word, like English BPE vocabularies."""
    words = len(_WORD.findall(text))
    return max(1, (words * 4 + 2) // 3) if text else 0


_INS = re.compile(r"<INS>(.*?)</INS>", re.DOTALL | re.IGNORECASE)


def schema_reply(text: str, schema: dict | None) -> str:
    """A reply as a server that honours the request's reply schema writes it. The worlds' judges already
    answer JSON; the optimizer's schema ({"instruction": ...}, picaco.optimizer_schema) gets the instruction
    of its <INS> tags as that object. Other schemas leave the text as it is."""
    if not schema or schema.get("required") != ["instruction"]:
        return text
    found = _INS.findall(text)
    return json.dumps({"instruction": found[-1].strip()}) if found else text


def stable_seed(*parts) -> int:
    h = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "little")


class World(Protocol):
    def respond(self, model: str, messages: list[dict[str, str]], *, seed: int, temperature: float,
                max_tokens: int | None) -> str: ...


class EchoWorld:
    """A plain world: a fluent, query-related answer. Replaced by the value world of picaco.sim.world."""

    OPENERS = ("Here is a considered answer.", "Let me address this directly.", "A short, practical reply:",
               "Thanks for asking.", "Good question.")

    def respond(self, model, messages, *, seed, temperature, max_tokens):
        import random

        rng = random.Random(seed if temperature > 0 else stable_seed("t0"))
        user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        words = _WORD.findall(user)[-40:] or ["this"]
        focus = " ".join(rng.sample(words, k=min(len(words), 6)))
        return f"{rng.choice(self.OPENERS)} On {focus}: the key points are clarity, care and the facts of the case."


@dataclass
class SimReply:
    texts: list[str]
    finish_reasons: list[str]
    prompt_tokens: int
    completion_tokens: int


@functools.lru_cache(maxsize=8192)
def _prompt_facts(model: str, messages: tuple[tuple[str, str], ...], temperature: float,
                  max_tokens: int | None) -> tuple[int, int]:
    """(digest, prompt tokens) of a request: hashed once per distinct prompt, since the Fig. 7 system
    prompt is long and every sample of every call repeats it."""
    digest = stable_seed(model, repr([list(m) for m in messages]), temperature, max_tokens)
    return digest, sum(count_tokens(c) + 4 for _, c in messages)


class SimEngine:
    def __init__(self, world: World | None = None, embed_dim: int = 256) -> None:
        self.world = world or EchoWorld()
        self.embed_dim = embed_dim

    def chat(self, model: str, messages: list[dict[str, str]], *, n: int = 1, seed: int | None = None,
             temperature: float = 1.0, max_tokens: int | None = None, response_schema: dict | None = None) -> SimReply:
        base = 0 if seed is None else int(seed)
        digest, prompt_tokens = _prompt_facts(model, tuple((m["role"], m["content"]) for m in messages),
                                              float(temperature), max_tokens)
        texts, reasons = [], []
        for k in range(n):
            # at temperature 0 every sample is the same draw, as with a greedy decoder
            sample_seed = stable_seed(digest, base + k if temperature > 0 else 0)
            text = schema_reply(self.world.respond(model, messages, seed=sample_seed, temperature=temperature,
                                                   max_tokens=max_tokens), response_schema)
            reason = "stop"
            if max_tokens is not None and count_tokens(text) > max_tokens:
                words = text.split()
                text = " ".join(words[: max(1, (max_tokens * 3) // 4)])
                reason = "length"
            texts.append(text)
            reasons.append(reason)
        return SimReply(texts, reasons, prompt_tokens, sum(count_tokens(t) for t in texts))

    def embed(self, model: str, texts: list[str]) -> np.ndarray:
        """Hashed bag-of-words vectors (unit length): cosine similarity tracks word overlap."""
        out = np.zeros((len(texts), self.embed_dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for w in _WORD.findall(text.lower()):
                h = stable_seed("w", w)
                out[i, h % self.embed_dim] += 1.0 if (h >> 20) & 1 else -1.0
            norm = float(np.linalg.norm(out[i]))
            if norm > 0:
                out[i] /= norm
        return out
