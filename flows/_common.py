from __future__ import annotations

import re

from picaco.config import RunConfig, load_run_config, parse_run_config


def resolve_config(config_path: str | None, config: dict | None, run_name: str | None) -> RunConfig:
    if (config_path is None) == (config is None):
        raise ValueError("pass exactly one of config_path or config")
    if config_path is not None:
        return load_run_config(config_path, run_name=run_name)
    raw = dict(config)
    if run_name:
        raw["run_name"] = run_name
    return parse_run_config(raw)


def artifact_key(*parts) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(str(p) for p in parts).lower()).strip("-")[:100]
