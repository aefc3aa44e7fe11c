"""The one code path every source goes through: `datasets.load_dataset` on a hub id, a URL or local files.

Local files and folders are checked first (exists, not empty, UTF-8 for text formats) so that bad input
gives a one-line error naming the source and the file instead of a builder traceback. Hub ids and URLs
fail fast when offline: with HF_DATASETS_OFFLINE/HF_HUB_OFFLINE set, `datasets` answers from its cache
or refuses at once; otherwise a 3-second TCP probe of the host runs first, because `datasets` itself
retries for about 20 seconds before giving up. A URL origin (HoneSet's release file) is downloaded once
into the cache and then read like a local file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import polars as pl

from .config import SourceConfig
from .errors import DataError, EmptySourceError, MissingColumnError, SourceUnavailableError
from .local_files import cache_config_name, check_file, first_json_error, format_of, resolve_files
from .schema import prompts_to_frame
from .sources import SOURCES
from .sources.base import Record, SourceSpec

PROBE_TIMEOUT_S = 3.0

@dataclass
class LoadedSource:
    """A source read and mapped to the normalized table (before any filter)."""

    config: SourceConfig
    frame: pl.DataFrame
    rows_loaded: int
    origin: dict[str, Any]
    columns: dict[str, str]
    records_sha256: str

    def provenance(self) -> dict[str, Any]:
        return {
            "name": self.config.name,
            "loader": self.config.loader,
            "origin": self.origin,
            "columns": self.columns,
            "options": self.config.parsed_options().model_dump(),
            "rows_loaded": self.rows_loaded,
            "prompts": self.frame.height,
            "records_sha256": self.records_sha256,
        }


# ---------------------------------------------------------------------------------------------------
# Hub and URLs


def offline_reason() -> str | None:
    """Why the hub is known to be off limits without trying (offline switches), else None."""
    for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            return f"{var}={os.environ[var]}"
    try:
        import datasets.config as dconfig

        if getattr(dconfig, "HF_HUB_OFFLINE", False):
            return "datasets offline mode"
    except ImportError:  # datasets missing is reported when it is first needed
        pass
    return None


def _proxy_for(scheme: str) -> str | None:
    for var in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"):
        if os.environ.get(var):
            return os.environ[var]
    return None


@functools.lru_cache(maxsize=16)
def probe(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None if a TCP connection to the URL's host (or its proxy) opens within `timeout`, else the reason.

    The connection runs in a daemon thread because name resolution ignores socket timeouts.
    """
    parts = urlsplit(url)
    target = urlsplit(_proxy_for(parts.scheme) or url)
    host = target.hostname or ""
    port = target.port or (443 if target.scheme == "https" else 80)
    result: dict[str, str] = {}

    def run() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as err:
            result["error"] = f"{type(err).__name__}: {err}"

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    if thread.is_alive():
        return f"no answer from {host}:{port} within {timeout:.0f}s"
    if "error" in result:
        return f"{host}:{port} unreachable ({result['error']})"
    return None


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _unavailable(source: str, what: str, reason: str) -> SourceUnavailableError:
    return SourceUnavailableError(
        f"{source}: cannot reach {what} ({reason}); pass a local file instead: "
        f"set `sources: {{{source}: {{path: <file or folder>}}}}` in a --config YAML (see docs/datasets.md)"
    )


def _root_message(err: BaseException) -> str:
    seen = err
    while seen.__cause__ is not None or (seen.__context__ is not None and not seen.__suppress_context__):
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    text = str(seen).strip().splitlines()
    return f"{type(seen).__name__}: {text[0] if text else ''}".strip()


class _BuilderErrorsFilter(logging.Filter):
    """Drops the ERROR records of `datasets`' file builders while picaco loads through them.

    A builder logs its failure just before raising it, and that record reaches stderr twice (the datasets
    handler and the root handler). picaco turns the raised failure into its own one-line error, so the log
    would only repeat it, less precisely. Thread-local, because the Prefect flow loads sources in threads.
    """

    LOGGERS = tuple(f"datasets.packaged_modules.{fmt}.{fmt}" for fmt in ("json", "csv", "parquet", "text"))

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR or not getattr(self._local, "depth", 0)

    @contextlib.contextmanager
    def active(self):
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            if self not in logger.filters:
                logger.addFilter(self)
        self._local.depth = getattr(self._local, "depth", 0) + 1
        try:
            yield
        finally:
            self._local.depth -= 1


