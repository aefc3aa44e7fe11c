"""The deployment check end to end (ops/deployment_check.py): prefect.yaml deployed to a private local
server whose database is Postgres (a fresh database on the session's Postgres), the pipeline run through a worker on the simulator, crashed mid-optimization and resumed with no
repeated call, a scheduled rerun with 0 calls, a failing run that says why, the artifacts read back through
the API, screenshots of the UI checked not blank, and no process left behind. About 2-3 minutes."""

from __future__ import annotations

import os
import shutil

import pytest

from ops.deployment_check import run_check

pytestmark = pytest.mark.slow


def test_pipeline_deployment_through_a_worker(tmp_path, shared_data, pg_url, local_postgres):
    from ops.screenshots import ensure_chromium

    if shutil.which("chromium") is None and os.geteuid() != 0:
        pytest.skip("chromium is missing and cannot be installed without root")
    ensure_chromium()
    # Postgres only: the check takes 2-2.5 min and twice that would be too long for make test; SQLite-backed
    # servers run in every other Prefect test (the harness) and in make demo.
    report = run_check(tmp_path / "check", log=print, db_url=pg_url,
                       db_control=(local_postgres.stop, local_postgres.start))

    assert report["database"].startswith("postgresql+asyncpg://picaco:***@127.0.0.1:")

    assert report["pids_left"] == []
    assert len(report["stopped_pids"]) >= 4  # server, worker, its flow run, the second worker

    crash = report["crash"]
    assert "iter_001.json" in crash["complete_iterations"] and "iter_003.json" not in crash["complete_iterations"]
    assert crash["calls"]["calls"] > 0
    resume = report["resume"]
    assert resume["repeated_calls"] == 0
    assert "noisy.json" in resume["finished_steps_kept"] and "iter_001.json" in resume["finished_steps_kept"]
    assert resume["calls"]["calls"] > 0  # it did the rest of the work
    rerun = report["scheduled_rerun"]["calls"]
    assert rerun["calls"] == 0 and rerun["requests"] > 0 and set(rerun["by_status"]) == {"hit"}
    assert report["failed_run"]["state"] == "FAILED" and "does not exist" in report["failed_run"]["message"]

    outage = report["outage"]  # Postgres stopped and started under the running server
    assert "cannot reach its database" in outage["line"] and local_postgres.password not in outage["line"]
    mon = report["monitoring"]
    assert mon["subflows"] == []  # every stage inline: a flow run costs ~1 s of Prefect's heartbeat join
    assert mon["task_runs"] >= 2 * 3 + 6  # E- and M-steps, and the collect, noisy-pool, eval and report tasks
    assert len(mon["artifact_ids"]) == 2 * 3  # a markdown and a table artifact per iteration
    shots = report["screenshots"]
    assert len(shots) == 3
    for shot in shots:
        assert os.path.getsize(shot["png"]) > 10_000
        assert shot["dominant_share"] < 0.97 and shot["ink_share"] > 0.01
