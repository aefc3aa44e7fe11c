"""The smallest run config that exercises the whole pipeline, shared by the CLI, deploy and reliability
tests (tests/ is on the import path through tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path


def small_run_config(root: Path, **fields) -> dict:
    """A run config that finishes in a second or two on the simulator with its own embeddings."""
    raw = {"run_name": "r", "composition": "modern_liberalism", "prompts": {"demo_family": "schwartz"},
           "runs_dir": str(root / "runs"), "models": {"embedding": "sim/embed"},
           "client": {"cache_dir": str(root / "cache"),
                      "providers": {"sim": {"kind": "sim", "options": {"world": "values"}}}},
           "picaco": {"n_prompts": 3, "m1": 2, "m2": 2, "iterations": 1, "noisy_samples": 2, "n_pe_samples": 2,
                      "buckets": 1, "samples_per_bucket": 2}}
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw
