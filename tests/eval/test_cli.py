"""`picaco evaluate --config <file>` as the lead mounts it: a typer command with a progress bar."""

from __future__ import annotations

import typer
import yaml
from eval_helpers import eval_raw
from typer.testing import CliRunner

from picaco.eval.cli import evaluate_command


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("evaluate")(evaluate_command)
    app.command("noop")(lambda: None)  # a second command keeps typer from flattening the group
    return app


def test_cli_runs_and_prints_the_table(tape, tmp_path):
    _, key = tape
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(yaml.safe_dump(eval_raw(tmp_path, key, methods=["q", "q_if"])))
    result = CliRunner().invoke(_app(), ["evaluate", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "Q+IF" in result.output and "report.md" in result.output.replace("\n", "")
    assert (tmp_path / "out" / "t" / "report.md").is_file()


def test_cli_bad_config_is_one_line_exit_2(tmp_path):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("name: x\nmethods: [q, nope]\n")
    result = CliRunner().invoke(_app(), ["evaluate", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "error:" in result.output and "field 'methods.1'" in result.output
