"""`picaco draft-demos` refuses bad input in one line, before any call is made or anything is written."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from picaco.cli import app

runner = CliRunner()


@pytest.fixture
def queries(tmp_path):
    path = tmp_path / "q.txt"
    path.write_text("Should I skip my cousin's wedding for a concert?\n", encoding="utf-8")
    return path


def draft(tmp_path, *args):
    return runner.invoke(app, ["draft-demos", "--cache-dir", str(tmp_path / "cache"), *args])


def test_out_under_a_file_is_refused_before_any_call(tmp_path, queries):
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    out = tmp_path / "afile" / "draft.yaml"
    result = draft(tmp_path, "--values", "Tradition", "--queries", str(queries), "--out", str(out))
    assert result.exit_code == 2 and result.exception is not None and isinstance(result.exception, SystemExit)
    assert result.stderr.strip() == f"error: --out {out}: {tmp_path / 'afile'} is a file, not a folder"
    assert not (tmp_path / "cache").exists()  # refused before the client (and its cache) was opened


def test_out_that_is_a_folder(tmp_path, queries):
    result = draft(tmp_path, "--values", "Tradition", "--queries", str(queries), "--out", str(tmp_path))
    assert result.exit_code == 2 and result.stderr.strip() == f"error: --out {tmp_path} is a folder, not a file"


@pytest.mark.parametrize(("values", "queries_name", "message"), [
    ("Nope", "q.txt", "unknown value 'Nope'"),
    ("Tradition", "absent.txt", "queries file {tmp}/absent.txt does not exist"),
    ("Tradition", ".", "queries file {tmp} is a folder, not a text file"),
    (" , ", "q.txt", "--values names no value"),
])
def test_bad_values_and_queries_leave_nothing(tmp_path, queries, values, queries_name, message):
    result = draft(tmp_path, "--values", values, "--queries", str(tmp_path / queries_name),
                   "--out", str(tmp_path / "draft.yaml"))
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1
    assert lines[0].startswith("error: ") and message.format(tmp=tmp_path) in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.txt"]


def test_write_failure_is_one_line(tmp_path, queries, monkeypatch):
    import picaco.values.draft as draft_module

    def full_disk(path, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(draft_module, "atomic_write_text", full_disk)
    out = tmp_path / "draft.yaml"
    result = draft(tmp_path, "--values", "Tradition", "--queries", str(queries), "--out", str(out))
    assert result.exit_code == 2 and result.stderr.strip() == f"error: cannot write {out}: No space left on device"
