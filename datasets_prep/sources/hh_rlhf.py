"""HH-RLHF (Anthropic/hh-rlhf): preference transcripts reduced to the task prompt.

A row is a whole transcript "\\n\\nHuman: ...\\n\\nAssistant: ..." (`chosen`, `rejected`). The task prompt is
the conversation up to the last "\\n\\nAssistant:"; by default (`turns: first`) only the first human turn
is kept, as most users of the paper do; `turns: full` keeps the whole prefix as "Human: ...\\n\\nAssistant:
...\\n\\nHuman: ...". The hub has one subset per `data_dir` (harmless-base, helpful-base, helpful-online,
helpful-rejection-sampled, red-team-attempts); set the source `name` to tell subsets apart.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict

from ..schema import Prompt
from ..text import infer_kind
from .base import Column, HubRef, Record, SourceSpec, as_text

_TURN = re.compile(r"\n\n(Human|Assistant):")


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    turns: Literal["first", "full"] = "first"


def parse_turns(transcript: str) -> list[tuple[str, str]]:
    """Split a transcript into (role, text) turns; it must open with a Human turn."""
    text = "\n\n" + transcript.lstrip()
    parts = _TURN.split(text)
    if parts[0].strip():
        raise ValueError("transcript has text before its first 'Human:' turn")
    turns = [(parts[i], parts[i + 1].strip()) for i in range(1, len(parts), 2)]
    if not turns or turns[0][0] != "Human":
        raise ValueError("transcript does not open with a '\\n\\nHuman:' turn")
    return turns


def prompt_turns(transcript: str) -> list[tuple[str, str]]:
    """The turns before the last Assistant turn (the task prompt); ends on a Human turn."""
    turns = parse_turns(transcript)
    last_assistant = max((i for i, (role, _) in enumerate(turns) if role == "Assistant"), default=len(turns))
    return turns[:last_assistant]


def to_prompt(record: Record, options: Options) -> Prompt:
    chosen = as_text(record["transcript"], "transcript")
    if not chosen.strip():
        return Prompt(text="", kind="instruction", meta={})
    turns = prompt_turns(chosen)
    humans = [t for role, t in turns if role == "Human"]
    if options.turns == "first":
        text = humans[0]
    else:
        text = "\n\n".join(f"{role}: {t}" for role, t in turns)
    meta: dict = {"n_human_turns": len(humans), "turns": options.turns}
    if "rejected" in record and record["rejected"] is not None:
        # A few rows have chosen/rejected transcripts that diverge before the last answer.
        meta["prefix_differs"] = prompt_turns(as_text(record["rejected"], "rejected")) != turns
    # The kind follows the human turn the model has to answer: the first one, or the last of the prefix.
    kind = infer_kind(humans[0] if options.turns == "first" else humans[-1])
    return Prompt(text=text, kind=kind, category=None, meta=meta)


SPEC = SourceSpec(
    loader="hh_rlhf",
    title="HH-RLHF",
    columns={
        "transcript": Column("chosen", doc="whole transcript the prompt is cut from"),
        "rejected": Column("rejected", required=False, doc="checked for a diverging prefix"),
    },
    to_prompt=to_prompt,
    options=Options,
    hub=HubRef(id="Anthropic/hh-rlhf", data_dir="harmless-base", split="test"),
    doc=__doc__ or "",
)
