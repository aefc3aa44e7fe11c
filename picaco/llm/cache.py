"""The diskcache backend of the call cache (the default; the shared part is cache_base.py), storing JSON or
raw bytes only.

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

import errno
import logging
import os
import sqlite3
import time
from pathlib import Path

import diskcache
from diskcache.core import DBNAME, MODE_BINARY, MODE_PICKLE, MODE_RAW, MODE_TEXT, UNKNOWN

from picaco.base.errors import CacheError
from picaco.llm.cache_base import CACHE_MODES, STAT_FIELDS, CacheBackend, encode_embedding, encode_sample  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

_STATS_PREFIX = "stats:"
CACHE_URL_ENV = "PICACO_CACHE_URL"


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


def _insert_row(dc: diskcache.Cache, key: str, value: bytes, overwrite: bool = True) -> None:
    """A new small row straight into diskcache's table: what `Cache.set` stores for a str key and a
    bytes value under `disk_min_file_size` (raw key, MODE_RAW blob, no file, no expiry), without its
    per-call Python overhead. Existing or large rows go through `Cache.set`, which replaces files and
    keeps diskcache's counters right (a REPLACE would skip its delete triggers)."""
    if len(value) < dc.disk.min_file_size:
        now = time.time()
        if dc._sql(_INSERT, (key, now, now, MODE_RAW, value)).rowcount == 1:
            return
    if overwrite or key not in dc:
        dc.set(key, value, retry=True)


class ResponseCache(CacheBackend):
    """The diskcache backend (the default): one directory, rows and counters in SQLite files."""

    def __init__(self, directory: str | Path, mode: str = "normal") -> None:
        super().__init__(mode)
        self.directory = Path(directory)
        self.location = str(self.directory)
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

    def _write(self, rows: list[tuple[str, bytes]], overwrite: bool) -> None:
        try:
            with self._dc.transact(retry=True):
                for key, value in rows:
                    _insert_row(self._dc, key, value, overwrite)
        except (sqlite3.Error, OSError) as exc:
            raise self._write_failure(exc) from None

    def _iter_rows(self):
        """Every stored (key, bytes); refused rows (pickled, unreadable) are reported and skipped."""
        try:
            keys = [k for (k,) in self._dc._sql("SELECT key FROM Cache WHERE raw = 1 ORDER BY rowid").fetchall()]
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from None
        for key in keys:
            raw = self._get(key)
            if isinstance(raw, bytes):
                yield key, raw

    # -- counters ---------------------------------------------------------------------------------
    def _add_counts(self, role: str, counts: dict[str, int]) -> None:
        try:
            with self._counters.transact(retry=True):
                for field, delta in counts.items():
                    self._incr(f"{_STATS_PREFIX}{role}:{field}", delta)
        except (sqlite3.Error, OSError) as exc:
            raise self._write_failure(exc, self.directory / "counters") from None

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
        return {"backend": "diskcache", "directory": str(self.directory), "entries": entries, "size_bytes": size,
                "by_role": by_role, "refused_rows": self.refused_rows}

    def clear(self) -> int:
        self._counters.clear()
        return self._dc.clear()

    def _close(self) -> None:
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


def open_cache(cache_dir: str | Path, mode: str = "normal", url: str | None = None) -> CacheBackend:
    """The configured backend: Postgres when a URL is given (`client.cache_url`, else the environment
    variable PICACO_CACHE_URL, which may carry the password), diskcache in `cache_dir` otherwise; an
    empty `url` means diskcache whatever the environment says."""
    if url is None:
        url = os.environ.get(CACHE_URL_ENV) or None
    if not url:
        return ResponseCache(cache_dir, mode=mode)
    from picaco.llm.cache_pg import PostgresCache  # psycopg is imported only when a URL asks for it

    return PostgresCache(url, mode=mode)
