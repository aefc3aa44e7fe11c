"""The content-addressed call cache on diskcache, storing JSON or raw bytes only.

diskcache <= 5.6.3 unpickles any row marked as pickled (CVE-2025-69872, no fixed release), so anyone
able to write into the cache directory could run code in every process that reads it. `JsonOnlyDisk`
never writes a pickled row and refuses to read one: such a row is reported and treated as a miss.

Eviction is off: diskcache's default (1 GiB, least-recently-stored culling) would silently drop answers
that were paid for. The cache grows until the user clears it (`picaco cache clear`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from pathlib import Path

import diskcache
import numpy as np
from diskcache.core import MODE_BINARY, MODE_PICKLE, MODE_RAW, MODE_TEXT, UNKNOWN

log = logging.getLogger(__name__)

CACHE_MODES = ("normal", "refresh", "off")
_STATS_PREFIX = "stats:"
STAT_FIELDS = ("hits", "misses", "saved_prompt_tokens", "saved_completion_tokens", "saved_cost_microusd")


class UnsafeCacheRow(Exception):
    """A row that would need unpickling to be read."""


class JsonOnlyDisk(diskcache.Disk):
    """A diskcache Disk that stores str/bytes/int and never pickles or unpickles."""

    def put(self, key):
        if type(key) in (str, bytes):
            return super().put(key)
        raise TypeError(f"cache keys must be str or bytes, not {type(key).__name__}")

    def get(self, key, raw):
        if not raw:
            raise UnsafeCacheRow("row with a pickled key")
        return super().get(key, raw)

    def store(self, value, read, key=UNKNOWN):
        if read or type(value) in (bytes, str, int, float):
            return super().store(value, read, key)
        raise TypeError(f"cache values must be bytes, str or numbers, not {type(value).__name__}")

    def fetch(self, mode, filename, value, read):
        if mode not in (MODE_RAW, MODE_BINARY, MODE_TEXT):
            raise UnsafeCacheRow(f"row stored in mode {mode} ({'pickle' if mode == MODE_PICKLE else 'unknown'})")
        return super().fetch(mode, filename, value, read)


_INSERT = ("INSERT OR IGNORE INTO Cache(key, raw, store_time, expire_time, access_time, access_count, tag, size,"
           " mode, filename, value) VALUES (?, 1, ?, NULL, ?, 0, NULL, 0, ?, NULL, ?)")


def _insert_row(dc: diskcache.Cache, key: str, value: bytes) -> None:
    """A new small row straight into diskcache's table: what `Cache.set` stores for a str key and a
    bytes value under `disk_min_file_size` (raw key, MODE_RAW blob, no file, no expiry), without its
    per-call Python overhead. Existing or large rows go through `Cache.set`, which replaces files and
    keeps diskcache's counters right (a REPLACE would skip its delete triggers)."""
    if len(value) < dc.disk.min_file_size:
        now = time.time()
        if dc._sql(_INSERT, (key, now, now, MODE_RAW, value)).rowcount == 1:
            return
    dc.set(key, value, retry=True)


def _settle(fut: asyncio.Future, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)


