"""The OpenVINO backend of the st provider: agreement with torch in both precisions, order restored after
the length sort, the probe check, and a missing package as one line."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from picaco.base.config import ProviderSettings
from picaco.base.errors import ConfigError
from picaco.llm.providers import st, st_openvino

MODEL = "all-MiniLM-L6-v2"
TEXTS = ["a cold cellar", "Tradition?", "red apples keep through the winter, and pears ripen quickly",
         "Consider honouring the customs you grew up with and keeping to norms. " * 3,
         " ".join(f"word{i} and the sea" for i in range(120))]


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return st.load_model(MODEL).encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)


@pytest.mark.parametrize("bf16,floor", [(False, 0.99999), (True, 0.9999)])
def test_both_precisions_agree_with_torch_in_the_callers_order(bf16, floor, torch_vectors):
    encoder = st_openvino.load_encoder(st.embedded_model_dir(), bf16)
    assert encoder.precision == ("bf16" if bf16 else "f32")
    got = encoder.encode(TEXTS, batch_size=2)  # several batches, sorted by length, put back in order
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    assert np.sum(got * torch_vectors, axis=1).min() >= floor
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(encoder.encode(TEXTS[::-1])[::-1], got, atol=1e-3)


def test_a_conversion_that_disagrees_with_torch_is_refused(monkeypatch):
    monkeypatch.setattr(st_openvino, "MIN_PROBE_COSINE", 1.01)  # no conversion can pass a cosine above 1
    with pytest.raises(ConfigError, match="disagrees with torch on its probe texts"):
        st_openvino.OpenVinoEncoder(st.embedded_model_dir(), bf16=False)


async def test_missing_openvino_is_a_one_line_error_naming_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # what `import openvino` sees when absent
    monkeypatch.setattr(st_openvino, "_ENCODERS", {})
    p = st.SentenceTransformersProvider("st", ProviderSettings(kind="st", options={"backend": "openvino"}))
    with pytest.raises(ConfigError) as err:
        await p.embed(MODEL, ["x"])
    msg = str(err.value)
    assert "pip install openvino" in msg and "backend: torch" in msg and "\n" not in msg
