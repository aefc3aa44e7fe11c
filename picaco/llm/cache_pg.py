"""The Postgres cache backend: one cache shared by every worker and host that can reach the server.

Rows are keyed by the content hash: a sample as JSON text, an embedding as raw float32 bytes (bytea).
Writes are batched `INSERT ... ON CONFLICT`: `DO NOTHING` (a row is never overwritten: two workers that
paid for the same sample keep the first answer) except in `refresh` mode. A batch is one transaction,
so a server that goes away mid-run leaves whole batches or nothing.

A table `picaco_cache_schema` holds the schema version; tables written by a newer version are refused
(an older picaco would misread them) with one line saying to upgrade.

The driver is psycopg 3 (sync): the cache interface is synchronous, called from the event loop between
awaits, and a loopback lookup is one indexed SELECT well under a millisecond. The URL's password never
appears in a message: every error names the URL with the password replaced by `***`.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from picaco.base.errors import CacheError
from picaco.llm.cache_base import STAT_FIELDS, CacheBackend, decode_sample

SCHEMA_VERSION = 1
CLAIM_TTL_S = 120.0  # longer than one call with its retries takes, as a rule; a dead worker's claim lapses then
_LOCK_ID = 0x7069_6361  # "pica": serializes schema creation between workers starting together

_CREATE = (
    "CREATE TABLE IF NOT EXISTS picaco_cache (key text PRIMARY KEY, sample text, embedding bytea,"
    " CHECK ((sample IS NULL) <> (embedding IS NULL)))",
    "CREATE TABLE IF NOT EXISTS picaco_cache_counters (role text NOT NULL, field text NOT NULL,"
    " value bigint NOT NULL, PRIMARY KEY (role, field))",
    "CREATE TABLE IF NOT EXISTS picaco_cache_claims (key text PRIMARY KEY, owner text NOT NULL,"
    " expires timestamptz NOT NULL)",
)
# A key is taken when no row holds it yet and nobody else's claim on it is alive.
_CLAIM = ("INSERT INTO picaco_cache_claims (key, owner, expires)"
          " SELECT k, %(owner)s, clock_timestamp() + make_interval(secs => %(ttl)s) FROM unnest(%(keys)s::text[]) AS k"
          " WHERE NOT EXISTS (SELECT 1 FROM picaco_cache c WHERE c.key = k)"
          " ON CONFLICT (key) DO UPDATE SET owner = EXCLUDED.owner, expires = EXCLUDED.expires"
          " WHERE picaco_cache_claims.expires < clock_timestamp() OR picaco_cache_claims.owner = EXCLUDED.owner"
          " RETURNING key")
_PENDING = ("SELECT k FROM unnest(%(keys)s::text[]) AS k WHERE NOT EXISTS (SELECT 1 FROM picaco_cache c WHERE c.key = k)"
            " AND EXISTS (SELECT 1 FROM picaco_cache_claims l WHERE l.key = k AND l.expires >= clock_timestamp())")
_INSERT = "INSERT INTO picaco_cache (key, sample, embedding) VALUES (%s, %s, %s) ON CONFLICT (key) DO "
_KEEP = _INSERT + "NOTHING"
_REPLACE = _INSERT + "UPDATE SET sample = EXCLUDED.sample, embedding = EXCLUDED.embedding"
_COUNT = ("INSERT INTO picaco_cache_counters (role, field, value) VALUES (%s, %s, %s) ON CONFLICT (role, field)"
          " DO UPDATE SET value = picaco_cache_counters.value + EXCLUDED.value")


def is_postgres_url(url: str) -> bool:
    return urlsplit(url).scheme in ("postgresql", "postgres")


def redact_url(url: str) -> str:
    """The URL with its password (if any) replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


