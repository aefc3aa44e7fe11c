"""The lexicon file: checked by pydantic models (lexicon_file.py) and the cross-checks of world_lexicon.py;
every fault in it is one line naming the file, the place in the lexicon and the problem."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from picaco.sim.world_lexicon import LexiconError, load_lexicon

SOURCE = (Path(__file__).resolve().parents[2] / "picaco" / "sim" / "lexicon.yaml").read_text()
COHERENCE_TRIPLE = ("    triple:\n      - Um, uh, anyway, back to the other thing.\n"
                    "      - Anyway, um, the rest and whatnot can wait.\n      - Uh, anyway, and whatnot, never mind.\n")

# (what is broken, text replaced, replacement, the message after "<file>: ")
BROKEN = [
    ("unknown top-level key", "version: 1\n", "version: 1\nextra_key: 3\n",
     "extra_key: Extra inputs are not permitted"),
    ("unknown key of a value", "    names: [coherence]\n", "    names: [coherence]\n    colour: red\n",
     "values[0] (Coherence).colour: Extra inputs are not permitted"),
    ("unknown kind", "    kind: hh\n    mode: avoid\n", "    kind: hx\n    mode: avoid\n",
     "values[0] (Coherence).kind: Input should be 'hh', 'schwartz' or 'meta'"),
    ("probability above 1", "    base: 0.97\n", "    base: 1.5\n",
     "values[0] (Coherence).base: Input should be less than or equal to 1"),
    ("probability written as yes", "    base: 0.97\n", "    base: yes\n",
     "values[0] (Coherence).base: Input should be a valid number"),
    ("concept of two words", "      - [coherent, coherently]\n", "      - [coherent, co-herent]\n",
     "values[0] (Coherence).concepts[0][1]: 'co-herent' must be one lower-case word"),
    ("concept that is a stopword", "      - [coherent, coherently]\n", "      - [coherent, the]\n",
     "values[0] (Coherence).concepts[0]: marker 'the' is a stopword or integration word"),
    ("avoid-mode value without violation markers", "    violation_markers: [um, uh, anyway, whatnot]\n", "",
     "values[0] (Coherence): violation_markers: an avoid-mode value needs violation markers"),
    ("top below base", "    top: 0.995\n", "    top: 0.5\n",
     "values[0] (Coherence): top must be >= base and top_depth >= base_depth"),
    ("one guidance phrase", "      - state the main point first and then support it\n"
     "      - use short paragraphs that each carry one idea\n", "",
     "values[0] (Coherence).guidance: List should have at least 2 items after validation, not 1"),
    ("empty bank", COHERENCE_TRIPLE, "    triple: []\n", "values[0] (Coherence): triple: must not be empty"),
    ("bank phrase without its marker", "      - Anyway, moving on to the next bit.\n",
     "      - Moving on to the next bit.\n",
     "values[0] (Coherence).weak: 'Moving on to the next bit.' must carry exactly 1 marker(s) of Coherence"),
    ("name already used", "    harm_aliases: [Incoherence]\n", "    harm_aliases: [Complexity]\n",
     "values[1] (Complexity).name: name 'Complexity' is already used by Coherence"),
    ("conflict with an unknown value", "  - [Tradition, Hedonism]\n", "  - [Tradition, Patriotism]\n",
     "conflicts[0]: must be a pair of value names, got ['Tradition', 'Patriotism']"),
    ("connector with the wrong slot", '    - "{A} matters here."\n', '    - "{B} matters here."\n',
     "connectors.one: '{B} matters here.' must have exactly the slots ['{A}']"),
    ("query sentence with one slot", '  - "On {q1} and {q2}, start from what you already know."\n',
     '  - "On {q1}, start from what you already know."\n', "query_sentences: 'On {q1}, start from"),
    ("missing elaboration line", '  closing: "Some of these values support one another, and some pull in '
     'different directions."\n', "", "elaboration.closing: Field required"),
    ("template with a marker", "  - Every situation is a little different.\n",
     "  - Every situation is a little coherent.\n", "templates: 'Every situation is a little coherent.' must not"),
]


@pytest.mark.parametrize("what, old, new, message", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_lexicon_is_one_line_naming_the_place(tmp_path, what, old, new, message):
    assert old in SOURCE, what
    path = tmp_path / "lex.yaml"
    path.write_text(SOURCE.replace(old, new, 1))
    with pytest.raises(LexiconError) as err:
        load_lexicon(str(path))
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"{path}: ") and message in text


def test_another_values_marker_names_both_values(tmp_path):
    path = tmp_path / "lex.yaml"
    path.write_text(SOURCE.replace("      - [heritage]\n", "      - [heritage, kindness]\n", 1))
    with pytest.raises(LexiconError) as err:
        load_lexicon(str(path))
    assert re.search(r"\((Tradition|Benevolence)\)\.concepts\[\d\]: marker 'kindness' is already a concept of "
                     r"(Benevolence|Tradition)$", str(err.value))


@pytest.mark.parametrize("text, message", [("- a\n- b\n", "top level: must be a mapping"),
                                           ("values: [\n", "not valid YAML")])
def test_a_file_that_is_not_a_lexicon(tmp_path, text, message):
    path = tmp_path / "lex.yaml"
    path.write_text(text)
    with pytest.raises(LexiconError, match=re.escape(f"{path}: {message}")):
        load_lexicon(str(path))
    with pytest.raises(LexiconError, match="not found"):
        load_lexicon(str(tmp_path / "missing.yaml"))