_BUILDER_ERRORS = _BuilderErrorsFilter()


def _load_dataset(source: str, what: str, fetch: Callable[[], Any], offline: str | None) -> Any:
    try:
        with _BUILDER_ERRORS.active():
            return fetch()
    except DataError:
        raise
    except ConnectionError as err:
        raise _unavailable(source, what, offline or _root_message(err)) from err
    except Exception as err:
        from datasets.exceptions import DatasetNotFoundError

        if offline and isinstance(err, (DatasetNotFoundError, FileNotFoundError)):
            raise _unavailable(source, what, f"{offline}, not in the local datasets cache") from err
        if "corresponds to no data" in str(err):  # how `datasets` reports a split with zero rows
            raise EmptySourceError(f"{source}: {what} has no rows") from err
        raise DataError(f"{source}: could not read {what}: {_root_message(err)}") from err


def _load_files(source: str, what: str, files: list[Path], fmt: str, cache: str | None) -> tuple[Any, list[dict]]:
    """Load local files with the `datasets` builder of their format, cached under their content."""
    import datasets

    infos = [check_file(source, f, fmt) for f in files]
    try:
        ds = _load_dataset(
            source,
            what,
            lambda: datasets.load_dataset(
                fmt, name=cache_config_name(fmt, infos), data_files=[str(f) for f in files], split="train", cache_dir=cache
            ),
            None,
        )
    except EmptySourceError:
        raise
    except DataError as err:
        if fmt == "json":
            for f in files:
                if (where := first_json_error(f)) is not None:
                    raise DataError(f"{source}: {where}") from err
        raise
    return ds, infos


def download_path(url: str, cache_dir: str | Path | None) -> Path:
    """Where a URL origin is kept: under the given cache dir, else the datasets cache."""
    if cache_dir is None:
        import datasets.config as dconfig

        cache_dir = dconfig.HF_DATASETS_CACHE
    name = Path(urlsplit(url).path).name or "data"
    return Path(cache_dir) / "picaco_downloads" / hashlib.sha256(url.encode("utf-8")).hexdigest()[:16] / name


def fetch_url(source: str, url: str, cache_dir: str | Path | None, timeout: float = 60.0) -> Path:
    """Download a URL origin once (atomically) and return the local file.

    `datasets` reads remote `data_files` through fsspec's HTTP backend, which needs aiohttp and has no
    offline answer; fetching the file with httpx keeps the load itself on the same local-file path.
    """
    target = download_path(url, cache_dir)
    if target.exists():
        return target
    offline = offline_reason()
    if offline is not None:
        raise _unavailable(source, url, f"{offline}, not downloaded before")
    if (reason := probe(url)) is not None:
        raise _unavailable(source, url, reason)
    import httpx

    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPError as err:
        raise DataError(f"{source}: could not download {url}: {type(err).__name__}: {err}") from err
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(response.content)
    os.replace(tmp, target)
    return target


def _resolved_revision(hub_id: str, revision: str | None) -> str:
    from huggingface_hub import HfApi

    try:
        return HfApi(endpoint=hub_endpoint()).dataset_info(hub_id, revision=revision).sha or ""
    except Exception as err:
        raise DataError(f"could not read the revision of hub dataset {hub_id!r}: {_root_message(err)}") from err


# ---------------------------------------------------------------------------------------------------


