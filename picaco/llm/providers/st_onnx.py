"""The embedded all-MiniLM-L6-v2 on ONNX Runtime: the st provider's `onnx` and `onnx-int8` backends.

The sentence-transformers pipeline itself (Transformer -> mean Pooling -> Normalize, the package's
weights) is exported once per machine with torch.onnx.export, so pooling and normalization are the
library's own code, not a re-implementation. The export lives under a content-addressed directory
(sha256 of the weights, configs and export recipe), by default ~/.cache/picaco/onnx (option `onnx_dir`).
Each file is written whole (temp + rename) under a file lock, so two processes using it first at
once export it once; its sha256 is kept beside it and checked on every load, so a damaged file is
exported again rather than loaded. At run time only onnxruntime and tokenizers are needed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np

from picaco.base.errors import ConfigError
from picaco.io import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

# Part of the content address: bump it when the export or quantization recipe changes.
EXPORT_RECIPE = "st-pipeline-dynamo-v1;int8-dynamic-per-channel-v1"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
SOURCE_FILES = ("model.safetensors", "config.json", "modules.json", "sentence_bert_config.json",
                "1_Pooling/config.json", "tokenizer.json")


def default_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "picaco" / "onnx"


def require(module: str, backend: str):
    """Import an optional runtime; a missing one is a one-line error naming what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        need = module if module in ("onnxruntime", "openvino") else "onnx onnxscript"
        raise ConfigError(f"the st provider's backend {backend!r} needs the Python package(s) {need}: "
                          f"pip install {need} (or set the st provider's option backend: torch)") from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def source_digest(model_dir: Path, recipe: str = EXPORT_RECIPE) -> str:
    h = hashlib.sha256(recipe.encode())
    for name in SOURCE_FILES:
        h.update(name.encode() + b"\0" + sha256_file(model_dir / name).encode())
    return h.hexdigest()


@contextlib.contextmanager
def file_lock(path: Path):
    try:
        import fcntl
    except ImportError:  # not POSIX: files are still written whole, two processes may both export
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def intact(path: Path) -> bool:
    stamp = path.with_name(path.name + ".sha256")
    return path.is_file() and stamp.is_file() and stamp.read_text().strip() == sha256_file(path)


def ensure_files(folder: Path, names: tuple[str, ...], build, lock: str) -> Path:
    """`folder` holding `names` as `build()` ({name: bytes}) makes them: built once by one process (under the
    file lock `lock`), each written whole and checked by its sha256; one missing or damaged file makes all of
    them again from one build, so files that belong together always come from the same one."""
    if all(intact(folder / name) for name in names):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / lock):
        damaged = [name for name in names if not intact(folder / name)]
        if not damaged:  # another process built them while this one waited for the lock
            return folder
        if any((folder / name).exists() for name in damaged):
            log.warning("%s: %s does not match its sha256 stamp; converting again", folder, ", ".join(damaged))
        for name, data in build().items():
            write_stamped(folder / name, data)
    return folder


def ensure_file(path: Path, build) -> Path:
    """`path` as `build()` (bytes) makes it (ensure_files of one file)."""
    ensure_files(path.parent, (path.name,), lambda: {path.name: build()}, lock=path.name + ".lock")
    return path


def write_stamped(path: Path, data: bytes) -> None:
    """`data` written whole to `path`, then its sha256 beside it (what `intact` checks)."""
    stamp = path.with_name(path.name + ".sha256")
    stamp.unlink(missing_ok=True)  # a stamp on disk always belongs to the file beside it
    atomic_write_bytes(path, data)
    atomic_write_text(stamp, hashlib.sha256(data).hexdigest())


def _quiet():
    """The exporter prints its progress and logs and warns about things that do not concern this model
    (torchvision ops, axis renames): keep a first run's output readable."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    for name in ("torch.onnx", "torch._dynamo", "torch.export", "onnxscript", "root"):
        logger = logging.getLogger(name)
        level = logger.level
        logger.setLevel(logging.ERROR)
        stack.callback(logger.setLevel, level)
    return stack


PROBE = ["a short probe", "a longer probe sentence, so that the two rows are padded differently"]


def st_pipeline(st_model):
    """The sentence-transformers model as one module of the three token inputs -> the unit vector, for
    exporters (ONNX here, OpenVINO in st_openvino.py)."""
    import torch

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.st = st_model

        def forward(self, input_ids, attention_mask, token_type_ids):
            features = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.st(features)["sentence_embedding"]

    return Pipeline().eval()


def export_bytes(model_dir: Path) -> bytes:
    """The sentence-transformers pipeline of the package's weights as an ONNX model (fp32), checked
    against torch on a few texts before anyone can load it."""
    require("onnx", "onnx")
    require("onnxscript", "onnx")
    import torch
    from sentence_transformers import SentenceTransformer

    st_model = SentenceTransformer(str(model_dir), device="cpu").eval()
    features = st_model.preprocess(PROBE)
    args = tuple(features[k] for k in INPUTS)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=512)
    with _quiet(), torch.no_grad():
        program = torch.onnx.export(st_pipeline(st_model), args, dynamo=True, verbose=False, input_names=list(INPUTS),
                                    output_names=["sentence_embedding"], external_data=False,
                                    dynamic_shapes=tuple({0: batch, 1: seq} for _ in INPUTS))
        want = st_model.encode(PROBE, normalize_embeddings=True, convert_to_numpy=True)
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    data = program.model_proto.SerializeToString()
    ort = require("onnxruntime", "onnx")
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {k: features[k].numpy() for k in INPUTS})[0]
    worst = float(np.min(np.sum(got * want, axis=1)))
    if worst < 0.99999:
        raise RuntimeError(f"the ONNX export of {model_dir} disagrees with torch (cosine {worst:.6f}); not saved")
    return data


def quantize_bytes(fp32_path: Path) -> bytes:
    """Dynamic int8 (per-channel weights): per-tensor weights agreed with torch at a mean cosine of
    only 0.93 on the benchmark's responses, per-channel at 0.99 (bench/embeddings.py)."""
    require("onnxruntime", "onnx-int8")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="picaco-int8-") as tmp, _quiet():
        out = Path(tmp) / "model.int8.onnx"
        quantize_dynamic(str(fp32_path), str(out), weight_type=QuantType.QInt8, per_channel=True)
        return out.read_bytes()


