"""Pydantic configuration of sources and compositions, the five default compositions, and YAML overrides.

A YAML file given with `--config` may hold (all optional):

    seed: 0                 # applies to every composition unless it sets its own
    n_x: 50
    n_test: 800
    sources:                # partial overrides by source name, applied in every composition using it
      beavertails: {path: /data/beavertails_30k_test.jsonl}
      nyt_dilemma: {path: nyt.csv, columns: {text: body}}
    compositions:           # partial overrides per composition; `sources:` there replaces the list
      helpfulness: {n_test: 200, filters: {max_chars: 2000}}

Relative paths are resolved against the YAML file's folder. Giving `path` (or `url`) for a source drops
its default hub id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import DataError
from .sources import SOURCES
from .sources.base import HubRef

LoaderName = Literal[
    "beavertails",
    "do_not_answer",
    "harmfulqa",
    "hh_rlhf",
    "honeset",
    "just_eval_instruct",
    "real_toxicity_prompts",
    "nyt_dilemma",
    "valuelex",
    "adaem",
]
FileFormat = Literal["json", "csv", "parquet", "text"]

COMPOSITIONS = ("helpfulness", "harmlessness", "hh_balance", "confucianism", "modern_liberalism")


class SourceConfig(BaseModel):
    """One source of a composition: where it comes from (hub, URL or local path) and how to read it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    loader: LoaderName
    name: str = ""
    hub: HubRef | None = None
    url: str | None = None
    path: Path | None = None
    format: FileFormat | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    categories: list[str] | None = None
    weight: float = Field(1.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("name") and data.get("loader"):
            data = {**data, "name": data["loader"]}
        return data

    @model_validator(mode="after")
    def _check(self) -> SourceConfig:
        origins = [n for n in ("hub", "url", "path") if getattr(self, n) is not None]
        if len(origins) > 1:
            raise ValueError(f"source {self.name!r}: give only one of hub, url, path (got {', '.join(origins)})")
        spec = SOURCES[self.loader]
        unknown = sorted(set(self.columns) - set(spec.columns))
        if unknown:
            raise ValueError(
                f"source {self.name!r}: unknown field(s) {', '.join(unknown)} in columns; "
                f"{self.loader} has {', '.join(spec.columns)}"
            )
        try:
            spec.options.model_validate(self.options)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "options"
            raise ValueError(f"source {self.name!r}: options.{where}: {first['msg']}") from None
        return self

    def parsed_options(self) -> BaseModel:
        return SOURCES[self.loader].options.model_validate(self.options)

    def load_key(self) -> str:
        """Identity of what gets loaded (not how it is sampled), so compositions can share a load."""
        return self.model_dump_json(include={"loader", "name", "hub", "url", "path", "format", "columns", "options"})


class FilterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_chars: int = Field(8, ge=0)
    max_chars: int = Field(4000, ge=1)
    min_words: int = Field(2, ge=0)
    language: Literal["en"] | None = "en"
    min_ascii_letter_share: float = Field(0.9, ge=0, le=1)
    near_dup_threshold: float | None = Field(0.8, gt=0, le=1)
    shingle_size: int = Field(3, ge=1)


class CompositionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    sources: list[SourceConfig] = Field(min_length=1)
    n_x: int = Field(50, ge=0)
    n_test: int = Field(800, ge=0)
    seed: int = 0
    filters: FilterConfig = FilterConfig()

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        names = [s.name for s in sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique within a composition; repeated: {', '.join(dupes)}")
        return sources

    @model_validator(mode="after")
    def _sizes(self) -> CompositionConfig:
        if self.n_x + self.n_test == 0:
            raise ValueError("n_x and n_test are both 0: nothing to sample")
        return self


class DataConfig(BaseModel):
    """The `--config` YAML: global size/seed overrides, per-source and per-composition partial overrides."""

    model_config = ConfigDict(extra="forbid")

    seed: int | None = None
    n_x: int | None = Field(None, ge=0)
    n_test: int | None = Field(None, ge=0)
    sources: dict[str, dict[str, Any]] = Field(default_factory=dict)
    compositions: dict[str, dict[str, Any]] = Field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# Defaults: the paper's sources (App. B) with their real hub ids.


def _hub_source(loader: str, name: str | None = None, **kw: Any) -> dict[str, Any]:
    spec = SOURCES[loader]
    hub = kw.pop("hub", None) or spec.hub
    origin: dict[str, Any] = {"hub": hub.model_dump(exclude_none=True)} if hub else {}
    if spec.url:
        origin = {"url": spec.url, "format": spec.url_format}
    return {"loader": loader, "name": name or loader, **origin, **kw}


def _hh(data_dir: str) -> dict[str, Any]:
    hub = HubRef(id="Anthropic/hh-rlhf", data_dir=data_dir, split="test")
    return _hub_source("hh_rlhf", name=f"hh_rlhf/{data_dir}", hub=hub)


_HELPFUL = [
    _hub_source("just_eval_instruct", categories=["regular"]),
    _hub_source("honeset"),
    _hh("helpful-base"),
]
_HARMLESS = [
    _hub_source("beavertails"),
    _hub_source("do_not_answer"),
    _hub_source("harmfulqa"),
    _hh("harmless-base"),
    _hub_source("real_toxicity_prompts"),
    _hub_source("just_eval_instruct", categories=["safety"]),
]
_SCHWARTZ = [{"loader": n, "name": n} for n in ("nyt_dilemma", "valuelex", "adaem")]


def default_composition_dicts() -> dict[str, dict[str, Any]]:
    hh_balance = [dict(s) for s in _HELPFUL + _HARMLESS if s["name"] != "just_eval_instruct"]
    hh_balance.insert(0, _hub_source("just_eval_instruct"))
    return {
        "helpfulness": {"name": "helpfulness", "sources": [dict(s) for s in _HELPFUL]},
        "harmlessness": {"name": "harmlessness", "sources": [dict(s) for s in _HARMLESS]},
        "hh_balance": {"name": "hh_balance", "sources": hh_balance},
        "confucianism": {"name": "confucianism", "sources": [dict(s) for s in _SCHWARTZ]},
        "modern_liberalism": {"name": "modern_liberalism", "sources": [dict(s) for s in _SCHWARTZ]},
    }


# ---------------------------------------------------------------------------------------------------


def load_data_config(path: str | Path) -> tuple[DataConfig, Path]:
    """Read a `--config` YAML; returns the config and the folder relative paths are resolved against."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"config file {path} does not exist") from None
    except UnicodeDecodeError as err:
        raise DataError(f"config file {path} is not UTF-8 ({err.reason} at byte {err.start})") from None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise DataError(f"config file {path} is not valid YAML: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DataError(f"config file {path}: top level must be a mapping, got {type(data).__name__}")
    try:
        return DataConfig.model_validate(data), path.resolve().parent
    except ValidationError as err:
        raise DataError(f"config file {path}: {_first_error(err)}") from None


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


def _apply_source_override(base: dict[str, Any], override: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    override = dict(override)
    if "path" in override and override["path"] is not None and base_dir is not None:
        p = Path(override["path"]).expanduser()
        override["path"] = str(p if p.is_absolute() else base_dir / p)
    merged = dict(base)
    if any(k in override for k in ("hub", "url", "path")):
        for k in ("hub", "url", "path", "format"):
            merged.pop(k, None)
    merged.update(override)
    return merged


def resolve_compositions(
    names: list[str] | None,
    config: DataConfig | None = None,
    *,
    base_dir: Path | None = None,
    n_x: int | None = None,
    n_test: int | None = None,
    seed: int | None = None,
) -> list[CompositionConfig]:
    """The validated configs of the named compositions (all five when `names` is None).

    Precedence: explicit `n_x`/`n_test`/`seed` arguments > the composition's own override > the YAML's
    global value > the default.
    """
    config = config or DataConfig()
    defaults = default_composition_dicts()
    selected = list(COMPOSITIONS) if names is None else list(dict.fromkeys(names))
    unknown = [n for n in selected + list(config.compositions) if n not in defaults]
    if unknown:
        raise DataError(f"unknown composition {unknown[0]!r}; choose from {', '.join(COMPOSITIONS)}")
    known_sources = {
        s["name"] for comp in defaults.values() for s in comp["sources"]
    } | {
        s.get("name") or s.get("loader") for o in config.compositions.values() for s in (o.get("sources") or [])
    }
    for name in config.sources:
        if name not in known_sources:
            raise DataError(
                f"config: sources.{name} matches no source of any composition (known: {', '.join(sorted(known_sources))})"
            )

    out = []
    for comp_name in selected:
        raw = dict(defaults[comp_name])
        override = dict(config.compositions.get(comp_name, {}))
        if "name" in override and override["name"] != comp_name:
            raise DataError(f"config: compositions.{comp_name}.name must be {comp_name!r} if given")
        if "sources" in override:
            raw["sources"] = [
                _apply_source_override({}, s, base_dir) if isinstance(s, dict) else s for s in override.pop("sources")
            ]
        for key in ("seed", "n_x", "n_test"):
            if getattr(config, key) is not None and key not in override:
                raw[key] = getattr(config, key)
        raw.update(override)
        raw["sources"] = [
            _apply_source_override(s, config.sources[str(s.get("name") or s.get("loader"))], base_dir)
            if isinstance(s, dict) and (s.get("name") or s.get("loader")) in config.sources
            else s
            for s in raw["sources"]
        ]
        for key, value in (("n_x", n_x), ("n_test", n_test), ("seed", seed)):
            if value is not None:
                raw[key] = value
        try:
            out.append(CompositionConfig.model_validate(raw))
        except ValidationError as err:
            raise DataError(f"composition {comp_name}: {_first_error(err)}") from None
    return out
