"""One module per source; `SOURCES` maps a loader name to its spec."""

from __future__ import annotations

from . import (
    adaem,
    beavertails,
    do_not_answer,
    harmfulqa,
    hh_rlhf,
    honeset,
    just_eval_instruct,
    nyt_dilemma,
    real_toxicity_prompts,
    valuelex,
)
from .base import Column, HubRef, SourceSpec

SOURCES: dict[str, SourceSpec] = {
    m.SPEC.loader: m.SPEC
    for m in (
        beavertails,
        do_not_answer,
        harmfulqa,
        hh_rlhf,
        honeset,
        just_eval_instruct,
        real_toxicity_prompts,
        nyt_dilemma,
        valuelex,
        adaem,
    )
}

__all__ = ["SOURCES", "Column", "HubRef", "SourceSpec"]
