"""NYT-Dilemma: reader questions to The Ethicist (NYT Magazine), 2007-2024; open-ended moral dilemmas.

Not downloadable: pass a local CSV/JSON/JSONL/Parquet file. Columns (rename with `columns:`):
`question` (required: the question without its title), optional `category`, `title` (kept in metadata
only, never in the prompt), `year`, `values` (e.g. Schwartz value annotations). `kind` is `dilemma`.
"""

from __future__ import annotations

from ..schema import Prompt
from .base import Column, NoOptions, Record, SourceSpec, as_label, as_text, optional_meta


def to_prompt(record: Record, options: NoOptions) -> Prompt:
    text = as_text(record["text"], "text")
    meta = optional_meta(record, ("title", "year", "values"))
    return Prompt(text=text, kind="dilemma", category=as_label(record.get("category")), meta=meta)


SPEC = SourceSpec(
    loader="nyt_dilemma",
    title="NYT-Dilemma",
    columns={
        "text": Column("question"),
        "category": Column("category", required=False),
        "title": Column("title", required=False),
        "year": Column("year", required=False),
        "values": Column("values", required=False),
    },
    to_prompt=to_prompt,
    doc=__doc__ or "",
)
