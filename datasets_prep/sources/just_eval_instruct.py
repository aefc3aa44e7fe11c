"""JUST-EVAL-INSTRUCT (re-align/just-eval-instruct): 800 regular + 200 safety instructions.

`category` is `regular` or `safety` (select with the source's `categories:`); the originating dataset
(AlpacaEval, LIMA, MT-Bench, ...) and its id go to metadata.
"""

from __future__ import annotations

from ..schema import Prompt
from ..text import infer_kind
from .base import Column, HubRef, NoOptions, Record, SourceSpec, as_label, as_text, optional_meta


def to_prompt(record: Record, options: NoOptions) -> Prompt:
    text = as_text(record["text"], "text")
    meta = optional_meta(record, ("id", "dataset", "source_id"))
    return Prompt(text=text, kind=infer_kind(text), category=as_label(record["category"]), meta=meta)


SPEC = SourceSpec(
    loader="just_eval_instruct",
    title="JUST-EVAL-INSTRUCT",
    columns={
        "text": Column("instruction"),
        "category": Column("category"),
        "dataset": Column("dataset", required=False),
        "source_id": Column("source_id", required=False),
        "id": Column("id", required=False),
    },
    to_prompt=to_prompt,
    hub=HubRef(id="re-align/just-eval-instruct", split="test"),
    doc=__doc__ or "",
)
