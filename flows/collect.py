"""Flow `collect-datasets`: load each source once, build every requested composition, write them all.

    from flows.collect import collect_datasets_flow
    collect_datasets_flow(compositions=["helpfulness"], config_path="datasets.yaml", n_test=200)
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from datasets_prep.config import load_data_config, resolve_compositions
from datasets_prep.pipeline import unique_sources
from tasks.data import build_composition_task, demonstration_queries_task, load_source_task, write_datasets_task


def _summary_markdown(results) -> str:
    lines = ["| composition | pool | X | test |", "|---|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.config.name} | {sum(r.manifest['counts']['pool'].values())} | {r.x.height} | {r.test.height} |")
    return "\n".join(lines)


@flow(name="collect-datasets")
def collect_datasets_flow(
    compositions: list[str] | None = None,
    config_path: str | None = None,
    out: str = "artifacts/datasets",
    n_x: int | None = None,
    n_test: int | None = None,
    seed: int | None = None,
    cache_dir: str | None = None,
) -> dict[str, dict]:
    """Build the named compositions (all five when None); returns per-composition folder and counts."""
    data_cfg, base_dir = load_data_config(config_path) if config_path else (None, None)
    comps = resolve_compositions(compositions, data_cfg, base_dir=base_dir, n_x=n_x, n_test=n_test, seed=seed)
    loaded = {key: load_source_task(src, cache_dir) for key, src in unique_sources(comps).items()}
    results = []
    for comp in comps:
        demos = demonstration_queries_task(comp.name)
        results.append(build_composition_task(comp, [loaded[s.load_key()] for s in comp.sources], demos))
    paths = write_datasets_task(results, out)
    create_markdown_artifact(markdown=_summary_markdown(results), key="collect-datasets", description="prompt counts")
    return {
        r.config.name: {
            "path": str(Path(p)),
            "pool": sum(r.manifest["counts"]["pool"].values()),
            "x": r.x.height,
            "test": r.test.height,
        }
        for r, p in zip(results, paths)
    }
