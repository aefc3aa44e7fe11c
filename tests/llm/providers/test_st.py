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


def blocking_encoder(p, monkeypatch, fail_on: str | None = None):
    """A stand-in model on `p` whose first encode waits for the returned event; `encodes` records each one."""
    import threading

    encodes: list[list[str]] = []
    first_may_finish = threading.Event()

    def encode(texts: list[str]) -> np.ndarray:
        encodes.append(list(texts))
        if len(encodes) == 1:
            first_may_finish.wait(10)
        if fail_on in texts:
            raise ValueError(f"cannot encode {fail_on!r}")
        return np.array([[float(len(t)), 1.0] for t in texts])

    monkeypatch.setattr(p, "_encoder", lambda model: encode)
    return encodes, first_may_finish


async def test_calls_that_arrive_during_an_encode_are_the_next_encode_without_the_loop(monkeypatch):
    import time

    p = provider(release_memory=False)
    encodes, first_may_finish = blocking_encoder(p, monkeypatch)
    first = asyncio.ensure_future(p.embed("m", TEXTS[:1]))
    while not encodes:  # the first encode has started
        await asyncio.sleep(0.01)
    later = [asyncio.ensure_future(p.embed("m", [t])) for t in TEXTS[1:]]
    await asyncio.sleep(0.05)
    first_may_finish.set()
    time.sleep(0.2)  # the loop is busy: the next encode starts without it
    assert encodes == [TEXTS[:1], TEXTS[1:]]
    replies = await asyncio.gather(first, *later)
    assert [r.vectors[0, 0] for r in replies] == [float(len(t)) for t in TEXTS]


async def test_an_encode_error_reaches_each_caller_of_its_batch_and_the_encoder_goes_on(monkeypatch):
    p = provider(release_memory=False)
    encodes, first_may_finish = blocking_encoder(p, monkeypatch, fail_on="bad")
    first_may_finish.set()
    results = await asyncio.gather(p.embed("m", ["bad"]), p.embed("m", ["good"]), return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["ValueError", "ValueError"]  # one encode, one error for both
    assert (await p.embed("m", ["fine"])).vectors.tolist() == [[4.0, 1.0]]


async def test_a_cancelled_caller_leaves_the_others_their_vectors(monkeypatch):
    p = provider(release_memory=False)
    encodes, first_may_finish = blocking_encoder(p, monkeypatch)
    gone = asyncio.ensure_future(p.embed("m", ["a"]))
    kept = asyncio.ensure_future(p.embed("m", ["bb"]))
    while not encodes:
        await asyncio.sleep(0.01)
    gone.cancel()
    first_may_finish.set()
    assert (await kept).vectors.tolist() == [[2.0, 1.0]]
    assert gone.cancelled()


def test_a_loop_that_stops_before_starting_the_encoder_strands_no_later_caller(monkeypatch):
    p = provider(release_memory=False)
    encodes, first_may_finish = blocking_encoder(p, monkeypatch)
    first_may_finish.set()
    first_loop = asyncio.new_event_loop()

    async def queue_and_leave() -> asyncio.Future:  # the loop stops before its callbacks start the encoder
        return asyncio.ensure_future(p.embed("m", ["left behind"]))

    left = first_loop.run_until_complete(queue_and_leave())

    async def later() -> list:
        return (await asyncio.wait_for(p.embed("m", ["later"]), 10)).vectors.tolist()

    assert asyncio.run(later()) == [[5.0, 1.0]]
    assert sorted(t for e in encodes for t in e) == ["later", "left behind"]
    assert first_loop.run_until_complete(left).vectors.tolist() == [[11.0, 1.0]]  # its loop runs again
    first_loop.close()


async def test_one_trim_per_busy_spell(monkeypatch):
    trims = []
    monkeypatch.setattr(st, "release_freed_memory", lambda: trims.append(1) or True)
    p = provider()
    encodes, first_may_finish = blocking_encoder(p, monkeypatch)
    first = asyncio.ensure_future(p.embed("m", ["a"]))
    while not encodes:
        await asyncio.sleep(0.01)
    later = asyncio.ensure_future(p.embed("m", ["b"]))
    await asyncio.sleep(0.05)
    first_may_finish.set()
    await asyncio.gather(first, later)
    assert len(encodes) == 2 and len(trims) == 1


@pytest.mark.parametrize("release", [True, False])
async def test_freed_memory_is_handed_back_when_the_encoder_goes_idle_unless_disabled(monkeypatch, release):
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