def exported_model(model_dir: Path, cache_dir: Path, int8: bool) -> Path:
    folder = cache_dir / source_digest(model_dir)[:32]
    fp32 = ensure_file(folder / "model.onnx", lambda: export_bytes(model_dir))
    return ensure_file(folder / "model.int8.onnx", lambda: quantize_bytes(fp32)) if int8 else fp32


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class LengthSortedEncoder:
    """Tokenize with the package's tokenizer.json as sentence-transformers does (truncation at the
    model's max_seq_length), sort by token count so a batch pads little, run, restore the order. A
    backend gives `run(feeds) -> (rows, dim) vectors`; `pad_multiple` rounds a batch's padded length up
    (a backend whose vectors then no longer depend on the other texts of the batch sets it)."""

    pad_multiple = 1

    def __init__(self, model_dir: Path) -> None:
        from tokenizers import Tokenizer

        self.max_seq_length = int(json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"])
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_seq_length)
        self.tokenizer.no_padding()
        # one encode at a time: OpenVINO's infer request is not thread-safe, and two clients in one process
        # (a flow's E-step task beside its M-step draft task) share this encoder
        self._lock = threading.Lock()

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        return [enc.ids for enc in self.tokenizer.encode_batch(texts)]

    def encode(self, texts: list[str], batch_size: int = 64, length_sorted: bool = True) -> np.ndarray:
        with self._lock:
            return self._encode(texts, batch_size, length_sorted)

    def run_batches(self, batches: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """`run` on each batch; a backend that runs batches side by side overrides this."""
        return [self.run(feeds) for feeds in batches]

    def _encode(self, texts: list[str], batch_size: int, length_sorted: bool) -> np.ndarray:
        ids = self.token_ids(texts)
        lengths = np.array([len(x) for x in ids])
        order = np.argsort(-lengths, kind="stable") if length_sorted else np.arange(len(ids))
        rows_of, batches = [], []
        for start in range(0, len(ids), batch_size):
            rows = order[start:start + batch_size]
            padded = -(-int(lengths[rows].max()) // self.pad_multiple) * self.pad_multiple
            input_ids = np.zeros((len(rows), padded), dtype=np.int64)
            mask = np.zeros_like(input_ids)
            for r, i in enumerate(rows):
                input_ids[r, :lengths[i]] = ids[i]
                mask[r, :lengths[i]] = 1
            rows_of.append(rows)
            batches.append({"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)})
        if not batches:
            return np.empty((0, 0), dtype=np.float32)
        out: np.ndarray | None = None
        for rows, vectors in zip(rows_of, self.run_batches(batches)):
            if out is None:
                out = np.empty((len(ids), vectors.shape[-1]), dtype=np.float32)
            out[rows] = vectors
        assert out is not None
        return out


class OnnxEncoder(LengthSortedEncoder):
    def __init__(self, model_dir: Path, cache_dir: Path, backend: str, threads: int | None = None) -> None:
        ort = require("onnxruntime", backend)
        super().__init__(model_dir)
        self.path = exported_model(model_dir, cache_dir, int8=backend == "onnx-int8")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cores()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, feeds)[0]


_ENCODERS: dict[tuple, OnnxEncoder] = {}
_LOCK = threading.Lock()


def load_encoder(model_dir: Path, cache_dir: Path, backend: str, threads: int | None = None) -> OnnxEncoder:
    key = (str(model_dir), str(cache_dir), backend, threads)
    with _LOCK:
        encoder = _ENCODERS.get(key)
        if encoder is None:
            try:
                encoder = _ENCODERS[key] = OnnxEncoder(model_dir, cache_dir, backend, threads)
            except OSError as exc:
                raise ConfigError(f"the st provider's backend {backend!r} could not write or read its ONNX export "
                                  f"under {cache_dir}: {exc.strerror or exc}; set the option onnx_dir "
                                  f"to a writable folder") from None
        return encoder
