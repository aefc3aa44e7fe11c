"""Atomic file writes: a reader (or a crash) never sees half a file."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

from picaco.base.errors import ConfigError, FileWriteError


def write_error(path: Path, exc: OSError) -> FileWriteError:
    hint = "; free some space and run again" if exc.errno == errno.ENOSPC else ""
    return FileWriteError(exc.errno, f"cannot write {path}: {exc.strerror or exc}{hint}")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~current_umask())  # as open() would create it, not mkstemp's 0600
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise write_error(path, exc) from None
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def current_umask() -> int:
    """The process umask, which files and folders made by tempfile (0600, 0700) would otherwise ignore."""
    try:
        with open("/proc/self/status", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    # the portable read sets the umask; 0o077 in between errs on the private side for other threads
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def check_output_path(path: str | Path, what: str, *, folder: bool) -> None:
    """Refuse, before any work is done, an output path that cannot be written: a file where a folder must
    be (or the reverse), or a folder without write permission. One ConfigError line naming the path."""

    path = Path(path)
    kind, other = ("a folder", "a file") if folder else ("a file", "a folder")
    if path.exists() and path.is_dir() != folder:
        raise ConfigError(f"{what} {path} is {other}, not {kind}")
    nearest = path if folder and path.exists() else next(p for p in path.parents if p.exists())
    if not nearest.is_dir():
        raise ConfigError(f"{what} {path}: {nearest} is a file, not a folder")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path}: no permission to write in {nearest}")


def yaml_problem(exc: Exception) -> str:
    """A YAML parse error in one line: the problem and where (PyYAML's own message spans several)."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{getattr(exc, 'problem', None) or type(exc).__name__}{where}"


def read_yaml_mapping(path: str | Path) -> dict:
    """A YAML file that must hold a mapping; every problem is one ConfigError line naming the file."""
    import yaml

    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config file {p} is a directory, not a file")
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML ({yaml_problem(exc)})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {p} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"config file {p} cannot be read: {exc.strerror or exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {p} must be a mapping of fields")
    return raw


def read_prompt_table(path: Path) -> list[dict]:
    """Rows {prompt_id?, prompt} of a Parquet/JSONL/CSV prompt file (e.g. X.parquet of `picaco data build`)."""
    import polars as pl

    if path.is_dir():
        raise ConfigError(f"prompts file {path} is a directory, not a file")
    if not path.is_file():
        raise ConfigError(f"prompts file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            df = pl.read_parquet(path)
        elif suffix in (".jsonl", ".ndjson"):
            df = pl.read_ndjson(path)
        elif suffix == ".csv":
            df = pl.read_csv(path)
        else:
            raise ConfigError(f"prompts file {path}: unsupported format {suffix!r} (use .parquet, .jsonl or .csv)")
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"prompts file {path} cannot be read: {str(exc).splitlines()[0]}") from None
    if "prompt" not in df.columns:
        raise ConfigError(f"prompts file {path} has no 'prompt' column (columns: {', '.join(df.columns)})")
    return df.select([c for c in ("prompt_id", "prompt") if c in df.columns]).to_dicts()


def load_config(model, path: str | Path, overrides: dict, hidden_locs: tuple = ()):
    """Read a YAML config file into a pydantic model; `overrides` (top-level fields, None = unset) go on
    top. Every problem is one ConfigError line naming the file and the field."""
    raw = read_yaml_mapping(path)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return validate_config(model, raw, str(path), hidden_locs)


def validate_config(model, raw: dict, where: str, hidden_locs: tuple = ()):
    """model.model_validate(raw), with a validation error turned into one line naming the field.
    `hidden_locs` are location parts that only tag union branches and mean nothing to a user."""
    from pydantic import ValidationError

    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(x) for x in first["loc"] if x not in hidden_locs)
        msg = first["msg"].removeprefix("Value error, ")
        if first["type"] in _TYPE_ERRORS:  # say what was given: `iterations: yes` reads as a number otherwise
            msg += f", got {_yaml_repr(first['input'])}"
        # a model-level check names its field at the start of its message
        raise ConfigError(f"{where}: field '{field}': {msg}" if field else f"{where}: {msg}") from None


_TYPE_ERRORS = {"int_type", "float_type", "int_from_float", "int_parsing", "float_parsing", "bool_type",
                "string_type", "dict_type", "list_type"}


def _yaml_repr(value) -> str:
    """A value as the user wrote it in YAML (true, not True), shortened."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
    text = f"{text} (a string)" if isinstance(value, str) else text
    return text if len(text) <= 60 else text[:57] + "..."
