"""The whole comparison on a tiny set: every method and analysis, the report, tables and figures."""

from __future__ import annotations

import struct

import polars as pl
import pytest
from eval_helpers import URIAL_FILE, eval_raw

from picaco.eval import evaluate
from picaco.eval.config import ALL_METHODS, METHOD_LABELS, parse_eval_config

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100
    import matplotlib.image

    assert matplotlib.image.imread(str(path)).shape[:2] == (height, width)


@pytest.fixture
def full_config(tape, tmp_path, shared_data):
    _, key = tape
    return parse_eval_config(eval_raw(
        tmp_path, key, methods=list(ALL_METHODS), prompts={"count": 2},
        picaco={"instruction": "Reflect every value of the composition in a balanced way."},
        urial={"prompt": str(shared_data / URIAL_FILE)}, opro={"iterations": 1, "per_iteration": 2},
        analyses={
            "value_sets": {"sizes": [2, 4], "methods": ["q_if", "picaco"],
                           "picaco": {2: {"instruction": "Be helpful and non-toxic."},
                                      4: {"instruction": "Be helpful, non-toxic, coherent and fair."}}},
            "jailbreak": {"methods": ["q_if", "picaco"]},
            "optimizer_choice": {"variants": {"bigger optimizer": {"instruction": "Another instruction."}}},
        }))


def test_report_tables_and_figures(tape, full_config):
    tp, _ = tape
    events = []
    out = evaluate(full_config, on_event=lambda kind, **kw: events.append((kind, kw.get("key"))))
    report = open(out["report"], encoding="utf-8").read()
    table1 = report.split("## Overall conformity (Table 1)")[1].split("## Balance")[0]
    for m in ALL_METHODS:
        assert f"| {METHOD_LABELS[m]} | " in table1
    assert "| Method | HH Balance-8 |" in table1 and table1.count("**") >= 2, "the best result is bold"
    assert "## Per-value scores: HH Balance (Tables 6-10)" in report
    assert "| Method | Coherence | Complexity | Verbosity | Helpfulness | Non-Toxicity | Fairness | Information Safety " \
           "| Responsible Uses |" in report
    for section in ("## Missing judge scores", "## Calls by method", "## Growing HH value sets (Fig. 3)",
                    "## Jailbreak wrapper (Fig. 4c)", "## Optimizer model choice (Fig. 4a)",
                    "PICACO (bigger optimizer)", "STAND-IN"):
        assert section in report
    # figures: valid PNGs, linked from the report
    assert set(out["figures"]) == {"hh_balance", "value_sets", "jailbreak", "optimizer_choice"}
    for name, path in out["figures"].items():
        from pathlib import Path

        assert_png(Path(path))
        assert f"]({Path(path).relative_to(full_config.eval_dir).as_posix()})" in report
    # tables
    summary = pl.read_parquet(full_config.eval_dir / "summary.parquet")
    main = summary.filter(pl.col("group") == "main")
    assert main.height == 11 and set(main["method"]) == set(ALL_METHODS)
    assert (main["responses"] == 2 * 9).all() and (main["missing"] == 0).all()
    assert (main["judge_calls"] >= 18).all(), "every response is judged"
    assert pl.read_csv(full_config.eval_dir / "summary.csv").height == summary.height
    vs = pl.read_parquet(full_config.eval_dir / "value_sets.parquet")
    for n in (2, 4):
        q = vs.filter((pl.col("n") == n) & (pl.col("method") == "q"))["mu_conf"][0]
        for row in vs.filter((pl.col("n") == n) & (pl.col("method") != "q")).iter_rows(named=True):
            assert row["delta_vs_q"] == pytest.approx(row["mu_conf"] - q)
    values = pl.read_parquet(full_config.eval_dir / "values.parquet")
    assert set(values.filter(pl.col("key") == "value_sets/n2/q")["value"]) == {"Helpfulness", "Non-Toxicity"}
    jb = pl.read_parquet(full_config.eval_dir / "jailbreak.parquet")
    assert set(jb["method"]) == {"q_if", "picaco"}
    wrapped = pl.read_parquet(full_config.eval_dir / "responses.parquet").filter(pl.col("key").str.starts_with("jailbreak"))
    assert wrapped["prompt"].str.starts_with("[STAND-IN ADVERSARIAL WRAPPER").all()
    assert any("STAND-IN ADVERSARIAL" in c.user for c in tp.target_calls()), "the wrapper reaches the target"

    # a second run reads every job back: no new calls
    calls_before = len(tp.calls)
    events.clear()
    evaluate(full_config, on_event=lambda kind, **kw: events.append(kind))
    assert len(tp.calls) == calls_before
    assert events.count("job_cached") == len(summary) and "job_start" not in events
