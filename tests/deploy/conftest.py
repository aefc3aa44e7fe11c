"""One small finished run on the simulator, shared by the export and serve tests (a copy per test that
changes it)."""

from __future__ import annotations

import pytest

from picaco.config import parse_run_config
from picaco.method.run import optimize


def tiny_config(tmp_path, name: str = "shipped", **extra):
    raw = {"run_name": name, "composition": "modern_liberalism", "prompts": {"demo_family": "schwartz"},
           "runs_dir": str(tmp_path / "runs"), "models": {"embedding": "sim/embed"},
           "client": {"cache_dir": str(tmp_path / "cache"),
                      "providers": {"sim": {"kind": "sim", "options": {"world": "values"}}}},
           "picaco": {"n_prompts": 3, "m1": 2, "m2": 2, "iterations": 1, "noisy_samples": 2, "n_pe_samples": 2,
                      "buckets": 1, "samples_per_bucket": 2}}
    raw.update(extra)
    return parse_run_config(raw)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """(runs_dir, config, result) of a finished one-iteration run."""
    tmp = tmp_path_factory.mktemp("deploy")
    config = tiny_config(tmp)
    return config.runs_dir, config, optimize(config)