class PostgresCache(CacheBackend):
    """The cache in Postgres tables (see the module docstring)."""

    replaces_rows = False

    def __init__(self, url: str, mode: str = "normal", *, connect_timeout_s: int = 10) -> None:
        super().__init__(mode)
        try:
            import psycopg
        except ImportError:  # a dependency of picaco: a broken install, said in one line
            raise CacheError("the Postgres cache needs psycopg (pip install 'psycopg[binary]')") from None
        self._psycopg = psycopg
        self._secret = urlsplit(url).password
        self._owner = f"{os.getpid()}-{secrets.token_hex(4)}"  # one per cache object: a process may hold several
        self.location = redact_url(url)
        if not is_postgres_url(url):
            raise CacheError(f"cache URL {self.location} is not a postgresql:// URL")
        try:
            self._conn = psycopg.connect(url, autocommit=True, connect_timeout=connect_timeout_s)
        except (psycopg.Error, ValueError) as exc:
            raise CacheError(f"cannot connect to the cache at {self.location}: {self._reason(exc)}") from None
        try:
            self._create_schema()
        except BaseException:
            self._conn.close()
            raise

    def _reason(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split()) or type(exc).__name__
        if self._secret:
            for secret in {self._secret, unquote(self._secret)}:  # as written in the URL, and as sent
                text = text.replace(secret, "***")
        # libpq may quote the whole connection string back ("invalid dsn: ... password=...")
        return re.sub(r"(password\s*=\s*)\S+", r"\1***", text)

    def _failure(self, what: str, exc: BaseException) -> CacheError:
        return CacheError(f"cannot {what} the cache at {self.location}: {self._reason(exc)}")

    def _scalar(self, sql: str) -> Any:
        """The value of an aggregate query, which always returns one row."""
        row = self._conn.execute(sql).fetchone()
        if row is None:
            raise CacheError(f"the cache at {self.location} returned no row for: {sql}")
        return row[0]

    def _create_schema(self) -> None:
        try:
            with self._conn.transaction():
                self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
                self._conn.execute("CREATE TABLE IF NOT EXISTS picaco_cache_schema (version integer NOT NULL)")
                found = self._scalar("SELECT max(version) FROM picaco_cache_schema")
                if found is not None and found > SCHEMA_VERSION:
                    raise CacheError(f"the cache at {self.location} was written by a newer picaco (cache schema "
                                     f"version {found}; this one reads up to {SCHEMA_VERSION}): upgrade picaco "
                                     f"or point client.cache_url at another database")
                for statement in _CREATE:
                    self._conn.execute(statement)
                if found is None:
                    self._conn.execute("INSERT INTO picaco_cache_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
        except self._psycopg.Error as exc:
            raise self._failure("set up", exc) from None

    def _get(self, key: str) -> bytes | None:
        try:
            row = self._conn.execute("SELECT sample, embedding FROM picaco_cache WHERE key = %s",
                                     (key,), prepare=True).fetchone()
        except self._psycopg.Error as exc:
            # not a miss: a run that read on would pay again for everything the server holds
            raise self._failure("read from", exc) from None
        if row is None:
            return None
        return row[0].encode() if row[0] is not None else bytes(row[1])

    def _write(self, rows: list[tuple[str, bytes]], overwrite: bool) -> None:
        params = []
        for key, raw in rows:
            is_sample = decode_sample(raw) is not None
            params.append((key, raw.decode() if is_sample else None, None if is_sample else raw))
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                cur.executemany(_REPLACE if overwrite else _KEEP, params)
                cur.execute("DELETE FROM picaco_cache_claims WHERE key = ANY(%s)", ([k for k, _ in rows],))
        except self._psycopg.Error as exc:
            raise self._failure("write to", exc) from None

    # -- claims: one worker pays for a sample several workers miss at once ---------------------------
    def claim(self, keys: list[str], ttl_s: float = CLAIM_TTL_S) -> set[str]:
        """The keys this worker may pay for: not stored, and unclaimed or claimed by a worker whose claim
        expired (a dead worker's claim lapses after ttl_s). Writing a key's row drops its claim."""
        try:
            with self._conn.transaction():
                rows = self._conn.execute(_CLAIM, {"owner": self._owner, "ttl": ttl_s, "keys": list(keys)}).fetchall()
        except self._psycopg.Error as exc:
            raise self._failure("claim samples in", exc) from None
        return {k for (k,) in rows}

    def release(self, keys: list[str]) -> None:
        """Drop this worker's claims on `keys` it will not write (a refused or empty sample, a failed call):
        a waiting worker then fetches them at once instead of after the claim lapses."""
        try:
            self._conn.execute("DELETE FROM picaco_cache_claims WHERE key = ANY(%s) AND owner = %s",
                               (list(keys), self._owner))
        except self._psycopg.Error as exc:
            raise self._failure("release claims in", exc) from None

    async def wait_for(self, keys: list[str], poll_s: float = 0.05) -> None:
        """Return once none of `keys` is claimed-and-unwritten: each was written by its claimer (read it
        now), or its claim lapsed (claim it again)."""
        pending = list(keys)
        while pending:
            try:
                pending = [k for (k,) in self._conn.execute(_PENDING, {"keys": pending}).fetchall()]
            except self._psycopg.Error as exc:
                raise self._failure("read from", exc) from None
            if pending:
                await asyncio.sleep(poll_s)

    def _add_counts(self, role: str, counts: dict[str, int]) -> None:
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                cur.executemany(_COUNT, [(role, field, delta) for field, delta in counts.items()])
        except self._psycopg.Error as exc:
            raise self._failure("write the counters of", exc) from None

    def _iter_rows(self):
        try:
            with self._conn.transaction(), self._conn.cursor(name="picaco_export") as cur:
                cur.itersize = 2000
                cur.execute("SELECT key, sample, embedding FROM picaco_cache ORDER BY key")
                for key, sample, embedding in cur:
                    yield key, sample.encode() if sample is not None else bytes(embedding)
        except self._psycopg.Error as exc:
            raise self._failure("read from", exc) from None

    def stats(self) -> dict:
        try:
            entries = self._scalar("SELECT count(*) FROM picaco_cache")
            size = self._scalar("SELECT pg_total_relation_size('picaco_cache')"
                                " + pg_total_relation_size('picaco_cache_counters')")
            counters = self._conn.execute("SELECT role, field, value FROM picaco_cache_counters").fetchall()
        except self._psycopg.Error as exc:
            raise self._failure("read from", exc) from None
        by_role: dict[str, dict[str, int]] = {}
        for role, field, value in counters:
            by_role.setdefault(role, {f: 0 for f in STAT_FIELDS})[field] = int(value)
        return {"backend": "postgres", "directory": self.location, "entries": int(entries),
                "size_bytes": int(size), "by_role": by_role, "refused_rows": self.refused_rows}

    def clear(self) -> int:
        try:
            with self._conn.transaction():
                removed = self._conn.execute("DELETE FROM picaco_cache").rowcount
                self._conn.execute("DELETE FROM picaco_cache_counters")
                self._conn.execute("DELETE FROM picaco_cache_claims")
        except self._psycopg.Error as exc:
            raise self._failure("clear", exc) from None
        return removed

    def _close(self) -> None:
        self._conn.close()

    def __len__(self) -> int:
        return self.stats()["entries"]
