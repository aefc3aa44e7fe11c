"""The st provider's `openvino` backend: the embedded model's sentence-transformers pipeline (Transformer ->
mean Pooling -> Normalize, the package's own code, `st_onnx.st_pipeline`) converted from the package's torch
weights by `openvino.convert_model`, ONCE per machine, and kept as OpenVINO IR (model.xml + model.bin, fp32
weights) beside torch's vectors for two probe texts computed at conversion time (probe.json); the conversion
runs in a child process, so no process that encodes imports torch, not even the first. It is compiled
for the CPU in bf16 where the CPU multiplies bf16 in hardware (`st.native_bf16`) and in fp32 elsewhere, and
checked against the stored probe vectors before the first encode. Texts are tokenized, length-sorted and
batched like the ONNX backend (st_onnx.py).

Where: `~/.cache/picaco/openvino/<sha256 of weights, configs, tokenizer, recipe and OpenVINO version>/`
(option `openvino_dir`). Kept like the ONNX export: built under a file lock, each file written whole (temp +
rename) with its sha256 beside it, checked on every load; a damaged file makes the conversion run again. An
encoding process never imports torch, sentence-transformers or transformers: that is ~500 MB
of RSS and ~3 s of conversion it does not pay (docs/performance.md, memory).

Measured on this project's 2-core machine (AVX512_BF16, no AMX), bench/embeddings.py's 2,000 responses, two
quiet rounds (session 6): torch fp32 52 texts/s, torch-bf16 176, OpenVINO bf16 in two streams 235-245 (min
cosine 0.999950, mean 0.999981); OpenVINO fp32 107-117 in session 5 (cosine 1.000000). Its vectors therefore
share the cache with torch's (endpoint `local`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from picaco.base.errors import ConfigError
from picaco.llm.providers import st_onnx
from picaco.llm.providers.st_onnx import INPUTS, PROBE, LengthSortedEncoder, _quiet, cores, require

# the compiled model must agree with torch at least this well on the probe texts, in either precision
MIN_PROBE_COSINE = 0.9999
# Part of the content address (with OpenVINO's version): bump it when the conversion or the files change.
RECIPE = "st-pipeline-ov-convert-v1;ir-fp32;probe-json-v1"
FILES = ("model.xml", "model.bin", "probe.json")
STREAM_BATCH = 16  # texts per batch at most (OpenVinoEncoder.encode)


def default_dir() -> Path:
    return st_onnx.default_dir().parent / "openvino"


def convert(model_dir: Path):
    """The pipeline as an in-memory `openvino.Model`, and torch's (fp32) vectors of the probe texts."""
    ov = require("openvino", "openvino")
    import torch  # heavy: only the conversion needs it, once per machine
    from sentence_transformers import SentenceTransformer

    st_model = SentenceTransformer(str(model_dir), device="cpu").eval()
    features = st_model.preprocess(PROBE)
    example = {k: features[k] for k in INPUTS}
    with _quiet(), torch.no_grad():  # the tracer warns about a shape check that is constant for this model
        model = ov.convert_model(st_onnx.st_pipeline(st_model), example_input=example)
        want = st_model.encode(PROBE, normalize_embeddings=True, convert_to_numpy=True)
    return model, {"texts": PROBE, "vectors": want.astype(np.float32).tolist()}


def convert_files_here(model_dir: Path) -> dict[str, bytes]:
    """The conversion as the bytes of FILES: IR with fp32 weights (save_model's default would halve them to
    fp16) and the probe vectors as JSON (never a pickle)."""
    ov = require("openvino", "openvino")
    model, probe = convert(model_dir)
    with tempfile.TemporaryDirectory(prefix="picaco-openvino-") as tmp:
        xml = Path(tmp) / "model.xml"
        ov.save_model(model, str(xml), compress_to_fp16=False)
        return {"model.xml": xml.read_bytes(), "model.bin": xml.with_suffix(".bin").read_bytes(),
                "probe.json": json.dumps(probe).encode()}


