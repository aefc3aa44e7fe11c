"""Fixtures of the dataset-collection tests: shared real samples, synthetic fixture files, a datasets cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from datasets_prep import SourceConfig, load_source
from datasets_prep.synthetic import write_fixtures

SYNTHETIC_SIZES = {
    "beavertails": 60,
    "do_not_answer": 60,
    "honeset": 60,
    "hh_rlhf/helpful-base": 60,
    "nyt_dilemma": 60,
    "valuelex": 40,
    "adaem": 80,
}


@pytest.fixture(scope="session")
def hf_cache(tmp_path_factory) -> Path:
    """A private datasets cache so the tests never touch ~/.cache/huggingface."""
    return tmp_path_factory.mktemp("hf_datasets_cache")


@pytest.fixture(scope="session")
def shared_paths(shared_data: Path) -> dict[str, Path]:
    return {
        "hh_rlhf/harmless-base": shared_data / "hh_rlhf" / "harmless-base-test.jsonl.gz",
        "harmfulqa": shared_data / "harmfulqa" / "harmfulqa.json",
        "real_toxicity_prompts": shared_data / "realtoxicityprompts" / "toxic.jsonl",
        "just_eval_instruct": shared_data / "just_eval_instruct" / "example_data.json",
    }


@pytest.fixture(scope="session")
def loaded_shared(shared_paths, hf_cache):
    loaders = {
        "hh_rlhf/harmless-base": "hh_rlhf",
        "harmfulqa": "harmfulqa",
        "real_toxicity_prompts": "real_toxicity_prompts",
        "just_eval_instruct": "just_eval_instruct",
    }
    return {
        name: load_source(SourceConfig(loader=loaders[name], name=name, path=path), cache_dir=hf_cache)
        for name, path in shared_paths.items()
    }


@pytest.fixture(scope="session")
def synthetic_files(tmp_path_factory) -> dict[str, Path]:
    return write_fixtures(tmp_path_factory.mktemp("synthetic"), SYNTHETIC_SIZES)


@pytest.fixture(scope="session")
def data_config_file(tmp_path_factory, shared_paths, synthetic_files) -> Path:
    """A --config YAML pointing every source of every composition at a local file."""
    path = tmp_path_factory.mktemp("config") / "datasets.yaml"
    sources = {name: {"path": str(p)} for name, p in {**shared_paths, **synthetic_files}.items()}
    path.write_text(yaml.safe_dump({"sources": sources}), encoding="utf-8")
    return path
