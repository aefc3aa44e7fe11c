"""The local sentence-transformers provider: the embedded MiniLM, coalesced calls, memory handed back."""

from __future__ import annotations

import asyncio
import platform

import numpy as np
import pytest

from picaco.base.config import ProviderSettings
from picaco.base.errors import ConfigError
from picaco.llm.providers import st

TEXTS = ["red apples keep through the winter", "a cold cellar", "green pears ripen quickly", "tides and the moon"]


def provider(**options) -> st.SentenceTransformersProvider:
    return st.SentenceTransformersProvider("st", ProviderSettings(kind="st", options=options))


async def test_concurrent_calls_are_one_encode_with_the_models_vectors(monkeypatch):
    model = st.load_model("all-MiniLM-L6-v2")
    encodes = []
    real_encode = model.encode
    monkeypatch.setattr(model, "encode", lambda texts, **kw: encodes.append(list(texts)) or real_encode(texts, **kw))
    p = provider(backend="torch")  # the reference backend; the others are compared with it in test_st_onnx.py
    replies = await asyncio.gather(*[p.embed("all-MiniLM-L6-v2", [t]) for t in TEXTS])
    assert encodes == [TEXTS]
    got = np.concatenate([r.vectors for r in replies])
    want = real_encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    assert got.shape == (4, 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("release", [True, False])
async def test_freed_memory_is_handed_back_after_each_encode_unless_disabled(monkeypatch, release):
    trims = []
    monkeypatch.setattr(st, "release_freed_memory", lambda: trims.append(1) or True)
    p = provider(release_memory=release)
    await p.embed("all-MiniLM-L6-v2", TEXTS[:2])
    await p.embed("all-MiniLM-L6-v2", TEXTS[2:])
    assert len(trims) == (2 if release else 0)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_malloc_trim_is_found_on_glibc():
    assert st.release_freed_memory() is True


async def test_a_hub_model_offline_is_a_one_line_config_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    p = provider()
    with pytest.raises(ConfigError) as err:
        await p.embed("no-such-org/no-such-model", ["x"])
    assert "no-such-org/no-such-model" in str(err.value) and "\n" not in str(err.value)
