"""The `picaco` command: each subcommand once, on the simulator, with errors as one line."""

from __future__ import annotations

import json

import yaml
from tiny_run import small_run_config
from typer.testing import CliRunner

from picaco.cli import app

runner = CliRunner()


def write_config(tmp_path, **extra) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(small_run_config(tmp_path, run_name="cli", **extra)))
    return str(path)


def test_optimize_then_cache_stats_and_clear(tmp_path):
    out = runner.invoke(app, ["optimize", "--config", write_config(tmp_path)])
    assert out.exit_code == 0, out.output
    assert "Optimized meta-instruction" in out.output and (tmp_path / "runs" / "cli" / "result.json").exists()
    stats = runner.invoke(app, ["cache", "stats", "--cache-dir", str(tmp_path / "cache"), "--json"])
    data = json.loads(stats.output)
    assert data["entries"] > 0 and data["by_role"]["target"]["misses"] > 0
    # a second run is served by the cache, and the stats say so
    runner.invoke(app, ["optimize", "--config", write_config(tmp_path)])
    data = json.loads(runner.invoke(app, ["cache", "stats", "--cache-dir", str(tmp_path / "cache"), "--json"]).output)
    assert data["by_role"]["judge"]["hits"] > 0
    cleared = runner.invoke(app, ["cache", "clear", "--cache-dir", str(tmp_path / "cache"), "--yes"])
    assert cleared.exit_code == 0 and "removed" in cleared.output
    data = json.loads(runner.invoke(app, ["cache", "stats", "--cache-dir", str(tmp_path / "cache"), "--json"]).output)
    assert data["entries"] == 0


def test_optimize_bad_config_is_one_line(tmp_path):
    out = runner.invoke(app, ["optimize", "--config", write_config(tmp_path, composition="nope")])
    assert out.exit_code == 2 and "nope" in out.output
    missing = runner.invoke(app, ["optimize", "--config", str(tmp_path / "absent.yaml")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_estimate_prices_the_configured_models(tmp_path, monkeypatch):
    # the estimate's simulated run keeps to its own cache: a shared one (here unreachable) is never used
    monkeypatch.setenv("PICACO_CACHE_URL", "postgresql://nobody@127.0.0.1:1/none")
    path = write_config(tmp_path, models={"target": "openai/gpt-3.5-turbo", "judge": "openai/gpt-4o-mini",
                                          "embedding": "st/all-MiniLM-L6-v2"})
    out = runner.invoke(app, ["estimate", "--config", path])
    assert out.exit_code == 0, out.output
    assert "openai/gpt-3.5-turbo" in out.output.replace("\n", "") or "target" in out.output
    assert "$" in out.output


def test_estimate_quick_says_it_is_a_reduced_run(tmp_path):
    picaco = {"n_prompts": 5, "m1": 2, "m2": 2, "iterations": 2, "noisy_samples": 2, "n_pe_samples": 2,
              "buckets": 1, "samples_per_bucket": 2}
    path = write_config(tmp_path, picaco=picaco)
    quick = runner.invoke(app, ["estimate", "--quick", "--config", path])
    assert quick.exit_code == 0, quick.output
    text = " ".join(quick.output.split())
    assert "REDUCED RUN" in text and "Reduced run: 3 of 5 prompts, 1 of 2 iterations" in text
    full = runner.invoke(app, ["estimate", "--config", path])
    assert full.exit_code == 0 and "REDUCED" not in full.output.upper()
    bad = runner.invoke(app, ["estimate", "--quick", "--config",
                              write_config(tmp_path, models={"target": "opnai/gpt-4o-mini", "embedding": "sim/embed"})])
    assert bad.exit_code == 2 and "unknown provider 'opnai'" in bad.output
    assert [line for line in bad.output.splitlines() if "opnai" in line][0].startswith("error: ")


def test_draft_demos(tmp_path):
    queries = tmp_path / "q.txt"
    queries.write_text("Should I skip my cousin's wedding for a concert?\n")
    out = runner.invoke(app, ["draft-demos", "--values", "Tradition,Hedonism", "--queries", str(queries),
                              "--out", str(tmp_path / "draft.yaml"), "--cache-dir", str(tmp_path / "c")])
    assert out.exit_code == 0, out.output
    draft = yaml.safe_load((tmp_path / "draft.yaml").read_text())
    assert draft["values"] == ["Tradition", "Hedonism"] and draft["demonstrations"][0]["answer"]
    assert draft["draft"].startswith("DRAFTED BY sim/target")
    bad = runner.invoke(app, ["draft-demos", "--values", "Nope", "--queries", str(queries),
                              "--out", str(tmp_path / "d2.yaml"), "--cache-dir", str(tmp_path / "c")])
    assert bad.exit_code == 2 and "Nope" in bad.output and not (tmp_path / "d2.yaml").exists()


def test_optimize_with_a_judge_that_never_scores_is_one_line(tmp_path):
    # every judge reply unusable: no candidate can be scored, which the user sees as one line saying why
    sim = {"kind": "sim", "options": {"world": "values", "world_malformed_rate": 1.0}}
    path = write_config(tmp_path, client={"cache_dir": str(tmp_path / "cache"), "providers": {"sim": sim}})
    out = runner.invoke(app, ["optimize", "--config", path])
    assert out.exit_code == 2, out.output
    errors = [line for line in out.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no candidate could be scored" in errors[0] and "models.judge" in errors[0]
    assert "Traceback" not in out.output
