"""`picaco data build|show` through the typer app (demonstrations from picaco.values)."""

from __future__ import annotations

import json

import polars as pl
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
