"""The st provider's backends: agreement with torch, the ONNX export's cache (once, whole, checked),
and the errors a user sees. Speed is measured by bench/embeddings.py, not here."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from picaco.base.config import ProviderSettings
from picaco.base.errors import ConfigError
from picaco.llm.providers import st, st_onnx

MODEL = "all-MiniLM-L6-v2"
# short and long texts, one past max_seq_length (256 tokens) so truncation is compared too
TEXTS = ["a cold cellar", "Tradition?", "red apples keep through the winter, and pears ripen quickly",
         "Consider honouring the customs you grew up with and keeping to norms. " * 3,
         " ".join(f"word{i} and the sea" for i in range(120))]
ROOT = Path(__file__).resolve().parents[3]


def provider(**options) -> st.SentenceTransformersProvider:
    return st.SentenceTransformersProvider("st", ProviderSettings(kind="st", options=options))


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory) -> Path:
    """One export for the module (it takes seconds), in a folder of its own."""
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return st.load_model(MODEL).encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("backend", ["auto", "torch-bf16", "openvino", "onnx"])
async def test_exact_equivalent_backends_agree_with_torch(backend, onnx_dir, torch_vectors):
    reply = await provider(backend=backend, onnx_dir=str(onnx_dir)).embed(MODEL, TEXTS)
    assert reply.vectors.shape == (len(TEXTS), 384) and reply.vectors.dtype == np.float32
    assert cosines(reply.vectors, torch_vectors).min() >= 0.999
    np.testing.assert_allclose(np.linalg.norm(reply.vectors, axis=1), 1.0, atol=1e-5)


def test_auto_is_openvino_for_the_embedded_model_else_bf16_only_on_a_bf16_cpu(monkeypatch):
    p = provider()
    assert p.backend_for(MODEL) == "openvino" and p.backend_for("jinaai/jina-embeddings-v3") == "torch"
    monkeypatch.setattr(st, "openvino_available", lambda: False)
    monkeypatch.setattr(st, "native_bf16", lambda: True)
    assert p.backend_for(MODEL) == "torch-bf16" and p.backend_for("jinaai/jina-embeddings-v3") == "torch"
    monkeypatch.setattr(st, "native_bf16", lambda: False)
    assert p.backend_for(MODEL) == "torch"


def test_the_onnx_tokenizer_gives_sentence_transformers_ids(onnx_dir):
    encoder = st_onnx.load_encoder(st.embedded_model_dir(), onnx_dir, "onnx")
    want = st.load_model(MODEL).preprocess(TEXTS)
    got = encoder.token_ids(TEXTS)
    for row, ids in zip(want["input_ids"].tolist(), got):
        assert row[:len(ids)] == ids and not any(row[len(ids):])
    assert max(len(x) for x in got) == 256  # the long text is cut where sentence-transformers cuts it


async def test_int8_is_approximate_and_cached_apart(onnx_dir, torch_vectors):
    p = provider(backend="onnx-int8", onnx_dir=str(onnx_dir))
    assert p.endpoint == "local:onnx-int8" and provider(backend="onnx").endpoint == provider().endpoint == "local"
    reply = await p.embed(MODEL, TEXTS)
    assert 0.9 < cosines(reply.vectors, torch_vectors).min() < 0.9999


async def test_the_export_is_made_once_and_reused(onnx_dir, monkeypatch):
    await provider(backend="onnx", onnx_dir=str(onnx_dir)).embed(MODEL, TEXTS[:1])
    path = st_onnx.exported_model(st.embedded_model_dir(), onnx_dir, int8=False)
    assert path.parent.parent == onnx_dir and path.with_name("model.onnx.sha256").read_text() == st_onnx.sha256_file(path)
    mtime = path.stat().st_mtime_ns
    monkeypatch.setattr(st_onnx, "export_bytes", lambda d: pytest.fail("exported again"))
    assert st_onnx.exported_model(st.embedded_model_dir(), onnx_dir, int8=False) == path
    assert path.stat().st_mtime_ns == mtime


async def test_a_corrupt_export_is_detected_and_made_again(onnx_dir, tmp_path, monkeypatch, torch_vectors):
    good = st_onnx.exported_model(st.embedded_model_dir(), onnx_dir, int8=False)
    good_bytes = good.read_bytes()
    copy = tmp_path / good.parent.name / "model.onnx"
    copy.parent.mkdir()
    copy.write_bytes(good_bytes[: len(good_bytes) // 2])  # a half-copied file with a stamp of the whole
    copy.with_name("model.onnx.sha256").write_text(st_onnx.sha256_file(good))
    exports = []
    monkeypatch.setattr(st_onnx, "export_bytes", lambda d: exports.append(d) or good_bytes)
    reply = await provider(backend="onnx", onnx_dir=str(tmp_path)).embed(MODEL, TEXTS)
    assert len(exports) == 1 and copy.read_bytes() == good_bytes
    assert cosines(reply.vectors, torch_vectors).min() >= 0.999


def test_two_processes_using_it_first_build_it_once(tmp_path):
    """Both start before either has a file; the lock makes the second wait, then find it whole."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from picaco.llm.providers.st_onnx import ensure_file
        def build():
            with open({str(tmp_path / 'builds.log')!r}, "a") as fh:
                fh.write("built\\n")
            time.sleep(1.0)
            return b"x" * 5_000_000
        ensure_file(Path({str(tmp_path / 'cache' / 'model.onnx')!r}), build)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(2)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    assert (tmp_path / "builds.log").read_text().count("built") == 1
    assert (tmp_path / "cache" / "model.onnx").read_bytes() == b"x" * 5_000_000
    assert not [f for f in (tmp_path / "cache").iterdir() if f.suffix == ".tmp"]


async def test_missing_onnxruntime_is_a_one_line_error_naming_the_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what `import onnxruntime` sees when absent
    with pytest.raises(ConfigError) as err:
        await provider(backend="onnx", onnx_dir=str(tmp_path)).embed(MODEL, ["x"])
    msg = str(err.value)
    assert "pip install onnxruntime" in msg and "backend: torch" in msg and "\n" not in msg


def test_a_bad_backend_or_a_non_embedded_model_on_onnx_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match="option backend 'tensorrt' is not one of"):
        provider(backend="tensorrt")
    with pytest.raises(ConfigError, match="verified for st/all-MiniLM-L6-v2 only"):
        provider(backend="onnx").backend_for("jinaai/jina-embeddings-v3")
