"""One small finished run on the simulator, shared by the export and serve tests (a copy per test that
changes it)."""

from __future__ import annotations

import pytest
from tiny_run import small_run_config

from picaco.config import parse_run_config
from picaco.method.run import optimize


def tiny_config(tmp_path, name: str = "shipped", **extra):
    return parse_run_config(small_run_config(tmp_path, run_name=name, **extra))


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """(runs_dir, config, result) of a finished one-iteration run."""
    tmp = tmp_path_factory.mktemp("deploy")
    config = tiny_config(tmp)
    return config.runs_dir, config, optimize(config)
