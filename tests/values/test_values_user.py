"""User compositions from YAML: what loads, and one-line errors naming the file and field for what does not."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from picaco.base.errors import ConfigError
from picaco.values import CompositionError, load_composition, load_value_library

DEMOS = [{"query": "How do I apologise to a friend?", "answer": "Say sorry plainly and mean it."},
         {"query": "What should I cook tonight?", "answer": "A vegetable curry: quick and cheap."}]


def _write(tmp_path: Path, data, name: str = "mine.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _error(tmp_path: Path, data, field: str, *words: str, name: str = "mine.yaml") -> str:
    path = _write(tmp_path, data, name)
    with pytest.raises(CompositionError) as ei:
        load_composition(path)
    msg = str(ei.value)
    assert "\n" not in msg, msg
    assert msg.startswith(f"{path}: "), msg
    assert f"field '{field}'" in msg, msg
    for w in words:
        assert w in msg, msg
    assert isinstance(ei.value, ConfigError) and isinstance(ei.value, ValueError)
    return msg


def test_user_composition_with_library_and_new_values(tmp_path):
    path = _write(tmp_path, {
        "name": "candid_helper",
        "values": ["helpfulness", "non toxicity",
                   {"name": "Honesty", "family": "helpful", "definition": "Honesty means telling the truth.",
                    "instruction": "Please be honest and say when you are unsure."}],
        "demonstrations": DEMOS,
    })
    comp = load_composition(path)
    assert comp.name == "candid_helper" and comp.title == "Candid Helper"
    assert comp.value_names == ["Helpfulness", "Non-Toxicity", "Honesty"]
    assert comp.kind == "hh" and comp.beta == 5.0 and comp.judge_variant == "quality"
    lib = load_value_library()
    assert comp.seed_instruction == " ".join(
        [lib["Helpfulness"].instruction, lib["Non-Toxicity"].instruction, "Please be honest and say when you are unsure."])
    assert comp.values[2].source.startswith("user-defined in ")
    assert comp.path == str(path)
    assert load_composition(str(path)) == comp  # str paths work too


def test_defaults_follow_the_families(tmp_path):
    sz = load_composition(_write(tmp_path, {"values": ["Power", "Achievement"], "demonstrations": DEMOS}, "ambition.yaml"))
    assert (sz.name, sz.kind, sz.beta, sz.judge_variant) == ("ambition", "schwartz", 0.5, "values")
    assert sz.seed_instruction == "You should always provide responses that reflect the values of Power and Achievement."
    harm = load_composition(_write(tmp_path, {"values": ["Fairness"], "demonstrations": DEMOS}, "fair.yaml"))
    assert harm.judge_variant == "harm"
    mixed = load_composition(_write(tmp_path, {"values": ["Helpfulness", "Benevolence"], "kind": "schwartz",
                                               "beta": 2, "judge_variant": "values",
                                               "seed_instruction": "  Be kind and useful.  ",
                                               "demonstrations_from": "confucianism"}, "mix.yaml"))
    assert (mixed.kind, mixed.beta, mixed.judge_variant, mixed.seed_instruction) == ("schwartz", 2.0, "values",
                                                                                     "Be kind and useful.")
    assert mixed.demonstrations == load_composition("confucianism").demonstrations
    assert "reused from confucianism" in mixed.demonstrations_source


def test_sixteen_values_allowed_seventeen_not(tmp_path):
    names = list(load_value_library())
    ok = load_composition(_write(tmp_path, {"kind": "hh", "values": names[:16], "demonstrations": DEMOS}, "ok.yaml"))
    assert len(ok.values) == 16
    _error(tmp_path, {"kind": "hh", "values": names[:17], "demonstrations": DEMOS}, "values", "17 values", "at most 16")


@pytest.mark.parametrize(
    "data,field,words",
    [
        ({"values": ["Helpfulness", "Honesty"], "demonstrations": DEMOS}, "values[1]", ["unknown value 'Honesty'"]),
        ({"values": ["Helpfulness"], "beta": 0, "demonstrations": DEMOS}, "beta", ["> 0"]),
        ({"values": ["Helpfulness"], "beta": -2.5, "demonstrations": DEMOS}, "beta", ["> 0"]),
        ({"values": ["Helpfulness"], "beta": ".nan", "demonstrations": DEMOS}, "beta", []),
        ({"values": ["Helpfulness"], "beta": "high", "demonstrations": DEMOS}, "beta", []),
        ({"values": ["Helpfulness"], "beta": True, "demonstrations": DEMOS}, "beta", ["must be a number"]),
        ({"values": ["Coherence", "coherence"], "demonstrations": DEMOS}, "values[1]", ["duplicate", "values[0]"]),
        ({"values": ["Information Safety", "information_safety"], "demonstrations": DEMOS}, "values[1]", ["duplicate"]),
        ({"values": ["Helpfulness"], "demonstrations": []}, "demonstrations", ["at least one"]),
        ({"values": ["Helpfulness"]}, "demonstrations", ["at least one"]),
        ({"values": ["Helpfulness"], "demonstrations": DEMOS + DEMOS[:1]}, "demonstrations[2].query", ["duplicate"]),
        ({"values": ["Helpfulness"], "demonstrations": [{"query": "q", "answer": " "}]}, "demonstrations[0]",
         ["answer"]),
        ({"values": ["Helpfulness"], "demonstrations": [{"query": "q"}]}, "demonstrations[0].answer", ["required"]),
        ({"values": [], "demonstrations": DEMOS}, "values", ["at least one"]),
        ({"demonstrations": DEMOS}, "values", ["required"]),
        ({"values": ["Helpfulness"], "demonstrations": DEMOS, "betta": 3}, "betta", ["unknown field"]),
        ({"values": ["Helpfulness"], "demonstrations": DEMOS, "kind": "ethics"}, "kind", []),
        ({"values": ["Helpfulness"], "demonstrations": DEMOS, "judge_variant": "harmful"}, "judge_variant", []),
        ({"values": ["Helpfulness", "Tradition"], "demonstrations": DEMOS}, "kind", ["mix"]),
        ({"values": [{"name": "Fairness", "family": "harmless", "definition": "d", "instruction": "i"}],
          "demonstrations": DEMOS}, "values[0].name", ["library value"]),
        ({"values": [{"name": "Honesty", "family": "helpful", "definition": "d"}], "demonstrations": DEMOS},
         "values[0].instruction", ["required"]),
        ({"values": [{"name": "Honesty", "family": "ethics", "definition": "d", "instruction": "i"}],
          "demonstrations": DEMOS}, "values[0].family", []),
        ({"values": [{"name": "Honesty", "family": "helpful", "definition": "d", "instruction": "i", "weight": 2}],
          "demonstrations": DEMOS}, "values[0].weight", ["unknown field"]),
        ({"values": [{"name": "Hon{esty}", "family": "helpful", "definition": "d", "instruction": "i"}],
          "demonstrations": DEMOS}, "values[0]", ["name"]),
        ({"values": [42], "demonstrations": DEMOS}, "values[0]", ["library value name or a mapping"]),
        ({"values": ["Helpfulness"], "demonstrations": DEMOS, "demonstrations_from": "hh_balance"},
         "demonstrations_from", ["not both"]),
        ({"values": ["Helpfulness"], "demonstrations_from": "stoicism"}, "demonstrations_from", ["unknown"]),
        ({"name": "My Comp", "values": ["Helpfulness"], "demonstrations": DEMOS}, "name", ["lower-case"]),
        ({"values": ["Helpfulness"], "demonstrations": DEMOS, "seed_instruction": "   "}, "seed_instruction",
         ["empty"]),
    ],
)
def test_user_composition_errors(tmp_path, data, field, words):
    if data.get("beta") == ".nan":
        data = yaml.safe_dump({**data, "beta": "PLACEHOLDER"}).replace("PLACEHOLDER", ".nan")
    _error(tmp_path, data, field, *words)


def test_name_from_file_stem_is_checked(tmp_path):
    _error(tmp_path, {"values": ["Helpfulness"], "demonstrations": DEMOS}, "name", "file name", name="My-Comp.yaml")


@pytest.mark.parametrize("text,words", [("values: [Helpfulness\n", ["not valid YAML", "line"]),
                                        ("- just\n- a list\n", ["top level", "mapping"]),
                                        ("", ["mapping"])])
def test_file_level_errors(tmp_path, text, words):
    path = _write(tmp_path, text)
    with pytest.raises(CompositionError) as ei:
        load_composition(path)
    msg = str(ei.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg
    for w in words:
        assert w in msg, msg


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CompositionError, match="file not found"):
        load_composition(tmp_path / "nope.yaml")
    with pytest.raises(CompositionError, match="directory"):
        load_composition(tmp_path)


def test_digest_ignores_the_file_location(tmp_path):
    data = {"name": "x", "values": [{"name": "Honesty", "family": "helpful", "definition": "d", "instruction": "i"}],
            "demonstrations": DEMOS}
    a = load_composition(_write(tmp_path, data, "a.yaml"))
    (tmp_path / "sub").mkdir()
    b = load_composition(_write(tmp_path / "sub", data, "a.yaml"))
    assert a.path != b.path and a.digest == b.digest
    c = load_composition(_write(tmp_path, {**data, "beta": 4}, "c.yaml"))
    assert c.digest != a.digest
