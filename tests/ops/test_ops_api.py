"""The Prefect REST client of the ops checks: what it retries and what it does not."""

from __future__ import annotations

import httpx
import pytest

from ops import api as api_module
from ops.api import ApiError, PrefectApi


def _client(handler) -> PrefectApi:
    client = PrefectApi("http://127.0.0.1:1/api")
    client.http = httpx.Client(base_url=client.url, transport=httpx.MockTransport(handler), timeout=1.0)
    return client


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(api_module.time, "sleep", lambda s: None)


def test_a_read_that_times_out_is_retried():
    seen = []

    def handler(request):
        seen.append(request.url.path)
        if len(seen) < 3:
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(200, json={"id": "r1", "state_type": "COMPLETED"})

    with _client(handler) as client:
        assert client.flow_run("r1")["state_type"] == "COMPLETED"
    assert seen == ["/api/flow_runs/r1"] * 3


def test_a_write_that_times_out_is_not_repeated():
    seen = []

    def handler(request):
        seen.append(request.method)
        raise httpx.ReadTimeout("timed out", request=request)

    with _client(handler) as client, pytest.raises(ApiError, match="create_flow_run: ReadTimeout after 1 tries"):
        client.run_deployment("d1", {})
    assert seen == ["POST"]


def test_a_read_that_never_answers_fails_with_its_path():
    def handler(request):
        raise httpx.ReadTimeout("timed out", request=request)

    with _client(handler) as client, pytest.raises(ApiError, match=r"GET /flow_runs/r1: ReadTimeout after 6 tries"):
        client.flow_run("r1")


def test_503_is_retried_and_other_errors_are_reported():
    answers = iter([httpx.Response(503), httpx.Response(404, text="not found")])

    with _client(lambda request: next(answers)) as client, pytest.raises(ApiError, match="answered 404: not found"):
        client.flow_run("r1")
