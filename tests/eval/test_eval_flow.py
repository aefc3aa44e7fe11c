"""The `picaco-evaluate` Prefect flow: one task per method, the report and figures as artifacts."""

from __future__ import annotations

from pathlib import Path

from eval_helpers import eval_raw


def test_evaluate_flow_publishes_report_table_and_figures(prefect_harness, tape, tmp_path):
    from prefect.artifacts import Artifact

    from flows.evaluate import evaluate_flow

    tp, key = tape
    raw = eval_raw(tmp_path, key, name="flowtest", methods=["q", "q_if", "picaco"],
                   picaco={"instruction": "Weigh the values with care."})
    out = evaluate_flow(config=raw)
    assert [r["method"] for r in out["summary"]] == ["q", "q_if", "picaco"]
    assert Path(out["report"]).is_file() and Path(out["figures"]["hh_balance"]).read_bytes()[:4] == b"\x89PNG"
    report = Artifact.get("flowtest-report")
    assert report is not None and "| PICACO |" in report.data
    table = Artifact.get("flowtest-summary")
    assert table is not None and "Q+IF" in str(table.data)
    image = Artifact.get("flowtest-figure-hh-balance")
    assert image is not None and str(image.data).startswith("data:image/png;base64,")
    # three jobs ran, each as its own task: every target call was made exactly once
    assert len({(c.user, c.system, c.first_index) for c in tp.target_calls()}) == len(tp.target_calls())
