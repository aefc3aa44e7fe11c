"""The deployment check: prefect.yaml deployed to a private local server and run through a worker.

    .venv/bin/python ops/deployment_check.py [--work DIR] [--keep] [--no-screenshots] [--db sqlite|postgres]

Steps (each checked; the first failure stops the check with its reason):
 1. a Prefect server on a free loopback port with its own PREFECT_HOME in DIR, its database on Postgres
    (a throwaway local one, or --db-url; --db sqlite: a SQLite file in DIR);
    the process work pool; `prefect deploy --all`: every deployment of prefect.yaml is there, the
    pipeline with its cron schedule (paused for the check, so it cannot start a run mid-check);
 2. a worker; the pipeline deployment runs configs/ops_check.yaml (its run and cache folders moved into
    DIR) on the simulator and is crashed mid-optimization: the worker and its flow-run process are
    SIGKILLed once iteration 1 is on disk;
 3. a new worker; the same deployment is run again: it continues after the last complete step (the
    finished steps' files are not rewritten) and makes no provider call for a request the crashed run
    completed; final state COMPLETED;
 4. a scheduled rerun (same config, created in the Scheduled state) completes with 0 provider calls;
    then a run with a missing config file fails, and its state message says which file; the killed
    run of step 2 is marked Crashed by the zombie-run automation (no heartbeat), not left Running;
 5. through the API: the tasks (collect, noisy pool, E-step and M-step per iteration, evaluation), the
    markdown and table artifact per iteration, the progress artifact at 100 %, the result;
 6. on Postgres: the database stopped under the running server (its /api/ready says so, and make serve's
    one-line report names it with the password hidden), started again: the server answers from it
    again without a restart;
 7. headless Chromium screenshots of the run page and an artifact page, checked not blank;
 8. worker and server stopped; every PID they had is gone.

Prints a JSON summary as its last line; exit status 0 when every check passed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ops import calllog  # noqa: E402
from ops.api import PrefectApi  # noqa: E402
from ops.prefect_db import database_ready  # noqa: E402
from ops.prefect_local import REPO_ROOT, ZOMBIE_WITHIN_S, LocalPrefect, report_database, still_running  # noqa: E402
from picaco.llm.cache import ResponseCache  # noqa: E402
from picaco.llm.pg_local import LocalPostgres  # noqa: E402

PIPELINE = ("picaco-pipeline", "pipeline-demo")
EXPECTED_DEPLOYMENTS = {
    ("collect-datasets", "collect-datasets"),
    ("picaco-noisy-pool", "noisy-pool"),
    ("picaco-optimize", "optimize"),
    ("picaco-evaluate", "evaluate"),
    PIPELINE,
}
RUN_TIMEOUT = 300.0


class CheckFailed(AssertionError):
    pass


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


def _stored_keys(cache_dir: Path, lines: list[dict]) -> set[str]:
    """The keys of the logged calls whose answers reached the cache before the crash."""
    cache = ResponseCache(cache_dir)
    try:
        return {line["key"] for line in lines if line.get("kind") == "call" and cache.get_sample(line["key"])}
    finally:
        cache.close()


def write_run_config(work: Path, source: Path = REPO_ROOT / "configs" / "ops_check.yaml") -> tuple[Path, dict]:
    raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    raw["runs_dir"] = str(work / "runs")
    raw.setdefault("client", {})["cache_dir"] = str(work / "cache")
    path = work / "ops_check.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path, raw


def pipeline_parameters(work: Path, config_path: Path) -> dict:
    return {
        "config_path": str(config_path),
        "data_config_path": str(REPO_ROOT / "configs" / "ops_data.yaml"),
        "datasets_out": str(work / "datasets"),
        "datasets_cache_dir": str(work / "hf-datasets"),
        "n_test": 8,
        "eval_config_path": str(REPO_ROOT / "configs" / "ops_eval.yaml"),
    }


def _wait_for(path: Path, run_id: str, api: PrefectApi, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        run = api.flow_run(run_id)
        expect(run["state_type"] not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"),
               f"the pipeline run ended ({run['state_type']}: {run['state']['message']}) before {path.name} appeared")
        expect(time.monotonic() < deadline, f"{path} did not appear within {timeout:.0f} s")
        time.sleep(0.1)


def _mtimes(run_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(run_dir.glob("*.json"))}


def check_artifacts(api: PrefectApi, run_id: str, run_name: str, iterations: int) -> dict:
    subflows = api.subflow_runs(run_id)
    flow_names = api.flows()
    sub_names = [flow_names.get(r["flow_id"], "?") for r in subflows]
    expect(not sub_names, f"the pipeline runs every stage inline, but it has subflows {sub_names}")
    ids = [run_id] + [r["id"] for r in subflows]
    tasks = api.task_runs(ids)
    task_names = sorted(t["name"] for t in tasks)
    kinds = {"e-step": lambda n: n.startswith("e-step"),
             "m-step": lambda n: n.startswith("m-step") and not n.endswith("-draft"),
             "m-step draft": lambda n: n.startswith("m-step") and n.endswith("-draft")}  # beside each E-step
    for step, is_kind in kinds.items():
        expect(sum(1 for n in task_names if is_kind(n)) == iterations,
               f"expected {iterations} {step} task runs, got {task_names}")
    for step in ("load-", "build-", "write-datasets", "noisy-pool", "final-report", "eval-main/", "eval-report"):
        expect(any(n.startswith(step) for n in task_names), f"no {step}* task run: {task_names}")
    not_done = [t["name"] for t in tasks if t["state_type"] != "COMPLETED"]
    expect(not not_done, f"task runs not completed: {not_done}")
    arts = api.artifacts(ids)
    by_key = {}
    for a in arts:
        if a.get("key"):
            by_key.setdefault(a["key"], []).append(a)
    from flows._common import artifact_key

    found = {}
    for t in range(1, iterations + 1):
        md, tbl = artifact_key(run_name, "iteration", t), artifact_key(run_name, "iteration", t, "table")
        expect(any(a["type"] == "markdown" for a in by_key.get(md, [])), f"no markdown artifact {md!r}")
        expect(any(a["type"] == "table" for a in by_key.get(tbl, [])), f"no table artifact {tbl!r}")
        found[md], found[tbl] = by_key[md][0]["id"], by_key[tbl][0]["id"]
    progress_key = artifact_key(run_name, "progress")
    progress = [a for a in by_key.get(progress_key, []) if a["type"] == "progress"]
    expect(progress, f"no progress artifact {progress_key!r}")
    expect(all(float(a["data"]) == 100.0 for a in progress),
           f"progress artifact not at 100 %: {[a['data'] for a in progress]}")
    result_key = artifact_key(run_name, "result")
    expect(result_key in by_key, f"no result artifact {result_key!r}")
    table = by_key[artifact_key(run_name, "iteration", 1, "table")][0]["data"]
    rows = json.loads(table) if isinstance(table, str) else table
    expect(rows and "tc_e" in rows[0], f"iteration table has no TC_e column: {str(table)[:200]}")
    return {"subflows": sub_names, "task_runs": len(tasks), "artifacts": len(arts),
            "artifact_ids": found, "result_artifact_id": by_key[result_key][0]["id"],
            "progress": [a["data"] for a in progress]}


def run_check(work: Path, *, screenshots: bool = True, log=print, database: str = "postgres",
              db_url: str | None = None, db_control: tuple[Callable, Callable] | None = None) -> dict:
    """The check on a server whose database is Postgres (`db_url`, else a throwaway local one) or SQLite.
    `db_control`: (stop, start) of the Postgres behind `db_url`, for the outage step."""
    if database == "postgres" and not db_url:
        with LocalPostgres() as pg:
            return _run_check(work, screenshots, log, pg.url, (pg.stop, pg.start))
    return _run_check(work, screenshots, log, db_url if database == "postgres" else None, db_control)


def check_outage(lp: LocalPrefect, api: PrefectApi, run_id: str, db_control: tuple[Callable, Callable]) -> dict:
    """The server's Postgres stopped and started again: while it is gone the server says so (/api/ready 503,
    make serve's one line, password hidden); once it is back the server answers from it again, unrestarted."""
    stop_db, start_db = db_control
    stop_db()
    try:
        expect(database_ready(lp.api_url) is False, "the server did not notice that its database is gone")
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            still_up = report_database(lp, True)
        line = err.getvalue().strip()
        expect(not still_up and len(line.splitlines()) == 1 and "cannot reach its database" in line
               and ":***@" in line, f"make serve's line for a lost database: {line!r}")
    finally:
        start_db()
    t0 = time.monotonic()
    while not database_ready(lp.api_url):
        expect(time.monotonic() - t0 < 60, "the server did not reach its database within 60 s of its return")
        time.sleep(0.5)
    back = round(time.monotonic() - t0, 1)
    expect(api.flow_run(run_id)["state_type"] == "COMPLETED", "the server lost a finished run across the outage")
    return {"line": line, "ready_again_s": back}


