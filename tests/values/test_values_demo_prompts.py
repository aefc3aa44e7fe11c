"""The bundled demo prompts (written for this project) used as X and held-out test prompts by the demo."""

from __future__ import annotations

import pytest

from picaco.values import CompositionError, list_compositions, load_composition, load_demo_prompts

KINDS = {"hh": {"info", "instruction", "harmful", "continuation"},
         "schwartz": {"dilemma", "stem", "value_question"}}


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def test_counts_fields_and_kinds():
    rows = load_demo_prompts()
    assert all(set(r) == {"prompt_id", "prompt", "family", "kind"} for r in rows)
    for family, kinds in KINDS.items():
        fam = load_demo_prompts(family=family)
        assert len(fam) >= 80
        assert all(r["family"] == family for r in fam)
        assert {r["kind"] for r in fam} == kinds
        assert min(sum(r["kind"] == k for r in fam) for k in kinds) >= 20  # a real mix, not one kind
    assert len(rows) == len(load_demo_prompts("hh")) + len(load_demo_prompts("schwartz"))
    assert len({r["prompt_id"] for r in rows}) == len(rows)
    assert len({_norm(r["prompt"]) for r in rows}) == len(rows)
    stems = [r["prompt"] for r in rows if r["kind"] == "stem"]
    assert all(p.startswith('Expand this beginning into a complete statement: "') and p.endswith('"') for p in stems)


def test_no_prompt_equals_a_demonstration_query():
    demo_queries = {_norm(d.query) for n in list_compositions() for d in load_composition(n).demonstrations}
    clashes = [r["prompt_id"] for r in load_demo_prompts() if _norm(r["prompt"]) in demo_queries]
    assert clashes == []


def test_returns_fresh_copies_and_checks_family():
    first = load_demo_prompts("hh")
    first[0]["prompt"] = "mutated"
    first.clear()
    assert load_demo_prompts("hh")[0]["prompt"] != "mutated"
    with pytest.raises(CompositionError, match="family"):
        load_demo_prompts("HH")