def open_dataset(cfg: SourceConfig, *, cache_dir: str | Path | None = None) -> tuple[Any, dict[str, Any], str]:
    """Load the raw `datasets.Dataset` of a source; returns it, its origin record and a label for messages."""
    import datasets

    spec = SOURCES[cfg.loader]
    name = cfg.name
    cache = str(cache_dir) if cache_dir is not None else None
    if cfg.path is not None:
        path = Path(cfg.path).expanduser()
        files, fmt = resolve_files(name, path, cfg.format)
        ds, infos = _load_files(name, f"{path} as {fmt}", files, fmt, cache)
        return ds, {"kind": "local", "format": fmt, "files": infos}, str(path)
    if cfg.url is not None:
        fmt = cfg.format or format_of(Path(urlsplit(cfg.url).path)) or "json"
        local = fetch_url(name, cfg.url, cache_dir)
        ds, (info,) = _load_files(name, f"{cfg.url} as {fmt}", [local], fmt, cache)
        return ds, {"kind": "url", "url": cfg.url, "format": fmt, "bytes": info["bytes"], "sha256": info["sha256"]}, cfg.url
    if cfg.hub is not None:
        hub = cfg.hub
        what = f"hub dataset '{hub.id}'"
        offline = offline_reason()
        if offline is None and (reason := probe(hub_endpoint())) is not None:
            raise _unavailable(name, what, reason)
        kwargs: dict[str, Any] = {"split": hub.split, "cache_dir": cache}
        if hub.config:
            kwargs["name"] = hub.config
        if hub.data_dir:
            kwargs["data_dir"] = hub.data_dir
        if hub.revision:
            kwargs["revision"] = hub.revision
        ds = _load_dataset(name, what, lambda: datasets.load_dataset(hub.id, **kwargs), offline)
        origin = {"kind": "hub", **hub.model_dump(), "resolved_revision": None}
        if offline is None:
            origin["resolved_revision"] = _resolved_revision(hub.id, hub.revision)
        else:
            origin["loaded_from"] = "local datasets cache (offline)"
        return ds, origin, what
    if spec.local_only:
        first = next(iter(spec.columns.values())).default
        raise SourceUnavailableError(
            f"{name}: {spec.title} is not downloadable; set `sources: {{{name}: {{path: <file>}}}}` in a --config "
            f"YAML to a local CSV/JSON/JSONL/Parquet file with a {first!r} column (see docs/datasets.md)"
        )
    raise DataError(f"{name}: no origin set; give one of hub, url or path")


def column_mapping(spec: SourceSpec, cfg: SourceConfig, available: list[str], label: str) -> dict[str, str]:
    """Canonical field -> file column. Missing required (or explicitly mapped) columns are an error."""
    mapping: dict[str, str] = {}
    for canon, col in spec.columns.items():
        column = cfg.columns.get(canon, col.default)
        if column in available:
            mapping[canon] = column
        elif col.required or canon in cfg.columns:
            hint = f"map another column with `columns: {{{canon}: <column>}}`; " if column == col.default else ""
            raise MissingColumnError(
                f"{cfg.name}: {label} has no column {column!r} (needed for {canon}); {hint}"
                f"columns present: {', '.join(available) or 'none'}"
            )
    return mapping


def extract_records(spec: SourceSpec, cfg: SourceConfig, ds: Any, label: str) -> tuple[list[Record], dict[str, str]]:
    available = list(ds.column_names)
    if spec.reshape is not None:
        wanted = {canon: cfg.columns.get(canon, col.default) for canon, col in spec.columns.items()}
        records = spec.reshape(ds, wanted)
        if records is not None:
            return records, {"shape": "nested"}
    mapping = column_mapping(spec, cfg, available, label)
    rows = ds.select_columns(list(dict.fromkeys(mapping.values()))).to_list()
    return [{canon: row[column] for canon, column in mapping.items()} for row in rows], mapping


def records_digest(records: list[Record]) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps(r, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def map_records(spec: SourceSpec, cfg: SourceConfig, records: list[Record], label: str) -> list:
    options = cfg.parsed_options()
    if spec.collect is not None:
        try:
            return spec.collect(list(enumerate(records)), options)
        except (ValueError, TypeError, KeyError) as err:
            raise DataError(f"{cfg.name}: {label}: {err}") from err
    out = []
    for index, record in enumerate(records):
        try:
            out.append((index, spec.to_prompt(record, options)))
        except (ValueError, TypeError, KeyError) as err:
            raise DataError(f"{cfg.name}: {label} row {index}: {err}") from err
    return out


def load_source(cfg: SourceConfig, *, cache_dir: str | Path | None = None) -> LoadedSource:
    """Read one source through `datasets` and map it to the normalized prompt table."""
    spec = SOURCES[cfg.loader]
    ds, origin, label = open_dataset(cfg, cache_dir=cache_dir)
    if ds.num_rows == 0:
        raise EmptySourceError(f"{cfg.name}: {label} has no rows")
    records, mapping = extract_records(spec, cfg, ds, label)
    if not records:
        raise EmptySourceError(f"{cfg.name}: {label} has no records")
    prompts = map_records(spec, cfg, records, label)
    frame = prompts_to_frame(cfg.name, prompts)
    return LoadedSource(
        config=cfg,
        frame=frame,
        rows_loaded=len(records),
        origin=origin,
        columns=mapping,
        records_sha256=records_digest(records),
    )
