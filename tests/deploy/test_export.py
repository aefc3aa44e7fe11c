"""`picaco export`: the three files, their provenance, and one-line refusals."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from picaco import __version__
from picaco.cli import app
from picaco.deploy.export import export_run

runner = CliRunner()


def test_export_writes_prompt_record_and_card(finished_run, tmp_path):
    runs_dir, config, result = finished_run
    out = runner.invoke(app, ["export", "--run", config.run_name, "--runs-dir", str(runs_dir), "--out",
                              str(tmp_path / "ship")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "ship" / "system_prompt.txt").read_text() == result.best_instruction + "\n"
    record = json.loads((tmp_path / "ship" / "instruction.json").read_text())
    stored = json.loads((runs_dir / config.run_name / "config.json").read_text())
    assert record["system_prompt"] == result.best_instruction
    assert record["composition"]["name"] == "modern_liberalism"
    assert record["composition"]["values"] == list(result.value_scores)
    assert record["models"]["target"] == config.models.target and record["models"]["embedding"] == "sim/embed"
    assert record["scores"]["value_scores"] == result.value_scores
    assert record["scores"]["conformity"] == result.conformity and record["tc_e"] == result.best_tc
    assert record["config_fingerprint"] == stored["fingerprint"] and len(record["config_sha256"]) == 64
    assert record["picaco_version"] == __version__ and record["result_date"][:2] == "20"
    card = (tmp_path / "ship" / "INSTRUCTION.md").read_text()
    assert result.best_instruction.splitlines()[0] in card and "## How to use it" in card
    for value in result.value_scores:
        assert f"| {value} |" in card
    assert not list((tmp_path / "ship").glob(".*.tmp"))  # atomic: no temporary file left


def test_export_contains_no_key(finished_run, tmp_path, monkeypatch):
    runs_dir, config, _ = finished_run
    monkeypatch.setenv("OPENAI_API_KEY", "sk-export-secret-123456789")
    export_run(runs_dir, config.run_name, tmp_path / "ship")
    for f in (tmp_path / "ship").iterdir():
        assert "sk-export-secret" not in f.read_text()


def test_unknown_run_is_one_line(finished_run, tmp_path):
    runs_dir, config, _ = finished_run
    out = runner.invoke(app, ["export", "--run", "nope", "--runs-dir", str(runs_dir), "--out", str(tmp_path / "o")])
    assert out.exit_code == 2
    assert out.output.startswith("error: no run 'nope'") and config.run_name in out.output
    assert out.output.count("\n") == 1 and not (tmp_path / "o").exists()


def test_unfinished_run_is_refused(finished_run, tmp_path):
    runs_dir, config, _ = finished_run
    copy = tmp_path / "runs"
    shutil.copytree(runs_dir, copy)
    (copy / config.run_name / "result.json").unlink()
    out = runner.invoke(app, ["export", "--run", config.run_name, "--runs-dir", str(copy), "--out", str(tmp_path / "o")])
    assert out.exit_code == 2 and "unfinished: no result.json" in out.output and out.output.count("\n") == 1
    # extended to more iterations and not run through them: result.json is that of the shorter run
    shutil.copytree(runs_dir, tmp_path / "runs2")
    cfg_path = tmp_path / "runs2" / config.run_name / "config.json"
    stored = json.loads(cfg_path.read_text())
    stored["config"]["picaco"]["iterations"] = 3
    cfg_path.write_text(json.dumps(stored))
    out = runner.invoke(app, ["export", "--run", config.run_name, "--runs-dir", str(tmp_path / "runs2"),
                              "--out", str(tmp_path / "o")])
    assert out.exit_code == 2 and "describes 1 iterations" in out.output and "with 3" in out.output
    assert not (tmp_path / "o").exists()


def test_damaged_result_and_bad_out_are_one_line(finished_run, tmp_path):
    runs_dir, config, _ = finished_run
    copy = tmp_path / "runs"
    shutil.copytree(runs_dir, copy)
    (copy / config.run_name / "result.json").write_text('{"run_name": ')
    out = runner.invoke(app, ["export", "--run", config.run_name, "--runs-dir", str(copy), "--out", str(tmp_path / "o")])
    assert out.exit_code == 2 and "result.json is damaged" in out.output and out.output.count("\n") == 1
    (tmp_path / "afile").write_text("x")
    out = runner.invoke(app, ["export", "--run", config.run_name, "--runs-dir", str(runs_dir),
                              "--out", str(tmp_path / "afile")])
    assert out.exit_code == 2 and "--out" in out.output and "is a file" in out.output
