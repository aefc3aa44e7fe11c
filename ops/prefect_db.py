"""The Prefect server's database: SQLite in PREFECT_HOME (the test harness, `make demo`'s ephemeral server,
`make serve --db sqlite`) or Postgres (`make serve`, the deployment check), as Prefect recommends for more
than one user: a SQLite-backed server answers 503 when busy and its clients back off 2-4 s.

    url = server_db_url("postgresql://picaco@db.lab:5432/prefect")   # -> postgresql+asyncpg://...
    check_reachable(url)          # one OpsError line, password shown as ***, when Postgres refuses

Only the server process gets the URL (which may carry the password): workers and flow runs talk to the
API, never to the database.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

from picaco.llm.cache_pg import redact_url
from picaco.procs import ProcessError as OpsError

DB_URL_ENV = "PICACO_PREFECT_DB_URL"  # a Postgres the user names for `make serve` (PREFECT_* vars are dropped)
_SCHEMES = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg",
            "postgresql+asyncpg": "postgresql+asyncpg", "sqlite+aiosqlite": "sqlite+aiosqlite"}


def server_db_url(url: str) -> str:
    """`url` as Prefect's server wants it (postgresql+asyncpg:// or sqlite+aiosqlite://)."""
    parts = urlsplit(url)
    scheme = _SCHEMES.get(parts.scheme)
    if scheme is None:
        raise OpsError(f"Prefect database URL {redact_url(url)} must start with postgresql:// (or "
                       f"postgresql+asyncpg://, sqlite+aiosqlite://)")
    if scheme.startswith("postgresql") and not (parts.hostname and parts.path.strip("/")):
        raise OpsError(f"Prefect database URL {redact_url(url)} needs a host and a database name "
                       f"(postgresql://user@host:5432/prefect)")
    return urlunsplit(parts._replace(scheme=scheme))


def is_postgres(url: str) -> bool:
    return urlsplit(url).scheme.startswith("postgresql")


def libpq_url(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(scheme="postgresql"))


def _scrub(text: str, url: str) -> str:
    secret = urlsplit(url).password
    text = " ".join(text.split())
    return text.replace(secret, "***") if secret else text


def check_reachable(url: str, timeout_s: int = 10) -> None:
    """Log in to the Prefect database before the server starts, so a wrong host, port, password or
    database name is one line here, not a traceback in the server's log after a minute of retries."""
    if not is_postgres(url):
        return
    try:
        psycopg.connect(libpq_url(url), connect_timeout=timeout_s).close()
    except (psycopg.Error, ValueError) as exc:
        raise OpsError(f"cannot connect to the Prefect database at {redact_url(url)}: "
                       f"{_scrub(str(exc), url)}") from None


def database_ready(api_url: str) -> bool | None:
    """Whether the server reaches its database (Prefect's /ready endpoint): None when the server itself
    does not answer."""
    try:
        r = httpx.get(f"{api_url}/ready", timeout=10)
    except httpx.HTTPError:
        return None
    return r.status_code == 200
