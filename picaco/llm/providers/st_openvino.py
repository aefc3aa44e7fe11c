"""The st provider's `openvino` backend: the embedded model's sentence-transformers pipeline (Transformer ->
mean Pooling -> Normalize, the package's own code, `st_onnx.st_pipeline`) converted in memory from the
package's torch weights by `openvino.convert_model` (about 3 s per process; nothing is written to disk) and
compiled for the CPU by OpenVINO, in bf16 where the CPU multiplies bf16 in hardware (`st.native_bf16`) and in
fp32 elsewhere. Texts are tokenized, length-sorted and batched like the ONNX backend (st_onnx.py).

Measured on this project's 2-core machine (AVX512_BF16, no AMX), 1,000 of bench/embeddings.py's responses, two
quiet rounds: torch fp32 50-51 texts/s, torch-bf16 127-129, OpenVINO fp32 107-117 (cosine to torch fp32
1.000000), OpenVINO bf16 189-192 (min cosine 0.999950, mean 0.999981; torch-bf16: 0.999887 / 0.999943). Its
vectors therefore share the cache with torch's (endpoint `local`). Before the first encode the conversion is
checked against torch on two probe texts.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from picaco.base.errors import ConfigError
from picaco.llm.providers.st_onnx import INPUTS, PROBE, LengthSortedEncoder, _quiet, cores, require, st_pipeline

# the conversion must agree with torch at least this well on the probe texts, in either precision
MIN_PROBE_COSINE = 0.9999


class OpenVinoEncoder(LengthSortedEncoder):
    def __init__(self, model_dir: Path, bf16: bool, threads: int | None = None) -> None:
        ov = require("openvino", "openvino")
        import torch  # heavy: loaded when this backend is first used, as the st provider does
        from sentence_transformers import SentenceTransformer

        super().__init__(model_dir)
        # loaded here, not through st.load_model's cache, so its torch weights are freed after the conversion
        st_model = SentenceTransformer(str(model_dir), device="cpu").eval()
        features = st_model.preprocess(PROBE)
        example = {k: features[k] for k in INPUTS}
        with _quiet(), torch.no_grad():  # the tracer warns about a shape check that is constant for this model
            converted = ov.convert_model(st_pipeline(st_model), example_input=example)
            want = st_model.encode(PROBE, normalize_embeddings=True, convert_to_numpy=True)
        self.precision = "bf16" if bf16 else "f32"
        config = {"INFERENCE_PRECISION_HINT": self.precision, "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": threads or cores()}
        self.compiled = ov.Core().compile_model(converted, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.output = self.compiled.outputs[0]
        got = self.run({k: features[k].numpy() for k in INPUTS})
        worst = float(np.min(np.sum(got * want, axis=1)))
        if worst < MIN_PROBE_COSINE:
            raise ConfigError(f"the st provider's backend 'openvino' ({self.precision}) disagrees with torch on its "
                              f"probe texts (cosine {worst:.6f}); set the st provider's option backend: torch")

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        vectors = np.asarray(self.request.infer(feeds)[self.output], dtype=np.float32)
        # bf16's own normalization leaves norms off 1 by ~1e-3: redo it in fp32
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


_ENCODERS: dict[tuple, OpenVinoEncoder] = {}
_LOCK = threading.Lock()


def load_encoder(model_dir: Path, bf16: bool, threads: int | None = None) -> OpenVinoEncoder:
    key = (str(model_dir), bf16, threads)
    with _LOCK:
        encoder = _ENCODERS.get(key)
        if encoder is None:
            encoder = _ENCODERS[key] = OpenVinoEncoder(model_dir, bf16, threads)
        return encoder