def _run_check(work: Path, screenshots: bool, log, db_url: str | None,
               db_control: tuple[Callable, Callable] | None) -> dict:
    work = Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    config_path, raw = write_run_config(work)
    run_dir = Path(raw["runs_dir"]) / raw["run_name"]
    runs_dir = Path(raw["runs_dir"])
    T = raw["picaco"]["iterations"]
    params = pipeline_parameters(work, config_path)
    report: dict = {"work": str(work)}
    timings: dict[str, float] = {}
    t0 = time.monotonic()

    def mark(name: str) -> None:
        timings[name] = round(time.monotonic() - t0, 1)
        log(f"[{timings[name]:6.1f} s] {name}")

    lp = LocalPrefect(home=work / "prefect-home", db_url=db_url)
    report["database"] = lp.database
    api = PrefectApi(lp.api_url)
    try:
        lp.start_server()
        mark("server healthy")
        lp.deploy()
        mark("deployed")
        flow_names = api.flows()
        deployed = {(flow_names.get(d["flow_id"], "?"), d["name"]) for d in api.deployments()}
        expect(EXPECTED_DEPLOYMENTS <= deployed, f"missing deployments: {sorted(EXPECTED_DEPLOYMENTS - deployed)}")
        dep = api.deployment(*PIPELINE)
        scheds = api.schedules(dep["id"])
        crons = [s["schedule"].get("cron") for s in scheds]
        expect(any(crons), f"the pipeline deployment has no cron schedule: {scheds}")
        for s in scheds:
            api.set_schedule_active(dep["id"], s["id"], False)
        report["deployments"] = sorted(f"{f}/{n}" for f, n in deployed)
        report["cron"] = crons
        report["runs_the_scheduler_had_created"] = api.delete_scheduled_runs(dep["id"])

        # -- crash mid-optimization -------------------------------------------------------------------
        lp.start_worker()
        mark("worker online")
        first = api.run_deployment(dep["id"], params, name="ops-check-crash")
        _wait_for(run_dir / "iter_001.json", first["id"], api, RUN_TIMEOUT)
        killed = lp.kill_worker()
        mark("worker killed mid-optimization")
        left = still_running(lp.processes[pid] for pid in killed)
        expect(not left, f"killed worker processes still alive: {left}")
        expect(len(killed) >= 2, f"expected the worker and its flow-run process, killed only {killed}")
        done_at_crash = sorted(p.name for p in run_dir.glob("iter_[0-9][0-9][0-9].json"))
        expect(not (run_dir / f"iter_{T:03d}.json").exists() and not (run_dir / "result.json").exists(),
               f"the run finished before it could be crashed ({done_at_crash})")
        killed_at = time.monotonic()
        orphans = [r["id"] for r in [first] + api.subflow_runs(first["id"])
                   if api.flow_run(r["id"])["state_type"] not in ("COMPLETED", "FAILED")]
        crash_lines = calllog.lines_since(runs_dir, {})
        stored_at_crash = _stored_keys(Path(raw["client"]["cache_dir"]), crash_lines)
        files_at_crash = _mtimes(run_dir)
        report["crash"] = {"complete_iterations": done_at_crash, "calls": calllog.summary(crash_lines),
                           "killed_pids": killed}

        # -- run again: resume ------------------------------------------------------------------------
        lp.start_worker()
        snap = calllog.snapshot(runs_dir)
        second = api.run_deployment(dep["id"], params, name="ops-check-resume")
        done = api.wait(second["id"], RUN_TIMEOUT)
        expect(done["state_type"] == "COMPLETED", f"resumed run ended {done['state_type']}: {done['state']['message']}")
        mark("resumed run completed")
        resume_lines = calllog.lines_since(runs_dir, snap)
        repeated = calllog.repeated_calls(crash_lines, resume_lines, stored=stored_at_crash.__contains__)
        after = _mtimes(run_dir)
        rewritten = [n for n, m in files_at_crash.items() if n not in ("config.json",) and after.get(n) != m]
        expect(not rewritten, f"the resumed run rewrote finished steps: {rewritten}")
        expect(repeated == 0, f"the resumed run repeated {repeated} provider calls the crashed run had made")
        expect((run_dir / "result.json").exists(), "the resumed run wrote no result.json")
        report["resume"] = {"run": second["name"], "calls": calllog.summary(resume_lines), "repeated_calls": repeated,
                            "finished_steps_kept": sorted(n for n in files_at_crash if n != "config.json")}

        # -- scheduled rerun (0 calls) and a failing run (why it failed) -------------------------------
        snap = calllog.snapshot(runs_dir)
        third = api.run_deployment(dep["id"], params, delay_s=2.0, name="ops-check-scheduled-rerun")
        expect(api.flow_run(third["id"])["state_type"] == "SCHEDULED", "the rerun was not created as Scheduled")
        done3 = api.wait(third["id"], RUN_TIMEOUT)
        expect(done3["state_type"] == "COMPLETED", f"scheduled rerun ended {done3['state_type']}: {done3['state']['message']}")
        rerun_lines = calllog.lines_since(runs_dir, snap)
        expect(rerun_lines, "the scheduled rerun wrote no call-log lines (did it call the client at all?)")
        expect(calllog.paid_calls(rerun_lines) == 0,
               f"the scheduled rerun made {calllog.paid_calls(rerun_lines)} provider calls: {calllog.summary(rerun_lines)}")
        # One run at a time: two flow-run processes starting together on 2 cores (each imports Prefect and
        # picaco) starved the SQLite-backed server past a 30 s read timeout once in CI.
        bad_params = dict(params, config_path=str(work / "no-such-config.yaml"))
        bad = api.run_deployment(dep["id"], bad_params, name="ops-check-missing-config")
        bad_done = api.wait(bad["id"], RUN_TIMEOUT)
        message = bad_done["state"]["message"] or ""
        expect(bad_done["state_type"] == "FAILED", f"the run with a missing config ended {bad_done['state_type']}")
        expect("no-such-config.yaml" in message and "does not exist" in message,
               f"the failed run's state message does not say why: {message!r}")
        mark("scheduled rerun and failing run done")
        report["scheduled_rerun"] = {"calls": calllog.summary(rerun_lines)}
        report["failed_run"] = {"state": bad_done["state_type"], "message": message}

        # -- the killed run was marked Crashed by the zombie-run automation, not left Running ------------
        # Its last heartbeat was at most one heartbeat period (30 s) before the kill; the automation fires
        # ZOMBIE_WITHIN_S after it, give or take the server's trigger evaluation (measured 77 s after the
        # kill; 150 s of slack for a loaded machine). The resumed, rerun and failed runs took most of that.
        crashed = {}
        for run_id in orphans:
            left = max(10.0, killed_at + ZOMBIE_WITHIN_S + 150.0 - time.monotonic())
            run = api.wait(run_id, left)
            expect(run["state_type"] == "CRASHED" and "no heartbeat" in (run["state"]["message"] or ""),
                   f"the killed run {run['name']} ended {run['state_type']} ({run['state']['message']!r}), "
                   f"not Crashed by the zombie-run automation")
            crashed[run["name"]] = round(time.monotonic() - killed_at, 1)
        mark("killed run marked Crashed by the automation")
        report["zombie"] = {"crashed_s_after_kill": crashed}

        # -- monitoring through the API -----------------------------------------------------------------
        report["monitoring"] = check_artifacts(api, second["id"], raw["run_name"], T)
        mark("artifacts checked")
        if db_url and db_control:  # the screenshots below then read everything through the recovered server
            report["outage"] = check_outage(lp, api, second["id"], db_control)
            mark("database outage survived")

        if screenshots:
            from ops.screenshots import check_page

            shots = work / "screenshots"
            iter1 = report["monitoring"]["artifact_ids"][f"{raw['run_name']}-iteration-1"]
            report["screenshots"] = [
                check_page(f"{lp.ui_url}/runs/flow-run/{second['id']}", shots / "run.png",
                           expect=[second["name"]]),
                check_page(f"{lp.ui_url}/artifacts/artifact/{iter1}", shots / "artifact.png",
                           expect=["Iteration 1", "TC_e"]),
                check_page(f"{lp.ui_url}/runs/flow-run/{bad['id']}", shots / "failed-run.png",
                           expect=["does not exist"]),
            ]
            mark("screenshots checked")
    finally:
        api.close()
        lp.close()
        left = still_running(lp.processes.values())
        report["stopped_pids"] = sorted(lp.processes)
        report["pids_left"] = left
        mark("stopped")
    expect(not left, f"processes left running: {left}")
    report["timings_s"] = timings
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="deploy prefect.yaml to a private server and check the pipeline")
    ap.add_argument("--work", type=Path, help="folder for the server, runs and cache (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--no-screenshots", action="store_true")
    ap.add_argument("--db", choices=("postgres", "sqlite"), default="postgres",
                    help="the server's database (postgres: a throwaway local one, or --db-url)")
    ap.add_argument("--db-url", help="a Postgres database for the server (emptied by nobody: use a fresh one)")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="picaco-ops-check-"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        report = run_check(work, screenshots=not args.no_screenshots, log=lambda m: print(m, file=sys.stderr),
                           database=args.db, db_url=args.db_url)
        print(json.dumps({"ok": True, **report}))
        return 0
    except (CheckFailed, Exception) as exc:
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}", "work": str(work)}))
        return 1
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
