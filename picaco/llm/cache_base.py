"""What every cache backend shares: modes, decoding rows, batching writes by event-loop turn, counters,
and moving rows between backends (`picaco cache export` / `import`).

A backend stores rows keyed by content hash (a sample as JSON bytes, an embedding as float32 bytes) and
implements the raw part: `_get`, `_write`, `_add_counts`, `_iter_rows`, `stats`, `clear`, `_close` and
`__len__`. Everything that decides what a row means lives here, once, so both backends refuse the same
bad rows and fail the same way: a write that fails is one `CacheError` line and stops the run.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Iterable, Iterator

import numpy as np

from picaco.base.errors import CacheError

log = logging.getLogger(__name__)

CACHE_MODES = ("normal", "refresh", "off")
STAT_FIELDS = ("hits", "misses", "saved_prompt_tokens", "saved_completion_tokens", "saved_cost_microusd")
ROW_KINDS = ("sample", "embedding")
_WARN_LIMIT = 20
_IMPORT_BATCH = 1000


def _settle(fut: asyncio.Future, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)


class CacheBackend:
    """Chat samples as JSON, embeddings as float32 bytes, and persistent hit/miss counters per role."""

    location: str = ""  # where the cache is, for messages (a URL never carries its password here)
    # Whether a run's writes replace a row already there outside `refresh` mode (a refused row is then
    # recomputed and replaced); a shared backend keeps the first answer, so every worker reads the same.
    replaces_rows = True

    def __init__(self, mode: str = "normal") -> None:
        if mode not in CACHE_MODES:
            raise ValueError(f"cache mode must be one of {CACHE_MODES}, got {mode!r}")
        self.mode = mode
        self.refused_rows = 0
        self.write_errors = 0
        self.failed: CacheError | None = None  # set by the first failed write; nothing is written after it
        self._queued: list[tuple[list[tuple[str, bytes]], asyncio.Future]] = []
        self._flush_scheduled = False

    # -- the raw part, per backend ---------------------------------------------------------------
    def _get(self, key: str) -> bytes | None:
        raise NotImplementedError

    def _write(self, rows: list[tuple[str, bytes]], overwrite: bool) -> None:
        """All rows in one transaction, or none; raises CacheError. `overwrite` replaces existing rows."""
        raise NotImplementedError

    def _add_counts(self, role: str, counts: dict[str, int]) -> None:
        raise NotImplementedError

    def _iter_rows(self) -> Iterator[tuple[str, bytes]]:
        raise NotImplementedError

    def stats(self) -> dict:
        raise NotImplementedError

    def clear(self) -> int:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------------
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
                        _WARN_LIMIT, self.location)

    def get_sample(self, key: str) -> dict | None:
        if not self.reads:
            return None
        raw = self._get(key)
        if raw is None:
            return None
        record = decode_sample(raw)
        if record is None:
            self._refuse("cache row %s is not a sample; treating it as a miss", key[:16])
        return record

    def get_embedding(self, key: str) -> np.ndarray | None:
        if not self.reads:
            return None
        raw = self._get(key)
        if raw is None or not isinstance(raw, bytes) or len(raw) % 4:
            return None
        return np.frombuffer(raw, dtype=np.float32)

    def put_sample(self, key: str, record: dict) -> None:
        """Write one sample now (outside an event loop); the client batches through `write_rows`."""
        if self.writes:
            self._commit([(key, encode_sample(record))])

    def put_embedding(self, key: str, vector: np.ndarray) -> None:
        if self.writes:
            self._commit([(key, encode_embedding(vector))])

    async def write_rows(self, rows: list[tuple[str, bytes]]) -> None:
        """Commit rows (from encode_sample / encode_embedding); returns once they are stored.

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

    def _commit(self, rows: list[tuple[str, bytes]], overwrite: bool | None = None) -> None:
        """The one write path; imports pass overwrite=False."""
        if self.failed is not None:
            raise self.failed
        try:
            if overwrite is None:
                overwrite = self.replaces_rows or self.mode == "refresh"
            self._write(rows, overwrite)
        except CacheError as exc:
            self.failed = exc
            raise

    def claim(self, keys: list[str], ttl_s: float = 120.0) -> set[str]:
        """The keys this worker may pay for. Here every key: only a shared backend coordinates workers."""
        return set(keys)

    def release(self, keys: list[str]) -> None:
        """Drop this worker's claims on `keys` (fetched but not stored, or failed); nothing to drop here."""

    async def wait_for(self, keys: list[str], poll_s: float = 0.05) -> None:
        """Wait until no other worker holds a claim on `keys`; nobody else can here."""

    def add_stats(self, role: str, **counts: int) -> None:
        """Add to the persistent counters. Never raises: they only report, and a run that finished must
        not fail for them (a failure is logged once)."""
        if self.mode == "off" or self.failed is not None:
            return
        counts = {field: int(delta) for field, delta in counts.items() if delta}
        if not counts:
            return
        try:
            self._add_counts(role, counts)
        except CacheError as exc:
            log.warning("%s; the hit/miss counters were not updated", exc)

    def close(self) -> None:
        if self._queued and self.failed is None:  # a loop that stopped before its flush ran: write what it left
            self._flush()
        self._close()

    # -- moving rows between backends ------------------------------------------------------------
    def export_rows(self) -> Iterator[dict]:
        """Every readable row as {kind, key, value}: a sample's value is its JSON object, an
        embedding's the base64 of its float32 bytes."""
        for key, raw in self._iter_rows():
            record = decode_sample(raw)
            if record is not None:
                yield {"kind": "sample", "key": key, "value": record}
            elif len(raw) % 4 == 0:
                yield {"kind": "embedding", "key": key, "value": base64.b64encode(raw).decode()}
            else:
                self._refuse("cache row %s is neither a sample nor an embedding; not exported", key[:16])

    def import_rows(self, rows: Iterable[dict]) -> int:
        """Insert exported rows, never replacing a row already there; returns how many were offered."""
        batch: list[tuple[str, bytes]] = []
        count = 0
        for row in rows:
            batch.append(row_to_bytes(row))
            count += 1
            if len(batch) >= _IMPORT_BATCH:
                self._commit(batch, overwrite=False)
                batch = []
        if batch:
            self._commit(batch, overwrite=False)
        return count


def decode_sample(raw) -> dict | None:
    try:
        record = json.loads(raw) if isinstance(raw, bytes) else None
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        return None
    return record


def row_to_bytes(row) -> tuple[str, bytes]:
    """One exported row back to (key, stored bytes); a malformed row is a one-line CacheError."""
    if not isinstance(row, dict) or row.get("kind") not in ROW_KINDS or not isinstance(row.get("key"), str):
        raise CacheError(f"not a cache row (need kind in {ROW_KINDS}, key, value): {str(row)[:80]}")
    if row["kind"] == "sample":
        if decode_sample(encode_sample(row["value"]) if isinstance(row["value"], dict) else None) is None:
            raise CacheError(f"cache row {row['key'][:16]}: a sample's value must be an object with a text")
        return row["key"], encode_sample(row["value"])
    try:
        raw = base64.b64decode(row["value"], validate=True)
    except (TypeError, ValueError):
        raise CacheError(f"cache row {row['key'][:16]}: an embedding's value must be base64") from None
    if len(raw) % 4:
        raise CacheError(f"cache row {row['key'][:16]}: an embedding must be float32 bytes")
    return row["key"], raw


def encode_sample(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


def encode_embedding(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()
