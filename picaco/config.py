"""Run configurations, loaded from YAML (the records themselves are in picaco.base.config)."""

from __future__ import annotations

from pathlib import Path

from picaco.base.config import RunConfig
from picaco.io import load_config, validate_config


def load_run_config(path: str | Path, **overrides) -> RunConfig:
    """Read a YAML run config; `overrides` are top-level fields (e.g. run_name) set on top."""
    return load_config(RunConfig, path, overrides)


def parse_run_config(raw: dict, where: str = "config") -> RunConfig:
    return validate_config(RunConfig, raw, where)
