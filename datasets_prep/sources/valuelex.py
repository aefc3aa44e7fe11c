"""ValueLex sentence stems (Biedma et al., 2024): projective-test stems such as "My duty is".

Not downloadable: pass a local file. Columns: `stem` (required), optional `category` (one of the six
groups: Self-Competent, User-Oriented, Social, Idealistic, Professional, Ethical) and `dimension`
(Competence, Character, Integrity). A plain .txt file (one stem per line) loads as column `text`: map
it with `columns: {text: text}`. The prompt wraps the stem with `template` (default as in the paper's
demonstrations: Expand this beginning into a complete statement: "<stem>"); `template: null` keeps the
bare stem. `kind` is `stem`; the bare stem stays in metadata.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator

from ..schema import Prompt
from .base import Column, Record, SourceSpec, as_label, as_text, optional_meta

DEFAULT_TEMPLATE = 'Expand this beginning into a complete statement: "{text}"'


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: str | None = DEFAULT_TEMPLATE

    @field_validator("template")
    @classmethod
    def _has_slot(cls, value: str | None) -> str | None:
        if value is not None and "{text}" not in value:
            raise ValueError("template must contain '{text}'")
        return value


def to_prompt(record: Record, options: Options) -> Prompt:
    stem = as_text(record["text"], "text").strip()
    # A stem such as "My duty is..." ends with an ellipsis in some releases; the template supplies context.
    stem = stem.rstrip(".").rstrip("\u2026").rstrip() if stem.endswith(("...", "\u2026")) else stem
    meta = optional_meta(record, ("dimension",))
    meta["stem"] = stem
    text = stem if (options.template is None or not stem) else options.template.replace("{text}", stem)
    return Prompt(text=text, kind="stem", category=as_label(record.get("category")), meta=meta)


SPEC = SourceSpec(
    loader="valuelex",
    title="ValueLex stems",
    columns={
        "text": Column("stem"),
        "category": Column("category", required=False),
        "dimension": Column("dimension", required=False),
    },
    to_prompt=to_prompt,
    options=Options,
    doc=__doc__ or "",
)
