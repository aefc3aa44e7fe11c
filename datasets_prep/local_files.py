"""Local source files before and after `datasets` reads them: which files and format a path means, the
checks that turn bad files into one-line errors, the content key of the `datasets` cache, and the line of
a JSON file that does not parse.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

from .errors import DataError, EmptySourceError, EncodingError

_SUFFIX_FORMATS = {
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".txt": "text",
}
_TEXT_FORMATS = {"json", "csv", "text"}


def format_of(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return _SUFFIX_FORMATS.get(suffixes[-1]) if suffixes else None


def resolve_files(source: str, path: Path, fmt: str | None) -> tuple[list[Path], str]:
    """The files behind a local path (a file, or a folder's files of one supported format), sorted."""
    if not path.exists():
        raise DataError(f"{source}: {path} does not exist")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if fmt is None:
            files = [p for p in files if format_of(p) is not None]
            formats = sorted({f for p in files if (f := format_of(p)) is not None})
            if len(formats) > 1:
                raise DataError(f"{source}: folder {path} mixes formats ({', '.join(formats)}); set `format:` or split it")
            fmt = formats[0] if formats else None
        if not files:
            raise EmptySourceError(f"{source}: folder {path} holds no .json/.jsonl/.csv/.parquet/.txt file")
    else:
        files = [path]
        fmt = fmt or format_of(path)
        if fmt is None:
            raise DataError(
                f"{source}: cannot tell the format of {path} from its name; use .json/.jsonl/.csv/.parquet/.txt "
                "(optionally .gz) or set `format:`"
            )
    assert fmt is not None
    return files, fmt


def _contents(path: Path, raw: bytes) -> bytes:
    if path.suffix.lower() != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as err:
        raise DataError(f"{path} is not a valid gzip file ({err})") from None


def check_file(source: str, path: Path, fmt: str) -> dict[str, Any]:
    """Reject empty and non-UTF-8 files with a one-line message; return the file's provenance."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{source}: cannot read {path}: {err.strerror or err}") from None
    if not raw:
        raise EmptySourceError(f"{source}: {path} is empty")
    try:
        data = _contents(path, raw)
    except DataError as err:
        raise DataError(f"{source}: {err}") from None
    if fmt in _TEXT_FORMATS:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            bad = data[err.start : err.start + 1].hex()
            raise EncodingError(f"{source}: {path} is not UTF-8 (byte 0x{bad} at offset {err.start}); re-save it as UTF-8") from None
        if not text.strip():
            raise EmptySourceError(f"{source}: {path} is empty (whitespace only)")
    return {"path": str(path), "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}


def cache_config_name(fmt: str, infos: list[dict[str, Any]]) -> str:
    """The `datasets` config name under which these files are cached: it carries their content.

    `datasets` keys its cache of local files on path and modification time only, so a file rewritten with
    its old mtime (`cp -p`, `rsync -a`, `touch -r`) would be served with its old rows. The config name is
    part of the cache path, so naming it after the sha256 of the bytes keys the cache on content too.
    """
    digest = hashlib.sha256("\x1f".join([fmt, *(info["sha256"] for info in infos)]).encode()).hexdigest()
    return f"picaco-{digest[:20]}"


def first_json_error(path: Path) -> str | None:
    """Where a JSON or JSON Lines file stops parsing, as '<file> line N: ...', or None if it parses.

    `datasets` reports a bad line as an offset into one of its read blocks, or as pandas' "Trailing data"
    once it has fallen back to reading the file as a single document; neither names the line.
    """
    text = _contents(path, path.read_bytes()).decode("utf-8")
    try:
        json.loads(text)
        return None
    except json.JSONDecodeError as err:
        if text.lstrip().startswith("["):
            return f"{path} line {err.lineno} column {err.colno}: not valid JSON ({err.msg})"
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            return f"{path} line {number}: not valid JSON ({err.msg} at column {err.colno})"
        if not isinstance(row, dict):
            return f"{path} line {number}: a JSON Lines row must be an object, got {type(row).__name__}"
    return None
