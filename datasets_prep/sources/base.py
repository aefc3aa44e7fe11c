"""What every source module declares: its columns, its hub/URL default and a pure record-to-prompt mapper.

A loader (datasets_prep.loading) reads a hub split, a URL or local files through `datasets.load_dataset`,
renames the configured columns to the source's canonical field names and hands the records to the
mapper. Mappers never do I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..schema import Prompt

Record = dict[str, Any]


class HubRef(BaseModel):
    """A Hugging Face hub dataset: `datasets.load_dataset(id, config, split=..., data_dir=..., revision=...)`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    split: str
    config: str | None = None
    data_dir: str | None = None
    revision: str | None = None


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Column:
    """A canonical field of a source and the column it is read from by default."""

    default: str
    required: bool = True
    doc: str = ""


@dataclass(frozen=True)
class SourceSpec:
    loader: str
    title: str
    columns: dict[str, Column]
    to_prompt: Callable[[Record, Any], Prompt]
    options: type[BaseModel] = NoOptions
    # Sources whose rows are not one prompt each (BeaverTails: several responses per prompt) group here.
    collect: Callable[[list[tuple[int, Record]], Any], list[tuple[int, Prompt]]] | None = None
    # Files that come in another shape than the hub rows (HarmfulQA's nested JSON) are turned into records
    # here; returns None when the dataset is in the ordinary row shape.
    reshape: Callable[[Any, dict[str, str]], list[Record] | None] | None = None
    hub: HubRef | None = None
    url: str | None = None
    url_format: str | None = None
    doc: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def local_only(self) -> bool:
        return self.hub is None and self.url is None


def as_text(value: Any, field_name: str) -> str:
    """A text field's value as a string; a missing value becomes '' so the empty filter counts it."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if not isinstance(value, str):
        raise ValueError(f"field {field_name!r} should be text, got {type(value).__name__} {value!r:.60}")
    return value


def as_label(value: Any) -> str | None:
    """A category-like value as a string label (None stays None; lists are joined with '|')."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (list, tuple)):
        parts = [str(v) for v in value if v is not None]
        return "|".join(parts) if parts else None
    text = str(value).strip()
    return text or None


def json_safe(value: Any) -> Any:
    """Metadata values as JSON: NaN becomes None (pandas-backed CSV reads give NaN for blanks)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def optional_meta(record: Record, names: tuple[str, ...]) -> dict[str, Any]:
    """The optional fields present in the record (a column that was not in the file is left out)."""
    return {n: json_safe(record[n]) for n in names if n in record}
