"""Per-value candidate scores, `picaco pareto`, `selection: chebyshev` and `from_run` on the simulator
(one module: the runs here share a folder and are small)."""

from __future__ import annotations

import json

import pytest
import yaml
from tiny_run import small_run_config
from typer.testing import CliRunner

from picaco.base.errors import ConfigError
from picaco.cli import app
from picaco.config import parse_run_config
from picaco.estimate import estimate
from picaco.method.inputs import run_inputs
from picaco.method.run import optimize

runner = CliRunner()
PAIR = ["Tradition", "Hedonism"]
# Tradition and Hedonism conflict whatever an instruction says (docs/world.md)
STRICT = {"world": "values", "world_integration_resolves": False, "world_conflict_strength": 1.0}


def composition(root, name: str, values: list[str]) -> str:
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "kind": "schwartz", "beta": 0.5, "values": values,
                                    "demonstrations_from": "confucianism"}))
    return str(path)


def config(root, name: str, values: list[str], **fields):
    picaco = {"n_prompts": 4, "iterations": 2, "buckets": 2, "m2": 3, "noisy_samples": 3, "held_out": 4,
              **fields.pop("picaco", {})}
    raw = small_run_config(root, run_name=name, composition=composition(root, "_".join(v.lower() for v in values),
                                                                             values),
                           client={"providers": {"sim": {"kind": "sim", "options": STRICT}}}, picaco=picaco, **fields)
    return parse_run_config(raw)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("pareto")


@pytest.fixture(scope="module")
def earlier(root):
    cfg = config(root, "earlier", PAIR, picaco={"judge_per_value": True})
    return cfg, optimize(cfg)


def iteration(cfg, t: int) -> dict:
    return json.loads((cfg.run_dir / f"iter_{t:03d}.json").read_text())


def test_every_scored_candidate_keeps_its_per_value_scores(earlier):
    cfg, _ = earlier
    for t in (1, 2):
        cands = iteration(cfg, t)["candidates"]
        assert cands and all(set(c["value_scores"]) == set(PAIR) for c in cands if c["tc"] is not None)
        assert all(1.0 <= s <= 5.0 for c in cands for s in c["value_scores"].values())


def test_new_options_enter_the_fingerprint_only_when_set(earlier, root):
    cfg, _ = earlier
    stored = json.loads((cfg.run_dir / "config.json").read_text())
    assert stored["inputs"]["settings"]["picaco"]["judge_per_value"] is True
    assert "from_run" not in stored["inputs"]
    # a default run records neither option, so its fingerprint is the one it had before they existed
    settings = run_inputs(config(root, "plain", PAIR)).record["settings"]["picaco"]
    assert "selection" not in settings and "judge_per_value" not in settings
    chebyshev = run_inputs(config(root, "plain", PAIR, picaco={"selection": "chebyshev"})).record["settings"]["picaco"]
    assert chebyshev["selection"] == "chebyshev"


def test_pareto_command_writes_the_front_and_picks_by_weights(root):
    cfg = config(root, "front", PAIR, picaco={"selection": "chebyshev"})
    optimize(cfg)
    picks = {}
    for weights in ("1,0", "0,1"):
        out = root / f"pareto-{weights.replace(',', '')}"
        res = runner.invoke(app, ["pareto", "--run", "front", "--runs-dir", str(cfg.runs_dir), "--values",
                                  "Tradition,Hedonism", "--weights", weights, "--out", str(out)])
        assert res.exit_code == 0, res.output
        report = json.loads((out / "pareto.json").read_text())
        assert (out / "pareto.png").stat().st_size > 1000 and "| point | front |" in (out / "pareto.md").read_text()
        front = {k: report["points"][k]["held_out"] for k in report["front"]}
        # no front point is beaten on both values by an evaluated point
        for k, p in front.items():
            assert not any(q["held_out"]["Tradition"] >= p["Tradition"] and q["held_out"]["Hedonism"] >= p["Hedonism"]
                           and q["held_out"] != p for q in report["points"].values())
        value = "Tradition" if weights == "1,0" else "Hedonism"
        assert front[report["chosen"]][value] == max(p[value] for p in front.values())
        assert report["chosen_instruction"] in res.output
        picks[weights] = report["chosen"]
    bad = runner.invoke(app, ["pareto", "--run", "front", "--runs-dir", str(cfg.runs_dir), "--values", "Tradition,Power"])
    assert bad.exit_code == 2 and "Power" in bad.output


def test_from_run_starts_from_the_earlier_best_and_pays_only_the_new_value(earlier, root):
    old_cfg, old = earlier
    cfg = config(root, "added", PAIR + ["Benevolence"], picaco={"judge_per_value": True, "iterations": 1},
                 from_run="earlier")
    result = optimize(cfg)
    stored = json.loads((cfg.run_dir / "config.json").read_text())
    assert stored["inputs"]["from_run"]["name"] == "earlier"
    assert stored["inputs"]["from_run"]["fingerprint"] == json.loads((old_cfg.run_dir / "config.json").read_text())[
        "fingerprint"]
    first = iteration(cfg, 1)
    assert first["estep"]["instruction"] == old.best_instruction == result.seed_instruction
    # the E-step of t = 1 repeats the earlier run's (same instruction, buckets, samples): no target call is
    # paid, and the judge pays one call per response, for Benevolence only
    usage = json.loads((cfg.run_dir / "iter_001.estep.usage.json").read_text())
    assert usage.get("target", {}).get("calls", 0) == 0
    assert usage["judge"]["calls"] == first["estep"]["responses"]
    earlier_usage = json.loads((old_cfg.run_dir / "iter_001.estep.usage.json").read_text())
    assert earlier_usage["judge"]["calls"] == 2 * iteration(old_cfg, 1)["estep"]["responses"]
    assert set(result.value_scores) == {"Tradition", "Hedonism", "Benevolence"}


def test_from_run_guard(earlier, root):
    with pytest.raises(ConfigError, match="this run itself"):
        optimize(config(root, "earlier", PAIR, from_run="earlier"))
    with pytest.raises(ConfigError, match="no run 'absent'"):
        optimize(config(root, "x", PAIR, from_run="absent"))
    # a resume after the earlier run changed (extended to T = 3) is refused, naming it
    grown = config(root, "earlier", PAIR, picaco={"judge_per_value": True, "iterations": 3})
    optimize(grown)
    with pytest.raises(ConfigError, match="earlier run 'earlier' .*changed"):
        optimize(config(root, "added", PAIR + ["Benevolence"], picaco={"judge_per_value": True, "iterations": 1},
                        from_run="earlier"))


def test_estimate_prices_a_from_run_config_as_a_fresh_run(earlier, root):
    # the estimate's simulated run has its own runs folder, where the earlier run does not exist
    cfg = config(root, "estimated", PAIR + ["Benevolence"], picaco={"iterations": 1}, from_run="earlier")
    out = estimate(cfg)
    assert out["by_role"]["judge"]["calls"] > 0 and out["by_role"]["target"]["calls"] > 0
