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


# ---- issue 10: hostile counter rows, a damaged cache, a full disk ------------------------------------------
def _plant_counter_pickle(directory, marker, key="stats:target:hits"):
    attacker = diskcache.Cache(str(directory / "counters"))
    attacker.set(key, Payload(marker))
    attacker.close()


def test_a_pickled_counter_row_is_ignored_with_a_warning_and_never_run(tmp_path, caplog):
    directory, marker = tmp_path / "cache", tmp_path / "pwned"
    cache = ResponseCache(directory)
    cache.add_stats("target", hits=3, misses=1)
    cache.close()
    _plant_counter_pickle(directory, marker)
    _plant_counter_pickle(directory, marker, key="stats:judge:misses")

    cache = ResponseCache(directory)
    stats = cache.stats()  # was UnsafeCacheRow
    assert stats["by_role"]["target"]["misses"] == 1 and stats["by_role"]["target"]["hits"] == 0
    assert "judge" not in stats["by_role"] and stats["refused_rows"] == 2
    cache.add_stats("target", hits=2)  # was TypeError: can't concat int to bytes
    cache.add_stats("judge", misses=5)
    assert cache.stats()["by_role"]["target"]["hits"] == 2  # the bad row started again, unread
    assert cache.stats()["by_role"]["judge"]["misses"] == 5
    cache.close()
    assert not marker.exists(), "the pickled payload ran"
    assert "refused" in caplog.text and "pickle" in caplog.text


def test_a_pickled_counter_key_is_ignored(tmp_path):
    directory, marker = tmp_path / "cache", tmp_path / "pwned"
    ResponseCache(directory).close()
    attacker = diskcache.Cache(str(directory / "counters"))
    attacker.set(("stats", "tuple-key"), 1)  # a non-str key is stored pickled
    attacker.close()
    cache = ResponseCache(directory)
    assert cache.stats()["refused_rows"] == 1 and not marker.exists()
    cache.close()


def test_a_row_that_is_not_a_sample_is_a_miss(tmp_path):
    cache = ResponseCache(tmp_path)
    cache._commit([("k1", b"\xff not json"), ("k2", b"[1, 2]")])
    assert cache.get_sample("k1") is None and cache.get_sample("k2") is None and cache.refused_rows == 2
    cache.close()


def test_cache_dir_that_is_a_file_is_one_line_naming_it(tmp_path):
    from picaco.base.errors import CacheError

    (tmp_path / "cache").write_text("x")
    for directory in (tmp_path / "cache", tmp_path / "cache" / "deeper"):
        with pytest.raises(CacheError, match=f"{tmp_path / 'cache'} is a file") as info:
            ResponseCache(directory)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("how", ["truncated", "header-only", "random"])
def test_a_damaged_database_is_one_line_naming_it(tmp_path, how):
    from picaco.base.errors import CacheError

    cache = ResponseCache(tmp_path)
    for i in range(2000):
        cache.put_sample(f"k{i}", {"text": "x" * 200})
    cache.close()
    db = tmp_path / "cache.db"
    if how == "random":
        db.write_bytes(os.urandom(50_000))
    else:
        with open(db, "r+b") as fh:
            fh.truncate(db.stat().st_size // 2 if how == "truncated" else 50)
    with pytest.raises(CacheError, match=rf"cache database {db} is damaged") as info:
        ResponseCache(tmp_path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"),
                                   __import__("sqlite3").OperationalError("database or disk is full")],
                         ids=["ENOSPC", "SQLITE_FULL"])
async def test_disk_full_while_writing_is_one_line_and_stops_later_writes(tmp_path, monkeypatch, error):
    from picaco.base.errors import CacheError
    from picaco.llm import cache as cache_mod

    cache = ResponseCache(tmp_path / "cache")

    def full(*args, **kwargs):
        raise error

    monkeypatch.setattr(cache_mod, "_insert_row", full)
    with pytest.raises(CacheError, match=rf"cannot write to the cache at {tmp_path / 'cache'}: the disk is full"):
        await cache.write_rows([("k", b'{"text": "a"}')])
    monkeypatch.undo()
    with pytest.raises(CacheError, match="disk is full"):  # nothing more is written once a write failed
        await cache.write_rows([("k2", b'{"text": "b"}')])
    cache.add_stats("target", hits=1)  # counters only report: never raise
    cache.close()
    assert cache.write_errors == 2


def test_export_import_round_trip_between_diskcaches_never_overwrites(tmp_path):
    src = ResponseCache(tmp_path / "a")
    src.put_sample("s" * 64, {"text": "hello", "usage": {"prompt_tokens": 3}})
    src.put_embedding("e" * 64, np.arange(4, dtype=np.float32))
    rows = list(src.export_rows())
    src.close()
    assert sorted(r["kind"] for r in rows) == ["embedding", "sample"]
    dst = ResponseCache(tmp_path / "b")
    dst.put_sample("s" * 64, {"text": "already here"})
    assert dst.import_rows(iter(rows)) == 2
    assert dst.get_sample("s" * 64) == {"text": "already here"}, "an import never replaces a row"
    assert np.array_equal(dst.get_embedding("e" * 64), np.arange(4, dtype=np.float32))
    dst.close()
