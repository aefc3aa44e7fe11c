"""AdAEM bench (Duan et al., 2025): generated value-evoking questions.

Not downloadable: pass a local file. Columns: `question` (required), optional `category` (e.g. the
value a question probes) and `topic`.
"""

from __future__ import annotations

from ..schema import Prompt
from ..text import infer_kind
from .base import Column, NoOptions, Record, SourceSpec, as_label, as_text, optional_meta


def to_prompt(record: Record, options: NoOptions) -> Prompt:
    text = as_text(record["text"], "text")
    meta = optional_meta(record, ("topic",))
    return Prompt(text=text, kind=infer_kind(text), category=as_label(record.get("category")), meta=meta)


SPEC = SourceSpec(
    loader="adaem",
    title="AdAEM bench",
    columns={
        "text": Column("question"),
        "category": Column("category", required=False),
        "topic": Column("topic", required=False),
    },
    to_prompt=to_prompt,
    doc=__doc__ or "",
)
