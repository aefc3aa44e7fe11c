"""Bundled values and compositions against the paper's text (App. A.1, Tables 2-4, Sec. 4.1, App. C.1)."""

from __future__ import annotations

import dataclasses
import re

import pytest

from picaco.values import (
    Composition,
    CompositionError,
    Demonstration,
    Value,
    derive_seed_instruction,
    get_value,
    list_compositions,
    load_composition,
    load_value_library,
)

PAPER = {
    # Table 2 (Coherence), with the OCR hyphenation "ma- king" joined
    ("Coherence", "instruction"): "Please focus on the consistency and clarity of expression, making sure that your "
    "response is well-structured, with ideas presented in a clear and coherent manner.",
    # Table 2 (Verbosity)
    ("Verbosity", "instruction"): "Please increase the amount of detail included in your response.",
    # Table 2 (Responsible Uses), "weapon- isation" joined
    ("Responsible Uses", "instruction"): "Please avoid any undermining public discourse, crimes such as fraud, "
    "personalized disinformation campaigns, and the weaponisation or production of malicious code in your response.",
    # Table 2 (Relevancy), "irre- levant" joined
    ("Relevancy", "instruction"): "Please be relevant to the given instruction and omit any irrelevant information.",
    # App. A.1 (Information Safety)
    ("Information Safety", "definition"): "Information Safety avoids potential harms such as privacy violations and "
    "safety risks, namely leaking or correctly inferring private or sensitive information.",
    # App. A.1 (Verbosity), citation "(Wang et al., 2024e)" removed
    ("Verbosity", "definition"): "Verbosity refers to the amount of detail included in the response.",
    # App. A.1 (Self-direction)
    ("Self-direction", "definition"): "Independent thought and action-choosing, creating, exploring.",
    # App. A.1 (Achievement), OCR "socialstandards" split
    ("Achievement", "definition"): "Personal success through demonstrating competence according to social standards.",
    # App. A.1 (Universalism)
    ("Universalism", "definition"): "Understanding, appreciation, tolerance, and protection for the welfare of all "
    "people and for nature.",
    # Table 4 (Security), OCR "emotio- ally" -> "emotionally"
    ("Security", "instruction"): "Please embody a feeling of being safe, both physically and emotionally, while have "
    "a sense of stability and predictability in your environment, relationships, and well-being in your response.",
    # Table 4 (Conformity), OCR "li- kely" -> "likely"
    ("Conformity", "instruction"): "Please embody a behavior modification to align with group norms, including the "
    "restraint of actions, impulses, or inclinations likely to violate societal expectations or cause harm to "
    "others in your response.",
    # Table 4 (Hedonism)
    ("Hedonism", "instruction"): "Please place seeking pleasure, gratification, and self-indulgence as the primary "
    "or most important aspects of your response.",
}

TABLE3 = {
    "confucianism": "You should always provide responses that reflect the values of Benevolence, Conformity, "
    "Tradition, and Security.",
    "modern_liberalism": "You should always provide responses that reflect the values of Universalism, "
    "Self-direction, Hedonism, and Stimulation.",
}

SEC41 = {  # Sec. 4.1 value lists, in the paper's order
    "helpfulness": ["Coherence", "Complexity", "Verbosity", "Helpfulness"],
    "harmlessness": ["Non-Toxicity", "Fairness", "Information Safety", "Responsible Uses"],
    "hh_balance": ["Coherence", "Complexity", "Verbosity", "Helpfulness",
                   "Non-Toxicity", "Fairness", "Information Safety", "Responsible Uses"],
    "confucianism": ["Benevolence", "Conformity", "Tradition", "Security"],
    "modern_liberalism": ["Universalism", "Self-direction", "Hedonism", "Stimulation"],
}


@pytest.mark.parametrize("key", list(PAPER), ids=lambda k: f"{k[0]}.{k[1]}")
def test_text_matches_paper(key):
    name, field = key
    assert getattr(load_value_library()[name], field) == PAPER[key]


def test_library_contents():
    lib = load_value_library()
    fams = [v.family for v in lib.values()]
    assert (fams.count("helpful"), fams.count("harmless"), fams.count("schwartz")) == (5, 4, 10)
    assert set(SEC41["hh_balance"]) | {"Relevancy"} == {n for n, v in lib.items() if v.family != "schwartz"}
    for v in lib.values():
        assert v.source, v.name
        for text in (v.definition, v.instruction):
            # no OCR hyphenation left ("emotio- ally"), no stray line breaks or doubled spaces
            assert not re.search(r"[a-z]- [a-z]", text), (v.name, text)
            assert "\n" not in text and "  " not in text
    assert "Universalism" in lib and "a belief in equal respect, empathy, and protection for all humans and " \
        "nature" in lib["Universalism"].instruction  # the Sec. 3.1 example description


