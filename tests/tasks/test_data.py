"""tasks/data.py through `.fn` (no Prefect server): each task is its datasets_prep function, on a synthetic
source file."""

from __future__ import annotations

import polars as pl
import pytest

from datasets_prep.build import build_composition
from datasets_prep.config import CompositionConfig, SourceConfig
from datasets_prep.demos import demonstration_queries
from datasets_prep.synthetic import write_fixtures
from picaco.values import CompositionError
from tasks.data import build_composition_task, demonstration_queries_task, load_source_task, write_datasets_task


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic")
    path = write_fixtures(folder, {"adaem": 60})["adaem"]
    source = SourceConfig(loader="adaem", name="adaem", path=path)
    return load_source_task.fn(source, cache_dir=str(folder / "hf_cache"))


def test_load_source_task_reads_every_row_of_the_file(loaded):
    assert loaded.config.name == "adaem" and loaded.rows_loaded == 60 and loaded.frame.height == 60
    assert loaded.frame["prompt"].null_count() == 0


def test_demonstration_queries_task_gives_the_compositions_demonstration_queries():
    queries = demonstration_queries_task.fn("helpfulness")
    assert queries and queries == demonstration_queries("helpfulness")
    with pytest.raises(CompositionError, match="unknown composition"):
        demonstration_queries_task.fn("no-such-composition")


def test_build_composition_task_samples_x_and_test_without_the_excluded_queries(loaded):
    config = CompositionConfig(name="mine", sources=[loaded.config], n_x=5, n_test=20)
    excluded = loaded.frame["prompt"].head(3).to_list()
    result = build_composition_task.fn(config, [loaded], excluded)
    assert result.x.height == 5 and result.test.height == 20
    chosen = set(result.x["prompt"].to_list()) | set(result.test["prompt"].to_list())
    assert len(chosen) == 25 and not chosen & set(excluded)
    same = build_composition(config, [loaded], excluded)
    assert result.x.equals(same.x) and result.test.equals(same.test)


def test_write_datasets_task_writes_each_composition_and_returns_its_folder(loaded, tmp_path):
    results = [build_composition_task.fn(CompositionConfig(name=name, sources=[loaded.config], n_x=4, n_test=10,
                                                           seed=seed), [loaded], [])
               for name, seed in (("one", 0), ("two", 1))]
    paths = write_datasets_task.fn(results, str(tmp_path / "out"))
    assert paths == [str(tmp_path / "out" / "one"), str(tmp_path / "out" / "two")]
    for path, result in zip(paths, results):
        assert pl.read_parquet(f"{path}/X.parquet")["prompt"].to_list() == result.x["prompt"].to_list()
        assert pl.read_parquet(f"{path}/test.parquet").height == 10
