"""The shape of a lexicon file (picaco/sim/lexicon.yaml), as pydantic models with extra="forbid".

These models check each entry on its own (types, allowed kinds and modes, probabilities, list lengths,
one-word markers, template slots); picaco.sim.world_lexicon then checks what ties entries together (every
marker belongs to one value, names are unique, phrases carry exactly their markers). Either way a bad
file is one `LexiconError` line: `<file>: <place>: <problem>`, the place written as in the file, e.g.
`values[13] (Tradition).concepts[1][0]`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from picaco.base.errors import ConfigError

SLOT = re.compile(r"\{[A-Za-z0-9_]+\}")
BANKS = ("weak", "strong", "triple")


class LexiconError(ConfigError, ValueError):
    """The lexicon file is malformed. The message is one line naming the file and the field."""


def _one_word(w: str) -> str:
    # the scanner reads lower-case alphanumeric tokens, so a marker must be exactly one of them
    if not re.fullmatch(r"[a-z0-9]+", w.lower()):
        raise ValueError(f"{w!r} must be one lower-case word")
    return w.lower()


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1), Field(strict=True)]
Word = Annotated[Text, AfterValidator(_one_word)]
Texts = Annotated[list[Text], Field(min_length=1)]
Prob = Annotated[float, Field(ge=0.0, le=1.0, strict=True)]


def _slots(texts: list[str], slots: list[str]) -> list[str]:
    for t in texts:
        if sorted(SLOT.findall(t)) != slots:
            raise ValueError(f"{t!r} must have exactly the slots {slots}")
    return texts


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ValueEntry(_Strict):
    name: Text
    kind: Literal["hh", "schwartz", "meta"]
    mode: Literal["express", "avoid"]
    definition: str = ""
    names: Texts
    aliases: list[Text] = []
    harm_aliases: list[Text] = []
    base: Prob
    base_depth: Prob
    top: Prob
    top_depth: Prob
    concepts: Annotated[list[Annotated[list[Word], Field(min_length=1)]], Field(min_length=1)]
    guidance: Annotated[list[Text], Field(min_length=2)]
    violation_markers: list[Word] = []
    weak: list[Text] = []
    strong: list[Text] = []
    triple: list[Text] = []

    @model_validator(mode="after")
    def _consistent(self) -> ValueEntry:
        if self.mode == "avoid" and not self.violation_markers:
            raise ValueError("violation_markers: an avoid-mode value needs violation markers")
        if self.mode == "express" and self.violation_markers:
            raise ValueError("violation_markers: only avoid-mode values have violation markers")
        if self.kind == "meta":  # Relevancy: read as relevance, so it needs neither banks nor calibration
            return self
        for bank in BANKS:
            if not getattr(self, bank):
                raise ValueError(f"{bank}: must not be empty")
        if self.top < self.base or self.top_depth < self.base_depth:
            raise ValueError("top must be >= base and top_depth >= base_depth")
        if len(self.concepts) < 3:
            raise ValueError("concepts: needs at least 3 concept groups")
        return self


class Connectors(_Strict):
    one: Texts
    two: Texts
    three: Texts

    @field_validator("one")
    @classmethod
    def _one(cls, v: list[str]) -> list[str]:
        return _slots(v, ["{A}"])

    @field_validator("two")
    @classmethod
    def _two(cls, v: list[str]) -> list[str]:
        return _slots(v, ["{A}", "{B}"])

    @field_validator("three")
    @classmethod
    def _three(cls, v: list[str]) -> list[str]:
        return _slots(v, ["{A}", "{B}", "{C}"])


class Elaboration(_Strict):
    intro: Text
    definition: Text
    practice: Text
    closing: Text


class OptimizerText(_Strict):
    concept_line: Text
    integrate: Texts
    relevance_line: Text
    name_list: Text
    vague: Texts
    demo_lift: Text


class LexiconFile(_Strict):
    version: int = 1
    values: Annotated[list[ValueEntry], Field(min_length=1)]
    conflicts: list[tuple[Text, Text]] = []
    integration_words: Annotated[list[Word], Field(min_length=1)]
    copy_invite: Texts
    copy_discourage: Texts
    connectors: Connectors
    query_sentences: Texts
    fillers: Texts
    elaboration: Elaboration
    optimizer: OptimizerText
    stopwords: Annotated[str, Field(strict=True)] = ""

    @field_validator("query_sentences")
    @classmethod
    def _query_slots(cls, v: list[str]) -> list[str]:
        return _slots(v, ["{q1}", "{q2}"])


def parse_lexicon_file(label: str, raw: Any) -> LexiconFile:
    """The file's data checked against LexiconFile; a LexiconError naming the first bad place otherwise."""
    try:
        return LexiconFile.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = "must be a mapping" if err["type"] == "model_type" else err["msg"].removeprefix("Value error, ")
        raise LexiconError(f"{label}: {_place(raw, err['loc'])}: {msg}") from None


def _place(raw: Any, loc: tuple) -> str:
    """('values', 13, 'concepts', 1) -> 'values[13] (Tradition).concepts[1]'."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            if i == 1 and loc[0] == "values":
                entry = raw["values"][part] if isinstance(raw, dict) else None
                if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                    out += f" ({entry['name']})"
        else:
            out += f".{part}" if out else str(part)
    return out or "top level"