class ResponseCache:
    """Chat samples as JSON, embeddings as float32 bytes, and persistent hit/miss counters per role."""

    def __init__(self, directory: str | Path, mode: str = "normal") -> None:
        if mode not in CACHE_MODES:
            raise ValueError(f"cache mode must be one of {CACHE_MODES}, got {mode!r}")
        self.mode = mode
        self.directory = Path(directory)
        self.refused_rows = 0
        self.write_errors = 0
        self._dc = diskcache.Cache(
            str(self.directory),
            disk=JsonOnlyDisk,
            eviction_policy="none",
            size_limit=2**62,
            cull_limit=0,
            statistics=False,
        )
        self._queued: list[tuple[list[tuple[str, bytes]], asyncio.Future]] = []
        self._flush_scheduled = False
        # Counters live in their own small cache so that entry counts and `clear` stay simple.
        self._counters = diskcache.Cache(str(self.directory / "counters"), disk=JsonOnlyDisk,
                                         eviction_policy="none", size_limit=2**62, cull_limit=0)

    @property
    def reads(self) -> bool:
        return self.mode == "normal"

    @property
    def writes(self) -> bool:
        return self.mode != "off"

    # -- raw access -------------------------------------------------------------------------------
    def _get(self, key: str):
        """diskcache's `get` minus its bookkeeping (no expiry or access counts are ever used here):
        one indexed SELECT, decoded by JsonOnlyDisk, which refuses pickled rows."""
        try:
            row = self._dc._sql("SELECT mode, filename, value FROM Cache WHERE key = ? AND raw = 1", (key,)).fetchone()
            if row is None:
                return None
            return self._dc.disk.fetch(row[0], row[1], row[2], False)
        except UnsafeCacheRow as exc:
            self.refused_rows += 1
            log.warning("cache row %s refused (%s); treating it as a miss", key[:16], exc)
            return None
        except (sqlite3.DatabaseError, OSError) as exc:
            # A damaged row must not kill a paid run: the call is made again and the row rewritten.
            self.refused_rows += 1
            log.warning("cache row %s unreadable (%s); treating it as a miss", key[:16], exc)
            return None

    # -- chat samples -----------------------------------------------------------------------------
    def get_sample(self, key: str) -> dict | None:
        if not self.reads:
            return None
        raw = self._get(key)
        if raw is None:
            return None
        if not isinstance(raw, bytes):
            self.refused_rows += 1
            return None
        return json.loads(raw)

    def put_sample(self, key: str, record: dict) -> None:
        """Write one sample now (outside an event loop); the client batches through `write_rows`."""
        if self.writes:
            self._commit([(key, encode_sample(record))])

    async def write_rows(self, rows: list[tuple[str, bytes]]) -> None:
        """Commit rows (from encode_sample / encode_embedding); returns once they are on disk.

        Rows of every request that finishes in the same turn of the event loop are committed together,
        in one transaction, at the end of that turn: a transaction per call would cost more CPU than
        the HTTP call it caches. A failed write is logged and counted, never raised: the caller's paid
        result stays valid."""
        if not self.writes or not rows:
            return
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queued.append((rows, fut))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        try:
            await fut
        except Exception as exc:
            self.write_errors += len(rows)
            log.error("could not write %d rows to the cache at %s: %s", len(rows), self.directory, exc)

    def _flush(self) -> None:
        batch, self._queued, self._flush_scheduled = self._queued, [], False
        error: Exception | None = None
        try:
            self._commit([row for rows, _ in batch for row in rows])
        except Exception as exc:  # reported to every waiter, who logs and counts it
            error = exc
        for _, fut in batch:
            _settle(fut, error)

    def _commit(self, rows: list[tuple[str, bytes]]) -> None:
        """The one write path: rows in one transaction (an existing row is replaced, as `refresh` needs)."""
        with self._dc.transact(retry=True):
            for key, value in rows:
                _insert_row(self._dc, key, value)

    # -- embeddings -------------------------------------------------------------------------------
    def get_embedding(self, key: str) -> np.ndarray | None:
        if not self.reads:
            return None
        raw = self._get(key)
        if raw is None or not isinstance(raw, bytes) or len(raw) % 4:
            return None
        return np.frombuffer(raw, dtype=np.float32)

    def put_embedding(self, key: str, vector: np.ndarray) -> None:
        if self.writes:
            self._commit([(key, encode_embedding(vector))])

    # -- counters ---------------------------------------------------------------------------------
    def add_stats(self, role: str, **counts: int) -> None:
        if self.mode == "off":
            return
        for field, delta in counts.items():
            if delta:
                self._counters.incr(f"{_STATS_PREFIX}{role}:{field}", int(delta))

    def stats(self) -> dict:
        by_role: dict[str, dict[str, int]] = {}
        for key in self._counters.iterkeys():
            if isinstance(key, str) and key.startswith(_STATS_PREFIX):
                role, field = key[len(_STATS_PREFIX):].split(":", 1)
                by_role.setdefault(role, {f: 0 for f in STAT_FIELDS})[field] = int(self._counters.get(key, 0))
        return {"directory": str(self.directory), "entries": len(self._dc),
                "size_bytes": self._dc.volume() + self._counters.volume(),
                "by_role": by_role, "refused_rows": self.refused_rows}

    def clear(self) -> int:
        self._counters.clear()
        return self._dc.clear()

    def close(self) -> None:
        if self._queued:  # a loop that stopped before its flush ran: write what it left
            self._flush()
        self._dc.close()
        self._counters.close()

    def __len__(self) -> int:
        return len(self._dc)


def encode_sample(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


def encode_embedding(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()
