"""The normalized prompt table shared by every source.

One row per prompt: `prompt_id` (sha256 of the normalized text, see `text.prompt_id`), `source` (the
source's configured name), `source_index` (row of the loaded source it came from), `prompt`, `kind`
(question, instruction, continuation, dilemma, stem), `category` (source-specific label, may be null)
and `meta` (source-specific metadata as a JSON object with sorted keys, so rows of different sources
fit one column).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from .text import clean_prompt, prompt_id

KINDS = ("question", "instruction", "continuation", "dilemma", "stem")

PROMPT_SCHEMA: dict[str, pl.DataType] = {
    "prompt_id": pl.Utf8(),
    "source": pl.Utf8(),
    "source_index": pl.Int64(),
    "prompt": pl.Utf8(),
    "kind": pl.Utf8(),
    "category": pl.Utf8(),
    "meta": pl.Utf8(),
}


@dataclass(frozen=True)
class Prompt:
    """What a source mapper returns for one record (or one de-duplicated group of records)."""

    text: str
    kind: str
    category: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"prompt kind {self.kind!r} is not one of {', '.join(KINDS)}")


def meta_json(meta: dict[str, Any]) -> str:
    # default=str keeps dates and other non-JSON scalars from parquet sources deterministic and readable.
    return json.dumps(meta, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)


def prompts_to_frame(source: str, prompts: list[tuple[int, Prompt]]) -> pl.DataFrame:
    """Build the normalized table of one source from `(source_index, Prompt)` pairs, in the given order."""
    rows: dict[str, list] = {name: [] for name in PROMPT_SCHEMA}
    for index, p in prompts:
        text = clean_prompt(p.text)
        rows["prompt_id"].append(prompt_id(text))
        rows["source"].append(source)
        rows["source_index"].append(index)
        rows["prompt"].append(text)
        rows["kind"].append(p.kind)
        rows["category"].append(p.category)
        rows["meta"].append(meta_json(p.meta))
    return pl.DataFrame(rows, schema=PROMPT_SCHEMA)
