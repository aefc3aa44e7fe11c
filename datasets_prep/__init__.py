"""Dataset collection for picaco: ten public prompt sources -> a normalized table -> X and test sets.

Pure functions: `load_source` (one source through `datasets`), `build_composition` (filters,
de-duplication, demonstration exclusion, seeded stratified sampling, manifest), `write_build`
(Parquet + manifest). The Prefect flow lives in flows/collect.py, the CLI in datasets_prep.cli.
"""

from __future__ import annotations

from .build import BuildResult, allocate, build_composition, write_build
from .config import (
    COMPOSITIONS,
    CompositionConfig,
    DataConfig,
    FilterConfig,
    SourceConfig,
    load_data_config,
    resolve_compositions,
)
from .errors import (
    DataError,
    EmptySourceError,
    EncodingError,
    MissingColumnError,
    NotEnoughPromptsError,
    SourceUnavailableError,
)
from .loading import LoadedSource, load_source
from .pipeline import build_all, load_all, write_all
from .schema import KINDS, Prompt
from .sources import SOURCES
from .sources.base import HubRef

__all__ = [
    "COMPOSITIONS",
    "KINDS",
    "SOURCES",
    "BuildResult",
    "CompositionConfig",
    "DataConfig",
    "DataError",
    "EmptySourceError",
    "EncodingError",
    "FilterConfig",
    "HubRef",
    "LoadedSource",
    "MissingColumnError",
    "NotEnoughPromptsError",
    "Prompt",
    "SourceConfig",
    "SourceUnavailableError",
    "allocate",
    "build_all",
    "build_composition",
    "load_all",
    "load_data_config",
    "load_source",
    "resolve_compositions",
    "write_all",
    "write_build",
]
