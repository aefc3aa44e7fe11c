"""HarmfulQA (declare-lab/HarmfulQA): 1,960 harmful questions over 10 topics x 10 subtopics.

The hub has one row per question (`id, topic, subtopic, question, blue_conversations,
red_conversations`); the source repository ships the same questions as a nested JSON object
topic -> subtopic -> [question]. Both shapes load through `datasets`; `category` is the topic and the
subtopic goes to metadata.
"""

from __future__ import annotations

from typing import Any

from ..schema import Prompt
from ..text import infer_kind
from .base import Column, HubRef, NoOptions, Record, SourceSpec, as_label, as_text, optional_meta


def to_prompt(record: Record, options: NoOptions) -> Prompt:
    text = as_text(record["text"], "text")
    meta = optional_meta(record, ("id", "subtopic", "position"))
    return Prompt(text=text, kind=infer_kind(text), category=as_label(record["category"]), meta=meta)


def _is_nested(features: dict[str, Any]) -> bool:
    from datasets import List, Sequence, Value

    def is_str_list(f: Any) -> bool:
        return isinstance(f, (List, Sequence)) and isinstance(f.feature, Value) and f.feature.dtype == "string"

    return bool(features) and all(
        isinstance(sub, dict) and sub and all(is_str_list(v) for v in sub.values()) for sub in features.values()
    )


def reshape(dataset: Any, columns: dict[str, str]) -> list[Record] | None:
    """Flatten the nested topic -> subtopic -> [question] file (read by `datasets` as struct columns)."""
    if columns["text"] in dataset.column_names or not _is_nested(dataset.features):
        return None
    records: list[Record] = []
    for row in dataset:
        for topic in dataset.column_names:
            for subtopic, questions in (row[topic] or {}).items():
                for position, question in enumerate(questions or []):
                    records.append({"text": question, "category": topic, "subtopic": subtopic, "position": position})
    return records


SPEC = SourceSpec(
    loader="harmfulqa",
    title="HarmfulQA",
    columns={
        "text": Column("question"),
        "category": Column("topic"),
        "subtopic": Column("subtopic"),
        "id": Column("id", required=False),
    },
    to_prompt=to_prompt,
    reshape=reshape,
    hub=HubRef(id="declare-lab/HarmfulQA", split="train"),
    doc=__doc__ or "",
)
