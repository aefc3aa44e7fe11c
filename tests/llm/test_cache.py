"""The cache stores JSON or raw bytes only, refuses pickled rows and never evicts on its own."""

from __future__ import annotations

import os

import diskcache
import numpy as np
import pytest

from picaco.llm.cache import JsonOnlyDisk, ResponseCache


class Payload:
    """Unpickling this creates a directory: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("big", [False, True], ids=["row-in-sqlite", "row-in-file"])
def test_planted_pickle_is_never_executed(tmp_path, big):
    directory = tmp_path / "cache"
    ResponseCache(directory).close()  # create it the normal way first
    marker = tmp_path / "pwned"
    attacker = diskcache.Cache(str(directory))  # the default Disk pickles
    value = [Payload(marker)] + (["x" * 100_000] if big else [])
    attacker.set("k" * 64, value)
    attacker.close()
    assert not marker.exists()

    cache = ResponseCache(directory)
    assert cache.get_sample("k" * 64) is None
    assert cache.get_embedding("k" * 64) is None
    assert not marker.exists(), "the pickled payload ran"
    assert cache.refused_rows == 2
    # a refused row is simply recomputed and overwritten with JSON
    cache.put_sample("k" * 64, {"text": "ok"})
    assert cache.get_sample("k" * 64) == {"text": "ok"}
    cache.close()


def test_disk_refuses_to_pickle(tmp_path):
    dc = diskcache.Cache(str(tmp_path), disk=JsonOnlyDisk)
    with pytest.raises(TypeError):
        dc.set("k", {"a": 1})
    with pytest.raises(TypeError):
        dc.set(("tuple", "key"), b"x")
    dc.close()


def test_no_silent_eviction(tmp_path):
    cache = ResponseCache(tmp_path)
    assert cache._dc.eviction_policy == "none"
    blob = np.ones(4096, dtype=np.float32)
    for i in range(300):
        cache.put_embedding(f"e{i}", blob)
    assert len(cache) == 300
    assert all(cache.get_embedding(f"e{i}") is not None for i in range(300))
    cache.close()


def test_embeddings_round_trip_as_float32_bytes(tmp_path):
    cache = ResponseCache(tmp_path)
    v = np.array([0.1, -2.5, 3.0], dtype=np.float64)
    cache.put_embedding("k", v)
    out = cache.get_embedding("k")
    assert out.dtype == np.float32 and np.allclose(out, v)
    raw = cache._dc.get("k")
    assert isinstance(raw, bytes) and len(raw) == 12
    cache.close()


def test_modes(tmp_path):
    with pytest.raises(ValueError, match="cache mode"):
        ResponseCache(tmp_path, mode="sometimes")
    normal = ResponseCache(tmp_path)
    normal.put_sample("k", {"text": "a"})
    normal.close()
    refresh = ResponseCache(tmp_path, mode="refresh")
    assert refresh.get_sample("k") is None  # recompute...
    refresh.put_sample("k", {"text": "b"})  # ...and overwrite
    refresh.close()
    off = ResponseCache(tmp_path, mode="off")
    assert off.get_sample("k") is None
    off.put_sample("k2", {"text": "c"})
    off.close()
    normal = ResponseCache(tmp_path)
    assert normal.get_sample("k") == {"text": "b"} and normal.get_sample("k2") is None
    assert normal.clear() == 1 and len(normal) == 0
    normal.close()
