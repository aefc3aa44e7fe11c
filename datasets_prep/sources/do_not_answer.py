"""Do-Not-Answer (LibrAI/do-not-answer): 939 questions a responsible model should not answer.

`category` is the risk area (5 areas); the second-level type and the specific harm go to metadata.
"""

from __future__ import annotations

from ..schema import Prompt
from ..text import infer_kind
from .base import Column, HubRef, NoOptions, Record, SourceSpec, as_label, as_text, optional_meta


def to_prompt(record: Record, options: NoOptions) -> Prompt:
    text = as_text(record["text"], "text")
    meta = optional_meta(record, ("id", "types_of_harm", "specific_harms"))
    return Prompt(text=text, kind=infer_kind(text), category=as_label(record["category"]), meta=meta)


SPEC = SourceSpec(
    loader="do_not_answer",
    title="Do-Not-Answer",
    columns={
        "text": Column("question"),
        "category": Column("risk_area"),
        "types_of_harm": Column("types_of_harm", required=False),
        "specific_harms": Column("specific_harms", required=False),
        "id": Column("id", required=False),
    },
    to_prompt=to_prompt,
    hub=HubRef(id="LibrAI/do-not-answer", split="train"),
    doc=__doc__ or "",
)
