from __future__ import annotations

import re

from picaco.base.config import RunConfig
from picaco.io import read_yaml_mapping, validate_config


def resolve_model(model, config_path: str | None, config: dict | None, overrides: dict, hidden_locs: tuple = ()):
    """A flow's config from a YAML file path or an inline dict (flow parameters), with overrides on top
    (an empty override, as a form in the UI sends, means unset)."""
    if (config_path is None) == (config is None):
        raise ValueError("pass exactly one of config_path or config")
    if config_path is not None:
        raw, where = read_yaml_mapping(config_path), str(config_path)
    else:
        raw, where = dict(config or {}), "config"
    raw.update({k: v for k, v in overrides.items() if v})
    return validate_config(model, raw, where, hidden_locs)


def resolve_config(config_path: str | None, config: dict | None, run_name: str | None) -> RunConfig:
    return resolve_model(RunConfig, config_path, config, {"run_name": run_name})


def artifact_key(*parts) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(str(p) for p in parts).lower()).strip("-")[:100]