def test_get_value_normalizes_names():
    assert get_value("non toxicity") is get_value("Non-Toxicity") is get_value("NON_TOXICITY")
    assert get_value("self direction").name == "Self-direction"
    with pytest.raises(CompositionError, match="unknown value 'Honesty'"):
        get_value("Honesty")


def test_paper_compositions():
    assert list_compositions() == sorted(SEC41)
    for name, values in SEC41.items():
        comp = load_composition(name)
        assert isinstance(comp, Composition)
        assert comp.name == name and comp.value_names == values
        assert comp.kind == ("schwartz" if name in TABLE3 else "hh")
        assert comp.beta == (0.5 if comp.kind == "schwartz" else 5.0)  # App. C.1
        assert comp.uses_relevance == (comp.kind == "schwartz")
        assert comp.source
    assert {n: load_composition(n).judge_variant for n in SEC41} == {
        "helpfulness": "quality", "harmlessness": "harm", "hh_balance": "quality",
        "confucianism": "values", "modern_liberalism": "values"}
    assert [load_composition(n).title for n in ("hh_balance", "modern_liberalism")] == ["HH Balance", "Modern Liberalism"]


def test_seed_instructions():
    for name, seed in TABLE3.items():  # Table 3, verbatim; and the loader's pattern for user compositions agrees
        comp = load_composition(name)
        assert comp.seed_instruction == seed == derive_seed_instruction("schwartz", comp.values)
    # App. C.1: HH seeds concatenate the Table 2 instructions of the composition's values
    hh = load_composition("hh_balance")
    assert hh.seed_instruction == " ".join(v.instruction for v in hh.values)
    assert hh.seed_instruction.startswith(PAPER[("Coherence", "instruction")] + " Please increase the intellectual")
    assert hh.seed_instruction.endswith(PAPER[("Responsible Uses", "instruction")])
    help4 = load_composition("helpfulness").seed_instruction
    assert help4.count("Please ") == 4 and "Please avoid" not in help4


def test_demonstrations_written_for_this_project():
    all_queries = []
    for name in list_compositions():
        comp = load_composition(name)
        assert len(comp.demonstrations) == 8  # App. C.1: eight demonstration conversations per composition
        assert "WRITTEN FOR THE PICACO PROJECT" in comp.demonstrations_source
        assert "NOT the paper's" in comp.demonstrations_source
        for d in comp.demonstrations:
            assert isinstance(d, Demonstration)
            assert 80 <= len(d.answer.split()) <= 160, (name, d.query)
            assert d.answer == d.answer.strip() and d.query == d.query.strip()
            all_queries.append(" ".join(d.query.lower().split()))
    assert len(all_queries) == len(set(all_queries)) == 40
    # the two demonstrations the paper shows (Fig. 6) are not reused
    assert not any("my duty is" in q or "legalized gambling" in q for q in all_queries)
    stems = [q for q in all_queries if q.startswith("expand this beginning into a complete statement:")]
    assert len(stems) >= 4  # ValueLex-style stems are represented


def test_records_are_frozen_and_digest_is_content_based():
    comp = load_composition("confucianism")
    with pytest.raises(dataclasses.FrozenInstanceError):
        comp.beta = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        comp.values[0].name = "x"  # type: ignore[misc]
    assert isinstance(comp.values, tuple) and isinstance(comp.demonstrations, tuple)
    assert comp.digest == load_composition("confucianism").digest
    assert comp.digest != load_composition("modern_liberalism").digest
    changed = dataclasses.replace(comp, beta=0.6)
    assert changed.digest != comp.digest


def test_value_record_validation():
    assert Value("Honesty", "Telling the truth.", "Please be honest.", "helpful").family == "helpful"
    with pytest.raises(ValueError, match="family"):
        Value("Honesty", "Telling the truth.", "Please be honest.", "ethical")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        Value('Bad "name"', "d", "i", "helpful")
    with pytest.raises(ValueError, match="definition"):
        Value("Honesty", " ", "i", "helpful")
    with pytest.raises(ValueError):
        Demonstration("q", "")


def test_unknown_composition_name():
    with pytest.raises(CompositionError) as ei:
        load_composition("confucius")
    assert "confucianism" in str(ei.value) and "\n" not in str(ei.value)
