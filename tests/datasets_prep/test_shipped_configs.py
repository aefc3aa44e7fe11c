"""Every config shipped in configs/ loads, and every run config runs: a reduced `picaco estimate` (3 prompts,
1 iteration, the simulator) of each, on prompts built once from ../shared/data into a temporary folder.
Its composition, prompt file, models, providers and prices are the shipped ones: only the
`artifacts/datasets` root of a prompt path is moved to the built folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from datasets_prep.cli import app as data_app
from datasets_prep.config import load_data_config
from picaco.base.config import PromptSource, RunConfig
from picaco.base.errors import ConfigError
from picaco.cli import QUICK_LIMITS
from picaco.config import load_run_config
from picaco.estimate import estimate
from picaco.eval.config import load_eval_config
from picaco.io import read_yaml_mapping

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO_ROOT / "configs").rglob("*.yaml"))
DATASETS_ROOT = Path("artifacts/datasets")
COMPOSITIONS = ["confucianism", "modern_liberalism", "hh_balance", "helpfulness", "harmlessness"]
TARGETS = {"gpt35": "openai/gpt-3.5-turbo", "gemini15flash": "gemini/gemini-1.5-flash",
           "llama31-8b": "vllm/meta-llama/Llama-3.1-8B-Instruct"}


def config_kind(path: Path) -> str:
    raw = read_yaml_mapping(path)
    if "run_name" in raw:
        return "run"
    if "methods" in raw or "name" in raw:
        return "eval"
    if "compositions" in raw or "sources" in raw:
        return "data"
    raise AssertionError(f"{path}: neither a run, an evaluation nor a data config")


RUN_CONFIGS = [p for p in CONFIGS if config_kind(p) == "run"]


@pytest.fixture(scope="session")
def built_datasets(tmp_path_factory, data_config_file, hf_cache) -> Path:
    out = tmp_path_factory.mktemp("shipped_datasets")
    args = ["build", *[x for c in COMPOSITIONS for x in ("-c", c)], "--config", str(data_config_file),
            "--out", str(out), "--n-x", "5", "--n-test", "5", "--cache-dir", str(hf_cache)]
    result = CliRunner().invoke(data_app, args)
    assert result.exit_code == 0, result.output
    return out


def with_built_prompts(config: RunConfig, built: Path) -> RunConfig:
    path = config.prompts.path
    if path is None:
        return config
    assert not path.is_absolute() and path.is_relative_to(DATASETS_ROOT), f"{config.run_name}: prompts {path}"
    return config.model_copy(update={"prompts": PromptSource(path=built / path.relative_to(DATASETS_ROOT),
                                                             offset=config.prompts.offset)})


def test_the_paper_grid_is_shipped():
    names = {p.relative_to(REPO_ROOT / "configs").as_posix() for p in CONFIGS}
    for key, target in TARGETS.items():
        assert f"eval_{'openai' if key == 'gpt35' else key}_paper.yaml" in names
        for comp in COMPOSITIONS:
            cfg = load_run_config(REPO_ROOT / "configs" / "runs" / f"{comp}-{key}.yaml")
            p = cfg.picaco
            assert (cfg.composition, cfg.models.target, cfg.models.judge, cfg.models.embedding) == (
                comp, target, "openai/gpt-4o-mini", "st/jinaai/jina-embeddings-v3")
            assert (p.n_prompts, p.m1, p.m2, p.iterations, p.n_pe_samples) == (50, 10, 15, 10, 10)
            assert cfg.prompts.path == DATASETS_ROOT / comp / "X.parquet"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(REPO_ROOT / "configs").as_posix())
def test_every_shipped_config_loads(path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # configs name their files relative to the repository's root
    kind = config_kind(path)
    if kind == "data":
        load_data_config(path)
        return
    if kind == "run":
        load_run_config(path)
        return
    picaco = load_eval_config(path).model_dump().get("picaco") or {}
    # one source for every composition, or one per composition
    sources = {None: picaco} if "run_config" in picaco else picaco
    checked = 0
    for comp, source in sources.items():
        if isinstance(source, dict) and source.get("run_config"):
            run = load_run_config(REPO_ROOT / source["run_config"])
            expected = source.get("composition") or comp
            assert expected is None or run.composition == expected, f"{path.name}: {comp} runs {run.composition}"
            checked += 1
    if path.name.endswith("_paper.yaml"):
        assert checked == len(COMPOSITIONS)


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: p.relative_to(REPO_ROOT / "configs").as_posix())
def test_every_run_config_runs(path, built_datasets, tmp_path):
    cfg = with_built_prompts(load_run_config(path), built_datasets)
    out = estimate(cfg, workdir=tmp_path, **QUICK_LIMITS)
    # a model on a local engine has no price (no money is spent); every hosted model must have one
    local = {m for m in out["unpriced_models"] if cfg.client.providers.get(m.partition("/")[0]) is not None
             and cfg.client.providers[m.partition("/")[0]].kind == "llamacpp"}
    assert set(out["unpriced_models"]) == local
    assert out["by_role"]["target"]["model"] == cfg.models.target and out["by_role"]["target"]["calls"] > 0
    full = cfg.picaco
    reduced = {"n_prompts": [min(3, full.n_prompts), full.n_prompts],
               "iterations": [min(1, full.iterations), full.iterations]}
    small = full.n_prompts <= 3 and full.iterations <= 1  # configs/local.yaml: already below the limits
    assert out["reduced"] == (None if small else reduced)


def test_a_wrong_config_fails_the_estimate(built_datasets, tmp_path):
    good = with_built_prompts(load_run_config(REPO_ROOT / "configs/runs/hh_balance-gemini15flash.yaml"), built_datasets)
    wrong = [
        good.model_copy(update={"models": good.models.model_copy(update={"target": "gemnii/gemini-1.5-flash"})}),
        good.model_copy(update={"client": good.client.model_copy(update={"providers": {
            **good.client.providers, "vllm": good.client.providers["openai"].model_copy(update={"kind": "vllmx"})}}),
            "models": good.models.model_copy(update={"target": "vllm/x"})}),
        good.model_copy(update={"composition": "confucianizm"}),
        good.model_copy(update={"prompts": PromptSource(path=built_datasets / "hh_balance" / "x.parquet")}),
    ]
    for i, cfg in enumerate(wrong):
        with pytest.raises(ConfigError):
            estimate(cfg, workdir=tmp_path / str(i), **QUICK_LIMITS)
    unpriced = good.model_copy(update={"models": good.models.model_copy(update={"target": "gemini/gemini-1.5-flsh"})})
    assert set(estimate(unpriced, workdir=tmp_path / "u", **QUICK_LIMITS)["unpriced_models"]) == {"gemini/gemini-1.5-flsh"}
