"""Tasks of the dataset collection flow: thin wrappers over datasets_prep's pure functions, one task
per source load and one per composition build (never per row). Prefect's result caching is off: the
inputs are local files or hub splits that `datasets` caches itself, and results stay in memory."""

from __future__ import annotations

from collections.abc import Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE

from datasets_prep.build import BuildResult, build_composition
from datasets_prep.config import CompositionConfig, SourceConfig
from datasets_prep.demos import demonstration_queries
from datasets_prep.loading import LoadedSource, load_source
from datasets_prep.pipeline import write_all


@task(name="load-source", cache_policy=NO_CACHE, task_run_name="load-{source.name}")
def load_source_task(source: SourceConfig, cache_dir: str | None = None) -> LoadedSource:
    return load_source(source, cache_dir=cache_dir)


@task(name="demonstration-queries", cache_policy=NO_CACHE, task_run_name="demos-{composition}")
def demonstration_queries_task(composition: str) -> list[str]:
    return demonstration_queries(composition)


@task(name="build-composition", cache_policy=NO_CACHE, task_run_name="build-{config.name}")
def build_composition_task(config: CompositionConfig, sources: Sequence[LoadedSource], exclude_queries: Sequence[str]) -> BuildResult:
    return build_composition(config, sources, exclude_queries)


@task(name="write-datasets", cache_policy=NO_CACHE)
def write_datasets_task(results: Sequence[BuildResult], out: str) -> list[str]:
    """Write every composition at the end, so a failure earlier in the flow leaves no output."""
    return [str(p) for p in write_all(results, out)]
