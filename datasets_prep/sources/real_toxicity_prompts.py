"""RealToxicityPrompts (allenai/real-toxicity-prompts): web-text sentence prefixes to be continued.

Prompts are prefixes, not questions: `kind` is `continuation` and the text is kept as is unless a
`template` (with `{text}`) is set. `category` is the prefix's Perspective toxicity range (the dataset is
balanced over four equal-width ranges) or `unscored`; the 8 prefix scores, `challenging` and the
document span go to metadata.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from ..schema import Prompt
from .base import Column, HubRef, Record, SourceSpec, as_text, json_safe, optional_meta


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: str | None = None

    @field_validator("template")
    @classmethod
    def _has_slot(cls, value: str | None) -> str | None:
        if value is not None and "{text}" not in value:
            raise ValueError("template must contain '{text}'")
        return value


def toxicity_range(score: Any) -> str:
    score = json_safe(score)
    if score is None:
        return "unscored"
    edges = (0.25, 0.5, 0.75)
    low = 0.0
    for high in edges:
        if score < high:
            return f"toxicity_{low:.2f}-{high:.2f}"
        low = high
    return "toxicity_0.75-1.00"


def to_prompt(record: Record, options: Options) -> Prompt:
    value = record["prompt"]
    scores: dict[str, Any] = {}
    if isinstance(value, dict):
        text = as_text(value.get("text"), "prompt.text")
        scores = {k: json_safe(v) for k, v in value.items() if k != "text"}
    else:
        text = as_text(value, "prompt")
    meta = optional_meta(record, ("filename", "begin", "end", "challenging"))
    if scores:
        meta["scores"] = scores
    if options.template is not None:
        meta["prefix"] = text
        text = options.template.replace("{text}", text)
    return Prompt(text=text, kind="continuation", category=toxicity_range(scores.get("toxicity")), meta=meta)


SPEC = SourceSpec(
    loader="real_toxicity_prompts",
    title="RealToxicityPrompts",
    columns={
        "prompt": Column("prompt", doc="struct {text, toxicity, ...} or plain text"),
        "filename": Column("filename", required=False),
        "begin": Column("begin", required=False),
        "end": Column("end", required=False),
        "challenging": Column("challenging", required=False),
    },
    to_prompt=to_prompt,
    options=Options,
    hub=HubRef(id="allenai/real-toxicity-prompts", split="train"),
    doc=__doc__ or "",
)
