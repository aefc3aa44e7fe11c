"""The evaluation over the wire: the real openai client against the HTTP simulator (echo world, whose
judge answers in prose, so every score comes back missing and the report must say so)."""

from __future__ import annotations

import pytest
from eval_helpers import eval_raw

from picaco.eval import evaluate
from picaco.eval.config import parse_eval_config
from picaco.sim.server import SimServerConfig, start_server_thread


@pytest.fixture(scope="module")
def server():
    s = start_server_thread(SimServerConfig(world="echo"))
    yield s
    s.stop()


def test_openai_provider_through_the_sim_server_reports_unparseable_judges_as_missing(server, tmp_path):
    raw = eval_raw(tmp_path, "unused", methods=["q_if"], prompts={"count": 1})
    raw["models"] = {"target": "simhttp/tgt", "judge": "simhttp/judge-large"}
    raw["client"]["providers"] = {"simhttp": {"kind": "openai", "base_url": server.openai_base_url}}
    server.reset_log()
    out = evaluate(parse_eval_config(raw))
    log = server.request_log()
    target = [e for e in log if e["model"] == "tgt"]
    judge = [e for e in log if e["model"] == "judge-large"]
    assert [e["n"] for e in target] == [3, 3, 3], "one call per bucket, 3 repetitions each"
    assert len(judge) == 9 * 2 and all(e["n"] == 1 for e in judge), "9 responses, each judged twice (attempts)"
    assert all(e["status"] == 200 for e in log)
    (row,) = out["summary"]
    assert row["missing"] == 9 and row["judged"] == 0 and row["overall"] is None
    report = open(out["report"], encoding="utf-8").read()
    assert "| Q+IF | **-** |" not in report and "| Q+IF | - |" in report
    assert "| Q+IF | hh_balance | 9 | 0 | 0 | 9 | 18 | - |" in report
