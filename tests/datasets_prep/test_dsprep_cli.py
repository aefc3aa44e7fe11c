"""`picaco data build|show` through the typer app (demonstrations from picaco.values)."""

from __future__ import annotations

import json

import polars as pl
import yaml
from typer.testing import CliRunner

from datasets_prep.cli import app
from picaco.values import load_composition

runner = CliRunner(env={"COLUMNS": "200"})


def test_build_and_show(data_config_file, hf_cache, tmp_path):
    out = tmp_path / "datasets"
    args = ["build", "-c", "helpfulness", "-c", "confucianism", "--config", str(data_config_file), "--out", str(out),
            "--n-x", "5", "--n-test", "30", "--cache-dir", str(hf_cache)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "built" in result.output and "confucianism" in result.output
    for comp in ("helpfulness", "confucianism"):
        folder = out / comp
        assert sorted(p.name for p in folder.iterdir()) == ["X.parquet", "manifest.json", "prompts.parquet", "test.parquet"]
        x, test = pl.read_parquet(folder / "X.parquet"), pl.read_parquet(folder / "test.parquet")
        assert (x.height, test.height) == (5, 30)
        demos = {d.query for d in load_composition(comp).demonstrations}
        assert not demos & (set(x["prompt"]) | set(test["prompt"]))
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["demonstrations"]["queries"] == len(load_composition(comp).demonstrations)
    first = {p.name: p.read_bytes() for p in (out / "helpfulness").iterdir()}
    again = runner.invoke(app, args)
    assert again.exit_code == 0
    assert {p.name: p.read_bytes() for p in (out / "helpfulness").iterdir()} == first

    shown = runner.invoke(app, ["show", "--out", str(out)])
    assert shown.exit_code == 0, shown.output
    manifest = json.loads((out / "helpfulness" / "manifest.json").read_text(encoding="utf-8"))
    assert "helpfulness (seed 0, X 5, test 30)" in shown.output
    assert "hh_rlhf/helpful-base" in shown.output and "valuelex" in shown.output
    pool = manifest["counts"]["pool"]["just_eval_instruct"]
    line = next(l for l in shown.output.splitlines() if "just_eval_instruct" in l)
    assert str(pool) in line and "1000" in line


def test_cli_errors_are_one_line(tmp_path):
    result = runner.invoke(app, ["build", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: give either --composition <name> (repeatable) or --all"

    result = runner.invoke(app, ["build", "-c", "confucianism", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: nyt_dilemma: NYT-Dilemma is not downloadable")
    assert not (tmp_path / "o").exists()

    result = runner.invoke(app, ["show", "--out", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "no built datasets under" in result.stderr


def _small_config(tmp_path):
    """One local source with a dozen prompts: a composition that builds in well under a second."""
    data = tmp_path / "a.jsonl"
    data.write_text("".join(json.dumps({"question": f"Is question {i} about item {chr(97 + i)} a fair one?"}) + "\n"
                            for i in range(12)), encoding="utf-8")
    config = tmp_path / "ok.yaml"
    config.write_text(yaml.safe_dump({"compositions": {"confucianism": {
        "n_x": 2, "n_test": 3, "sources": [{"loader": "adaem", "path": str(data)}]}}}), encoding="utf-8")
    return config


def test_build_out_under_a_file_is_one_line_before_loading(tmp_path, hf_cache):
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    args = ["build", "-c", "confucianism", "--config", str(_small_config(tmp_path)), "--cache-dir", str(hf_cache)]
    for out, message in ((tmp_path / "afile" / "sub", f"error: --out {tmp_path / 'afile' / 'sub'}: {tmp_path / 'afile'} "
                          "is a file, not a folder"), (tmp_path / "afile", f"error: --out {tmp_path / 'afile'} is a file, "
                                                      "not a folder")):
        result = runner.invoke(app, [*args, "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert result.stderr.strip() == message
        assert "loaded" not in result.stdout  # refused before any source was read
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "afile", "ok.yaml"]


def test_write_failure_is_one_line(tmp_path, monkeypatch):
    import datasets_prep.build as build

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(build, "_swap_in", full_disk)
    result = runner.invoke(app, ["build", "-c", "confucianism", "--config", str(_small_config(tmp_path)),
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: cannot write {tmp_path / 'out' / 'confucianism'}: No space left on device"


def test_show_refuses_a_file_and_a_manifest_of_another_shape(tmp_path):
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    result = runner.invoke(app, ["show", "--out", str(tmp_path / "afile")])
    assert result.exit_code == 2 and result.stderr.strip().startswith(f"error: --out {tmp_path / 'afile'} is a file")
    for text in ("[]", '{"counts": {"prompts": {}}}', "{bad"):
        (tmp_path / "out" / "x").mkdir(parents=True, exist_ok=True)
        (tmp_path / "out" / "x" / "manifest.json").write_text(text, encoding="utf-8")
        result = runner.invoke(app, ["show", "--out", str(tmp_path / "out")])
        assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.output
        assert result.stderr.startswith(f"error: {tmp_path / 'out' / 'x' / 'manifest.json'} is not a datasets manifest")