def convert_files(model_dir: Path) -> dict[str, bytes]:
    """convert_files_here in a child process: torch and sentence-transformers, once imported, keep ~500 MB of
    RSS for the rest of a process, so even the first run on a machine encodes without them."""
    require("openvino", "openvino")
    package_root = str(Path(__file__).resolve().parents[3])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
    with tempfile.TemporaryDirectory(prefix="picaco-openvino-") as tmp:
        done = subprocess.run([sys.executable, "-c", CHILD, str(model_dir), tmp], env=env, capture_output=True,
                              text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise ConfigError(f"the st provider's backend 'openvino' could not convert {model_dir}: {last}; "
                              f"set the st provider's option backend: torch")
        return {name: (Path(tmp) / name).read_bytes() for name in FILES}


CHILD = """
import sys
from pathlib import Path
from picaco.llm.providers.st_openvino import convert_files_here
for name, data in convert_files_here(Path(sys.argv[1])).items():
    (Path(sys.argv[2]) / name).write_bytes(data)
"""


def converted_model(model_dir: Path, cache_dir: Path) -> Path:
    """The folder holding FILES for this model, converted now if any of them is missing or damaged."""
    ov = require("openvino", "openvino")
    folder = cache_dir / st_onnx.source_digest(model_dir, f"{RECIPE};openvino {ov.get_version()}")[:32]
    return st_onnx.ensure_files(folder, FILES, lambda: convert_files(model_dir), lock="convert.lock")


def read_probe(path: Path) -> tuple[list[str], np.ndarray]:
    try:
        probe = json.loads(path.read_text(encoding="utf-8"))
        return [str(t) for t in probe["texts"]], np.asarray(probe["vectors"], dtype=np.float32)
    except (ValueError, KeyError, TypeError) as exc:  # stamped but not ours: edited by hand
        raise ConfigError(f"{path}: not a probe file of the st provider ({type(exc).__name__}: {exc}); "
                          f"delete its folder to convert again") from None


class OpenVinoEncoder(LengthSortedEncoder):
    """`model` (an `openvino.Model` or the path of its .xml) compiled for this CPU and checked against torch's
    vectors of the probe texts."""

    # Choice: a batch is padded to a multiple of 16 tokens. The CPU plugin's kernels work in blocks of 16
    # positions; padded to any multiple of 16, a text's vector is bitwise the same whatever else is in its
    # batch (measured: alone or with others, padded to 32-256), and padded to its batch's longest text
    # otherwise, it moved by up to 6e-4. Embedding replies as they arrive makes the batches depend on when
    # the replies came, and near-equal candidates then swapped places from run to run; a text's vector is
    # now a function of the text. It costs <= 15 padded positions per text.
    pad_multiple = 16

    def __init__(self, model_dir: Path, model, probe: tuple[list[str], np.ndarray], bf16: bool,
                 threads: int | None = None) -> None:
        ov = require("openvino", "openvino")
        super().__init__(model_dir)
        self.precision = "bf16" if bf16 else "f32"
        # Choice: one single-threaded stream per core, batches side by side, rather than one stream whose
        # threads share each batch: the same texts/s alone (225-230 on this machine), and when the process
        # also serves calls (the E-step beside the M-step's draft) a preempted thread stalls only its own
        # batch: 95-99% of the ideal share under contention, against 80-90% (docs/performance.md)
        self.streams = threads or cores()
        config = {"INFERENCE_PRECISION_HINT": self.precision, "PERFORMANCE_HINT": "THROUGHPUT",
                  "NUM_STREAMS": self.streams, "INFERENCE_NUM_THREADS": self.streams}
        core = ov.Core()
        if isinstance(model, Path):
            model = core.read_model(str(model))
        self.compiled = core.compile_model(model, "CPU", config)
        self.queue = ov.AsyncInferQueue(self.compiled, self.streams)
        texts, want = probe
        got = self.encode(texts)
        worst = float(np.min(np.sum(got * want, axis=1))) if got.shape == want.shape else float("nan")
        if not worst >= MIN_PROBE_COSINE:
            raise ConfigError(f"the st provider's backend 'openvino' ({self.precision}) disagrees with torch on its "
                              f"probe texts (cosine {worst:.6f}); set the st provider's option backend: torch")

    def encode(self, texts: list[str], batch_size: int = 64, length_sorted: bool = True) -> np.ndarray:
        # Choice: batches of at most STREAM_BATCH texts, as many as a multiple of the streams. A stream that
        # is done takes the next batch, so small batches keep both streams busy to the end of an encode;
        # 64-text batches left one stream idle while the other ran the last batch: 163 texts/s on encodes of
        # 150 texts against 236-248, the same on encodes of 3,000 (260-270; docs/performance.md)
        n_batches = max(self.streams, -(-len(texts) // min(batch_size, STREAM_BATCH)))
        n_batches = -(-n_batches // self.streams) * self.streams
        return super().encode(texts, max(1, -(-len(texts) // n_batches)), length_sorted)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.run_batches([feeds])[0]

    def run_batches(self, batches: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        out: list[np.ndarray | None] = [None] * len(batches)

        def done(request, k: int) -> None:
            out[k] = np.array(request.get_output_tensor(0).data, dtype=np.float32)  # a copy: the request is reused

        self.queue.set_callback(done)
        for k, feeds in enumerate(batches):
            self.queue.start_async(feeds, k)
        self.queue.wait_all()
        missing = [k for k, v in enumerate(out) if v is None]
        if missing:
            raise RuntimeError(f"OpenVINO returned no output for batches {missing} of {len(batches)}")
        # bf16's own normalization leaves norms off 1 by ~1e-3: redo it in fp32
        return [v / np.linalg.norm(v, axis=1, keepdims=True) for v in out if v is not None]


_ENCODERS: dict[tuple, OpenVinoEncoder] = {}
_LOCK = threading.Lock()


def load_encoder(model_dir: Path, cache_dir: Path, bf16: bool, threads: int | None = None) -> OpenVinoEncoder:
    key = (str(model_dir), str(cache_dir), bf16, threads)
    with _LOCK:
        encoder = _ENCODERS.get(key)
        if encoder is None:
            try:
                folder = converted_model(model_dir, cache_dir)
                probe = read_probe(folder / "probe.json")
            except OSError as exc:
                raise ConfigError(f"the st provider's backend 'openvino' could not write or read its converted "
                                  f"model under {cache_dir}: {exc.strerror or exc}; set the option openvino_dir "
                                  f"to a writable folder") from None
            encoder = _ENCODERS[key] = OpenVinoEncoder(model_dir, folder / "model.xml", probe, bf16, threads)
        return encoder
