"""Load the sources of several compositions once each, build them all, then write them all.

Everything is built in memory before anything is written, so a bad source or a too-large request
leaves no output at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .build import BuildResult, build_composition, write_build
from .config import CompositionConfig, SourceConfig
from .loading import LoadedSource, load_source

StepHook = Callable[[str], None]


def unique_sources(compositions: Sequence[CompositionConfig]) -> dict[str, SourceConfig]:
    """Sources to load, keyed by what is loaded (a source shared by compositions is read once)."""
    out: dict[str, SourceConfig] = {}
    for comp in compositions:
        for src in comp.sources:
            out.setdefault(src.load_key(), src)
    return out


def step_count(compositions: Sequence[CompositionConfig]) -> int:
    return len(unique_sources(compositions)) + 2 * len(compositions)


def load_all(
    compositions: Sequence[CompositionConfig],
    *,
    cache_dir: str | Path | None = None,
    on_step: StepHook | None = None,
) -> dict[str, LoadedSource]:
    loaded: dict[str, LoadedSource] = {}
    for key, src in unique_sources(compositions).items():
        loaded[key] = load_source(src, cache_dir=cache_dir)
        if on_step:
            on_step(f"loaded {src.name} ({loaded[key].frame.height} prompts)")
    return loaded


def sources_for(comp: CompositionConfig, loaded: Mapping[str, LoadedSource]) -> list[LoadedSource]:
    return [loaded[src.load_key()] for src in comp.sources]


def build_all(
    compositions: Sequence[CompositionConfig],
    exclude_queries: Mapping[str, Sequence[str]],
    *,
    cache_dir: str | Path | None = None,
    on_step: StepHook | None = None,
) -> list[BuildResult]:
    """Load every source once and build every composition (nothing is written)."""
    loaded = load_all(compositions, cache_dir=cache_dir, on_step=on_step)
    results = []
    for comp in compositions:
        results.append(build_composition(comp, sources_for(comp, loaded), exclude_queries.get(comp.name, ())))
        if on_step:
            on_step(f"built {comp.name}")
    return results


def write_all(results: Sequence[BuildResult], out_root: str | Path, *, on_step: StepHook | None = None) -> list[Path]:
    paths = []
    for result in results:
        paths.append(write_build(result, out_root))
        if on_step:
            on_step(f"wrote {result.config.name}")
    return paths
