"""HoneSet (HonestLLM): 930 queries in 6 honesty categories.

Released as a JSON list of `{instruction, category, num, Total_num}` (plus `domain` on the 145 rows of
"Professional Capability in Specific Domains") in the HonestLLM repository, not on the hub; the default
origin is that file's URL (unverified from an offline machine), downloaded once into the cache and read
with `datasets.load_dataset("json", ...)`.
"""

from __future__ import annotations

from ..schema import Prompt
from ..text import infer_kind
from .base import Column, NoOptions, Record, SourceSpec, as_label, as_text, optional_meta


def to_prompt(record: Record, options: NoOptions) -> Prompt:
    text = as_text(record["text"], "text")
    meta = {k: v for k, v in optional_meta(record, ("domain", "num")).items() if v is not None}
    return Prompt(text=text, kind=infer_kind(text), category=as_label(record["category"]), meta=meta)


SPEC = SourceSpec(
    loader="honeset",
    title="HoneSet",
    columns={
        "text": Column("instruction"),
        "category": Column("category"),
        "domain": Column("domain", required=False),
        "num": Column("num", required=False),
    },
    to_prompt=to_prompt,
    url="https://raw.githubusercontent.com/Flossiee/HonestyLLM/main/dataset/HoneSet.json",
    url_format="json",
    doc=__doc__ or "",
)
