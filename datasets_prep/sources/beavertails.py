"""BeaverTails (PKU-Alignment/BeaverTails): QA pairs with 14 harm categories, de-duplicated to prompts.

Each prompt appears with several responses; rows are grouped by prompt id and the group keeps the union of
the harm categories flagged on any of its responses (`category` = the sorted flagged keys joined with
'|', or 'none' when every response is safe) plus response counts. Category keys contain commas
(e.g. `controversial_topics,politics`), hence the '|' separator.
"""

from __future__ import annotations

from typing import Any

from ..schema import Prompt
from ..text import infer_kind, prompt_id
from .base import Column, HubRef, NoOptions, Record, SourceSpec, as_text


def harm_keys(value: Any) -> set[str]:
    """The flagged categories of one row: a dict of booleans (hub), or a list/str of names (user files)."""
    if value is None:
        return set()
    if isinstance(value, dict):
        return {str(k) for k, v in value.items() if v}
    if isinstance(value, (list, tuple)):
        return {str(v) for v in value if v}
    if isinstance(value, str):
        return {value} if value.strip() else set()
    raise ValueError(f"field 'category' should be a dict of booleans, got {type(value).__name__}")


def collect(rows: list[tuple[int, Record]], options: NoOptions) -> list[tuple[int, Prompt]]:
    groups: dict[str, dict[str, Any]] = {}
    for index, record in rows:
        text = as_text(record["text"], "text")
        key = prompt_id(text)
        group = groups.get(key)
        if group is None:
            group = groups[key] = {"index": index, "text": text, "harm": set(), "n": 0, "unsafe": 0, "safe_known": False}
        group["harm"] |= harm_keys(record["category"])
        group["n"] += 1
        if "is_safe" in record and record["is_safe"] is not None:
            group["safe_known"] = True
            group["unsafe"] += 0 if record["is_safe"] else 1
    out = []
    for group in groups.values():
        harm = sorted(group["harm"])
        meta: dict[str, Any] = {"harm_categories": harm, "n_responses": group["n"]}
        if group["safe_known"]:
            meta["n_unsafe_responses"] = group["unsafe"]
        prompt = Prompt(text=group["text"], kind=infer_kind(group["text"]), category="|".join(harm) or "none", meta=meta)
        out.append((group["index"], prompt))
    return out


def to_prompt(record: Record, options: NoOptions) -> Prompt:
    return collect([(0, record)], options)[0][1]


SPEC = SourceSpec(
    loader="beavertails",
    title="BeaverTails",
    columns={
        "text": Column("prompt"),
        "category": Column("category", doc="dict of 14 booleans"),
        "is_safe": Column("is_safe", required=False),
    },
    to_prompt=to_prompt,
    collect=collect,
    hub=HubRef(id="PKU-Alignment/BeaverTails", split="30k_test"),
    doc=__doc__ or "",
)
