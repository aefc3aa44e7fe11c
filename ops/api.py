"""A small client of the Prefect REST API (httpx), for the deployment check and the benchmark.

Plain HTTP on purpose: Prefect's own client follows the process-wide settings context, which a test
session's harness may already point at another server.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import httpx

FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class ApiError(RuntimeError):
    pass


class PrefectApi:
    def __init__(self, api_url: str, timeout: float = 30.0) -> None:
        self.url = api_url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> PrefectApi:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, path: str, **kw):
        # A SQLite-backed server answers 503 when busy: retry a few times, as Prefect's client does.
        # On 2 cores with flow-run processes starting (each imports torch), the server has also stalled
        # past the read timeout once (CI, GET /flow_runs/{id}): reads are retried after a timeout too.
        # Writes are not (a create_flow_run that timed out may have been applied).
        idempotent = method == "GET" or path.endswith("/filter")
        for attempt in range(6):
            try:
                r = self.http.request(method, path, **kw)
            except (httpx.TimeoutException, httpx.NetworkError) as exc:
                if not idempotent or attempt == 5:
                    raise ApiError(f"{method} {path}: {type(exc).__name__} after {attempt + 1} tries "
                                   f"({self.http.timeout.read} s read timeout)") from exc
                time.sleep(0.5 * 2 ** attempt)
                continue
            if r.status_code != 503:
                break
            time.sleep(0.5 * 2 ** attempt)
        if r.status_code >= 400:
            raise ApiError(f"{method} {path} answered {r.status_code}: {r.text[:300]}")
        return r.json() if r.content else None

    # -- deployments --------------------------------------------------------------------------------
    def deployments(self) -> list[dict]:
        return self._call("POST", "/deployments/filter", json={})

    def deployment(self, flow_name: str, name: str) -> dict:
        return self._call("GET", f"/deployments/name/{flow_name}/{name}")

    def schedules(self, deployment_id: str) -> list[dict]:
        return self._call("GET", f"/deployments/{deployment_id}/schedules")

    def set_schedule_active(self, deployment_id: str, schedule_id: str, active: bool) -> None:
        self._call("PATCH", f"/deployments/{deployment_id}/schedules/{schedule_id}", json={"active": active})

    def delete_scheduled_runs(self, deployment_id: str) -> int:
        runs = self._call("POST", "/flow_runs/filter", json={"flow_runs": {
            "deployment_id": {"any_": [deployment_id]}, "state": {"type": {"any_": ["SCHEDULED"]}}}})
        for run in runs:
            self._call("DELETE", f"/flow_runs/{run['id']}")
        return len(runs)

    def run_deployment(self, deployment_id: str, parameters: dict, *, delay_s: float | None = None,
                       name: str | None = None) -> dict:
        body: dict = {"parameters": parameters}
        if name:
            body["name"] = name
        if delay_s is not None:
            when = datetime.now(timezone.utc) + timedelta(seconds=delay_s)
            body["state"] = {"type": "SCHEDULED", "state_details": {"scheduled_time": when.isoformat()}}
        return self._call("POST", f"/deployments/{deployment_id}/create_flow_run", json=body)

    # -- runs -----------------------------------------------------------------------------------------
    def flow_run(self, run_id: str) -> dict:
        return self._call("GET", f"/flow_runs/{run_id}")

    def wait(self, run_id: str, timeout: float, states: set[str] = FINAL_STATES, poll: float = 1.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.flow_run(run_id)
            if run["state_type"] in states:
                return run
            if time.monotonic() > deadline:
                raise ApiError(f"flow run {run['name']} ({run_id}) still {run['state_type']} after {timeout:.0f} s")
            time.sleep(poll)

    def set_state(self, run_id: str, state_type: str, message: str) -> None:
        self._call("POST", f"/flow_runs/{run_id}/set_state",
                   json={"state": {"type": state_type, "message": message}, "force": True})

    def subflow_runs(self, run_id: str) -> list[dict]:
        return self._call("POST", "/flow_runs/filter",
                          json={"flow_runs": {"parent_flow_run_id": {"any_": [run_id]}}, "sort": "START_TIME_ASC"})

    def task_runs(self, flow_run_ids: list[str]) -> list[dict]:
        out, offset = [], 0
        while True:
            page = self._call("POST", "/task_runs/filter", json={
                "flow_runs": {"id": {"any_": flow_run_ids}}, "limit": 200, "offset": offset})
            out += page
            if len(page) < 200:
                return out
            offset += 200

    def artifacts(self, flow_run_ids: list[str]) -> list[dict]:
        return self._call("POST", "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": flow_run_ids}}})

    def flows(self) -> dict[str, str]:
        return {f["id"]: f["name"] for f in self._call("POST", "/flows/filter", json={})}

    def logs(self, flow_run_id: str, limit: int = 200) -> list[dict]:
        return self._call("POST", "/logs/filter", json={"logs": {"flow_run_id": {"any_": [flow_run_id]}},
                                                         "limit": limit, "sort": "TIMESTAMP_ASC"})
