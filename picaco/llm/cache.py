"""The content-addressed call cache on diskcache, storing JSON or raw bytes only.

diskcache <= 5.6.3 unpickles any row marked as pickled (CVE-2025-69872, no fixed release), so anyone
able to write into the cache directory could run code in every process that reads it. `JsonOnlyDisk`
never writes a pickled row and refuses to read one: such a row is reported and treated as a miss.

The hit/miss counters live in a second diskcache beside it and are read and incremented by plain SQL
on integer rows only: diskcache's own `incr` would add to whatever the row holds (a pickled row made it
raise), so a counter row that is not an integer is reported, ignored and started again.

Eviction is off: diskcache's default (1 GiB, least-recently-stored culling) would silently drop answers
that were paid for. The cache grows until the user clears it (`picaco cache clear`).

Whole-cache failures are one `CacheError` line naming the path: the directory is a file, the database is
damaged (truncated, random bytes), or a write failed (disk full). A write that fails stops the run: going
on would pay for answers the cache then loses.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import sqlite3
import time
from pathlib import Path

import diskcache
import numpy as np
from diskcache.core import DBNAME, MODE_BINARY, MODE_PICKLE, MODE_RAW, MODE_TEXT, UNKNOWN

from picaco.base.errors import CacheError

log = logging.getLogger(__name__)

CACHE_MODES = ("normal", "refresh", "off")
_STATS_PREFIX = "stats:"
_WARN_LIMIT = 20
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
        self.failed: CacheError | None = None  # set by the first failed write; nothing is written after it
        self._queued: list[tuple[list[tuple[str, bytes]], asyncio.Future]] = []
        self._flush_scheduled = False
        self._dc = self._open(self.directory)
        try:
            # Counters live in their own small cache so that entry counts and `clear` stay simple.
            self._counters = self._open(self.directory / "counters")
        except CacheError:
            self._dc.close()
            raise

    @staticmethod
    def _open(directory: Path) -> diskcache.Cache:
        for p in (directory, *directory.parents):
            if p.exists():
                if not p.is_dir():
                    raise CacheError(f"the cache directory {directory} cannot be created: {p} is a file, "
                                     f"not a directory (set client.cache_dir to a directory)")
                break
        try:
            return diskcache.Cache(str(directory), disk=JsonOnlyDisk, eviction_policy="none", size_limit=2**62,
                                   cull_limit=0, statistics=False)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and not _is_corruption(exc):
                raise CacheError(f"cannot open the cache database {directory / DBNAME}: {exc}") from None
            raise CacheError(f"the cache database {directory / DBNAME} is damaged ({exc}); move it aside "
                             f"to start an empty cache") from None
        except OSError as exc:
            raise CacheError(f"cannot open the cache at {directory}: {exc.strerror or exc}") from None

    def _damaged(self, exc: BaseException, path: Path | None = None) -> CacheError:
        return CacheError(f"the cache database {(path or self.directory) / DBNAME} is damaged ({exc}); move it "
                          f"aside to start an empty cache")

    def _write_failure(self, exc: BaseException, directory: Path | None = None) -> CacheError:
        directory = directory or self.directory
        if _is_disk_full(exc):
            return CacheError(f"cannot write to the cache at {directory}: the disk is full ({_reason(exc)})")
        if isinstance(exc, sqlite3.DatabaseError) and _is_corruption(exc):
            return self._damaged(exc, directory)
        return CacheError(f"cannot write to the cache at {directory}: {_reason(exc)}")

    @property
    def reads(self) -> bool:
        return self.mode == "normal"

    @property
    def writes(self) -> bool:
        return self.mode != "off"

    def _refuse(self, message: str, *args) -> None:
        """Count a refused row and say so; a cache full of bad rows is reported once per row up to a limit."""
        self.refused_rows += 1
        if self.refused_rows <= _WARN_LIMIT:
            log.warning(message, *args)
        if self.refused_rows == _WARN_LIMIT:
            log.warning("%d rows of the cache at %s refused so far; further ones are counted, not logged",
                        _WARN_LIMIT, self.directory)

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
            self._refuse("cache row %s refused (%s); treating it as a miss", key[:16], exc)
            return None
        except sqlite3.DatabaseError as exc:
            if _is_corruption(exc):  # the file, not a row: every later read and write would fail too
                raise self._damaged(exc) from None
            self._refuse("cache row %s unreadable (%s); treating it as a miss", key[:16], exc)
            return None
        except OSError as exc:
            # A damaged row (its value file gone) must not kill a paid run: the call is made again.
            self._refuse("cache row %s unreadable (%s); treating it as a miss", key[:16], exc)
            return None

    # -- chat samples -----------------------------------------------------------------------------
    def get_sample(self, key: str) -> dict | None:
        if not self.reads:
            return None
        raw = self._get(key)
        if raw is None:
            return None
        try:
            record = json.loads(raw) if isinstance(raw, bytes) else None
        except ValueError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            self._refuse("cache row %s is not a sample; treating it as a miss", key[:16])
            return None
        return record

    def put_sample(self, key: str, record: dict) -> None:
        """Write one sample now (outside an event loop); the client batches through `write_rows`."""
        if self.writes:
            self._commit([(key, encode_sample(record))])

    async def write_rows(self, rows: list[tuple[str, bytes]]) -> None:
        """Commit rows (from encode_sample / encode_embedding); returns once they are on disk.

        Rows of every request that finishes in the same turn of the event loop are committed together,
        in one transaction, at the end of that turn: a transaction per call would cost more CPU than
        the HTTP call it caches. A failed write raises `CacheError` (one line naming the cache), and
        every later write does too: a run that goes on would pay for answers it cannot keep."""
        if not self.writes or not rows:
            return
        if self.failed is not None:
            self.write_errors += len(rows)
            raise self.failed
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queued.append((rows, fut))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        try:
            await fut
        except CacheError:
            self.write_errors += len(rows)
            raise

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
        if self.failed is not None:
            raise self.failed
        try:
            with self._dc.transact(retry=True):
                for key, value in rows:
                    _insert_row(self._dc, key, value)
        except (sqlite3.Error, OSError) as exc:
            self.failed = self._write_failure(exc)
            raise self.failed from None

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
        """Add to the persistent counters. Never raises: they only report, and a run that finished must
        not fail for them (a failure is logged once)."""
        if self.mode == "off" or self.failed is not None:
            return
        try:
            with self._counters.transact(retry=True):
                for field, delta in counts.items():
                    if delta:
                        self._incr(f"{_STATS_PREFIX}{role}:{field}", int(delta))
        except (sqlite3.Error, OSError) as exc:
            log.warning("%s; the hit/miss counters were not updated",
                        self._write_failure(exc, self.directory / "counters"))

    def _incr(self, key: str, delta: int) -> None:
        row = self._counters._sql("SELECT mode, value FROM Cache WHERE key = ? AND raw = 1", (key,)).fetchone()
        if row is not None and not _is_counter(row[0], row[1]):
            self._refuse_counter(key, row[0])
            self._counters.set(key, delta, retry=True)  # replaces the row (and any file it had) unread
            return
        self._counters.incr(key, delta, retry=True)

    def _refuse_counter(self, key: str, mode) -> None:
        kind = "pickle" if mode == MODE_PICKLE else f"mode {mode}"
        self._refuse("cache counter %r in %s refused (stored as %s, not an integer); ignoring it", key,
                     self.directory / "counters", kind)

    def stats(self) -> dict:
        by_role: dict[str, dict[str, int]] = {}
        try:
            rows = self._counters._sql("SELECT key, raw, mode, value FROM Cache").fetchall()
            entries = len(self._dc)
            size = self._dc.volume() + self._counters.volume()
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from None
        for key, raw, mode, value in rows:
            if not raw or not isinstance(key, str):
                self._refuse_counter(repr(key)[:40], "pickled key")
                continue
            if not key.startswith(_STATS_PREFIX) or key.count(":") < 2:
                continue
            if not _is_counter(mode, value):
                self._refuse_counter(key, mode)
                continue
            role, field = key[len(_STATS_PREFIX):].split(":", 1)
            by_role.setdefault(role, {f: 0 for f in STAT_FIELDS})[field] = int(value)
        return {"directory": str(self.directory), "entries": entries, "size_bytes": size,
                "by_role": by_role, "refused_rows": self.refused_rows}

    def clear(self) -> int:
        self._counters.clear()
        return self._dc.clear()

    def close(self) -> None:
        if self._queued and self.failed is None:  # a loop that stopped before its flush ran: write what it left
            self._flush()
        self._dc.close()
        self._counters.close()

    def __len__(self) -> int:
        return len(self._dc)


def _is_counter(mode, value) -> bool:
    return mode == MODE_RAW and type(value) is int


def _is_corruption(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text or "file is encrypted" in text


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, sqlite3.Error) and "disk is full" in str(exc).lower()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__


def encode_sample(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


def encode_embedding(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()
