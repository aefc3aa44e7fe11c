"""prefect.yaml and the configs it names: every deployment points at a real flow with parameters that flow
takes, every config file it names loads, and the pipeline's derived configs are right."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

EXPECTED = {
    "collect-datasets": "collect-datasets",
    "noisy-pool": "picaco-noisy-pool",
    "optimize": "picaco-optimize",
    "evaluate": "picaco-evaluate",
    "pipeline-demo": "picaco-pipeline",
}


@pytest.fixture(scope="module")
def prefect_yaml() -> dict:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))


def _flow(entrypoint: str):
    path, name = entrypoint.split(":")
    assert (ROOT / path).is_file(), f"entrypoint file {path} missing"
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


def test_every_deployment_points_at_its_flow_with_accepted_parameters(prefect_yaml):
    deps = {d["name"]: d for d in prefect_yaml["deployments"]}
    assert set(deps) == set(EXPECTED)
    for name, dep in deps.items():
        flow = _flow(dep["entrypoint"])
        assert flow.name == EXPECTED[name]
        accepted = set(inspect.signature(flow.fn).parameters)
        assert set(dep.get("parameters", {})) <= accepted, (name, set(dep["parameters"]) - accepted)
        assert dep["work_pool"]["name"] == "picaco-process"


def test_pipeline_has_a_valid_cron_schedule(prefect_yaml):
    from prefect.client.schemas.schedules import CronSchedule

    dep = next(d for d in prefect_yaml["deployments"] if d["name"] == "pipeline-demo")
    (sched,) = dep["schedules"]
    CronSchedule(cron=sched["cron"], timezone=sched["timezone"])  # raises on a bad cron string
    others = [d for d in prefect_yaml["deployments"] if d["name"] != "pipeline-demo"]
    assert not any(d.get("schedules") for d in others)


def test_every_config_named_by_a_deployment_loads(prefect_yaml, shared_data):
    from datasets_prep.config import load_data_config, resolve_compositions
    from picaco.config import load_run_config
    from picaco.eval.config import load_eval_config

    loaders = {"configs/pipeline_demo.yaml": load_run_config, "configs/ops_eval.yaml": load_eval_config}
    seen = set()
    for dep in prefect_yaml["deployments"]:
        for key, value in dep.get("parameters", {}).items():
            if isinstance(value, str) and value.startswith("configs/"):
                seen.add(value)
                if value in loaders:
                    loaders[value](ROOT / value)
    assert seen == {"configs/pipeline_demo.yaml", "configs/ops_data.yaml", "configs/ops_eval.yaml"}
    data_cfg, base = load_data_config(ROOT / "configs" / "ops_data.yaml")
    for comp in resolve_compositions(["hh_balance"], data_cfg, base_dir=base):
        for src in comp.sources:
            assert src.path is not None and Path(src.path).is_file(), f"{src.name}: {src.path}"
    run = load_run_config(ROOT / "configs" / "ops_check.yaml")
    assert run.picaco.iterations >= 2, "the check crashes the run after iteration 1 and needs one after it"


def test_pipeline_takes_x_from_the_collected_composition():
    from flows.pipeline import collected_config
    from picaco.config import load_run_config

    cfg = load_run_config(ROOT / "configs" / "pipeline_demo.yaml")
    out = collected_config(cfg, {"hh_balance": {"x": 8, "test": 16}}, "artifacts/datasets")
    # the same prompts path as the config names, so the standalone deployments continue the pipeline's run
    assert out.prompts == cfg.prompts and out.prompts.path == Path("artifacts/datasets/hh_balance/X.parquet")
    moved = collected_config(cfg, {"hh_balance": {}}, "/tmp/elsewhere")
    assert moved.prompts.path == Path("/tmp/elsewhere/hh_balance/X.parquet")
    with pytest.raises(ValueError, match="composition is 'hh_balance'"):
        collected_config(cfg, {"helpfulness": {}}, "artifacts/datasets")


def test_pipeline_eval_config_evaluates_this_run_on_the_collected_test_set(tmp_path):
    from flows.pipeline import pipeline_eval_config
    from picaco.base.errors import ConfigError
    from picaco.config import load_run_config

    cfg = load_run_config(ROOT / "configs" / "pipeline_demo.yaml", run_name="other-run")
    raw = pipeline_eval_config(str(ROOT / "configs" / "ops_eval.yaml"), cfg, {"hh_balance": {"x": 8, "test": 5}},
                               str(tmp_path / "ds"))
    assert raw["name"] == "other-run" and raw["compositions"] == ["hh_balance"]
    assert raw["picaco"]["result"] == str(cfg.run_dir / "result.json")
    assert raw["prompts"] == {"demo_family": None, "path": str(tmp_path / "ds" / "hh_balance" / "test.parquet"),
                              "offset": 0, "count": 5}
    assert raw["out_dir"] == str(cfg.run_dir / "eval") and raw["client"]["cache_dir"] == str(cfg.client.cache_dir)
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        pipeline_eval_config(str(tmp_path / "nope.yaml"), cfg, None, "x")
    bad = tmp_path / "bad.yaml"
    bad.write_text("methods: [q, not_a_method]\n")
    with pytest.raises(ConfigError, match="methods"):
        pipeline_eval_config(str(bad), cfg, None, "x")
    bad.write_text("methods: [q\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        pipeline_eval_config(str(bad), cfg, None, "x")


def test_pipeline_rejects_bad_scale_out_parameters():
    from flows.pipeline import pipeline_flow

    with pytest.raises(ValueError, match="e_step_shards must be >= 1"):
        pipeline_flow.fn(config_path="x.yaml", e_step_shards=0)
