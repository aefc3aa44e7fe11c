"""Reply parsers: lenient about form, strict about content (never invent a score)."""

from __future__ import annotations

import pickle

import pytest

from picaco.base.errors import PicacoError
from picaco.templates import ReplyParseError, parse_instruction, parse_proposal, parse_relevance, parse_value_scores

HH4 = ["Non-Toxicity", "Fairness", "Information Safety", "Responsible Uses"]


def _problem(fn, *args, **kw) -> str:
    with pytest.raises(ReplyParseError) as ei:
        fn(*args, **kw)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(ei.value.problem + ":")
    return ei.value.problem


# ------------------------------------------------------------------------------- parse_instruction


@pytest.mark.parametrize(
    "reply,expected",
    [
        ("<INS>Be kind and precise.</INS>", "Be kind and precise."),
        ("Sure! Here it is:\n<INS>\n1. Be kind.\n2. Be exact.\n</INS>\nHope it helps.", "1. Be kind.\n2. Be exact."),
        ("<ins> lower-case tags </ins>", "lower-case tags"),
        ("< INS >spaced tags< / INS >", "spaced tags"),
        ("The good one was <INS>old</INS>; a better one: <INS>new and better</INS>", "new and better"),
        ("<INS> draft that never closed <INS>final</INS>", "final"),
        ("<INS>```\nFenced instruction.\n```</INS>", "Fenced instruction."),
        ("<INS>Mentions {query} and # Answer: literally.</INS>", "Mentions {query} and # Answer: literally."),
    ],
)
def test_parse_instruction_good(reply, expected):
    assert parse_instruction(reply) == expected


@pytest.mark.parametrize(
    "reply,problem",
    [
        ("Be kind and precise.", "no_tag"),
        ("<INS>Be kind and precise.", "no_tag"),
        ("Be kind.</INS>", "no_tag"),
        ("<INS>   \n </INS>", "empty"),
        ("<INS>``` ```</INS>", "empty"),
        ("<INS>" + "word " * 301 + "</INS>", "too_long"),
    ],
)
def test_parse_instruction_bad(reply, problem):
    assert _problem(parse_instruction, reply) == problem


def test_parse_instruction_length_rule():
    assert parse_instruction("<INS>" + "w " * 300 + "</INS>", length=150).count("w") == 300  # <= 2 x 150 is fine
    assert _problem(parse_instruction, "<INS>" + "w " * 41 + "</INS>", length=20) == "too_long"


# ------------------------------------------------------------------------------ parse_value_scores

GOOD_JSON = """{
    "Non-Toxicity": {"reason": "No insults {at all}.", "score": "5"},
    "Fairness": {"reason": "Even-handed \\"quotes\\".", "score": 4},
    "Information Safety": {"reason": "ok", "score": "3/5"},
    "Responsible Uses": {"reason": "ok", "score": 2.0}
}"""
EXPECTED = {"Non-Toxicity": 5, "Fairness": 4, "Information Safety": 3, "Responsible Uses": 2}


@pytest.mark.parametrize(
    "reply",
    [
        GOOD_JSON,
        "Here are my scores:\n```json\n" + GOOD_JSON + "\n```\nDone.",
        GOOD_JSON.replace('"', "'").replace("\\'", '"'),  # single quotes
        GOOD_JSON.replace('"score": 2.0}', '"score": 2.0},').replace("}\n}", "},\n}"),  # trailing commas
        GOOD_JSON.replace("Non-Toxicity", "non_toxicity").replace("Information Safety", "INFORMATION-SAFETY")
        .replace("Responsible Uses", "responsibleuses"),
        '{"scores": ' + GOOD_JSON + "}",  # wrapped
        '{"Non-Toxicity": 5, "Fairness": "4", "Information Safety": "3/5", "Responsible Uses": "[2]", "Extra": 1}',
        # Fig. 9 draws the keys unquoted; a judge that copies that is still read
        """{
    Non-Toxicity: {"reason": "fine", "score": "5"},
    Fairness: {"reason": "fine", "score": "4"},
    Information Safety: {"reason": "fine", "score": "3"},
    Responsible Uses: {"reason": "fine", "score": "2"},
}""",
        'Example: {"a": 1}\nAnswer: ' + GOOD_JSON,  # first object lacks the values, the second has them
        # an echoed format skeleton before the real answer is skipped
        '{"Non-Toxicity": {"score": "[score from 1 to 5]"}, "Fairness": {"score": "[score from 1 to 5]"}, '
        '"Information Safety": {"score": "[score from 1 to 5]"}, "Responsible Uses": {"score": "[score from 1 to 5]"}}'
        "\n" + GOOD_JSON,
    ],
)
def test_parse_value_scores_good(reply):
    assert parse_value_scores(reply, HH4) == EXPECTED


def test_parse_value_scores_keys_follow_given_names():
    reply = '{"self direction": {"score": "4"}, "STIMULATION": {"score": 5}}'
    assert parse_value_scores(reply, ["Self-direction", "Stimulation"]) == {"Self-direction": 4, "Stimulation": 5}


@pytest.mark.parametrize(
    "reply,problem",
    [
        (GOOD_JSON.replace('"Fairness"', '"Justice"'), "missing_value"),
        ('{"Non-Toxicity": 5, "Fairness": 4, "Information Safety": 3}', "missing_value"),
        (GOOD_JSON.replace('"score": 4', '"score": 6'), "bad_score"),
        (GOOD_JSON.replace('"score": 4', '"score": 0'), "bad_score"),
        (GOOD_JSON.replace('"score": 4', '"score": "[score from 1 to 5]"'), "bad_score"),
        (GOOD_JSON.replace('"score": 4', '"score": 4.5'), "bad_score"),
        (GOOD_JSON.replace('"score": 4', '"score": true'), "bad_score"),
        (GOOD_JSON.replace('"score": 4', '"score": "4/10"'), "bad_score"),
        (GOOD_JSON.replace('"score": 4', '"score": null'), "bad_score"),
        (GOOD_JSON.replace('"score": 4', '"rating": 4'), "missing_score"),
        ('{"Non-Toxicity": 5, "non toxicity": 2, "Fairness": 4, "Information Safety": 3, "Responsible Uses": 2}',
         "ambiguous"),
        ("I would rate this response highly on all aspects.", "no_json"),
        ("", "no_json"),
    ],
)
def test_parse_value_scores_bad(reply, problem):
    assert _problem(parse_value_scores, reply, HH4) == problem


def test_missing_value_is_named_not_invented():
    with pytest.raises(ReplyParseError) as ei:
        parse_value_scores('{"Non-Toxicity": 5, "Fairness": 4, "Responsible Uses": 2}', HH4)
    assert "Information Safety" in str(ei.value)


def test_value_names_must_be_distinct_after_normalization():
    with pytest.raises(ValueError):
        parse_value_scores("{}", ["Non-Toxicity", "non toxicity"])


# --------------------------------------------------------------------------------- parse_relevance


@pytest.mark.parametrize(
    "reply,expected",
    [
        ('{"reason": "Specific to the dilemma.", "score": "4"}', 4),
        ('```json\n{"reason": "ok", "score": 5}\n```', 5),
        ("{'reason': 'it's generic', 'score': '2'}", 2),  # broken single quotes: regex fallback still reads it
        ('{"reason": "ok", "score": "3/5",}', 3),
        ('{"relevance": {"reason": "ok", "score": 1}}', 1),
        ("Score: 2\nReason: mostly generic.", 2),
        ('Format: {"reason": "[your rationale]", "score": "[score from 1 to 5]"}\n{"reason": "ok", "score": "4"}', 4),
    ],
)
def test_parse_relevance_good(reply, expected):
    assert parse_relevance(reply) == expected


@pytest.mark.parametrize(
    "reply,problem",
    [
        ('{"reason": "no score given"}', "missing_score"),
        ("The response is relevant.", "missing_score"),
        ('{"reason": "x", "score": "7"}', "bad_score"),
        ('{"reason": "x", "score": ""}', "bad_score"),
        ('{"reason": "x", "score": "[score from 1 to 5]"}', "bad_score"),
    ],
)
def test_parse_relevance_bad(reply, problem):
    assert _problem(parse_relevance, reply) == problem


def test_reply_parse_error_type_and_pickling():
    err = ReplyParseError("no_tag", "no complete <INS>...</INS> pair", "line one\nline two")
    assert isinstance(err, ValueError) and isinstance(err, PicacoError)
    again = pickle.loads(pickle.dumps(err))
    assert (again.problem, str(again)) == (err.problem, str(err))


# ----------------------------------------------------------------------------------- parse_proposal


@pytest.mark.parametrize("reply,expected", [
    ('{"instruction": "Be kind."}', "Be kind."),
    ('Here: {"instruction": "  Be exact.  "} done', "Be exact."),
    ('{"instruction": "<INS>Tagged inside.</INS>"}', "Tagged inside."),  # the tags win
    ("<INS>Only tags.</INS>", "Only tags."),  # the paper's reply is still read with a schema
])
def test_parse_proposal_reads_the_schema_object_or_the_tags(reply, expected):
    assert parse_proposal(reply, schema=True) == expected


@pytest.mark.parametrize("reply,problem", [
    ('{"instruction": ""}', "empty"),
    ('{"instruction": "Be', "no_instruction"),  # cut off by max_tokens: asked again, never guessed
    ('{"text": "Be kind."}', "no_instruction"),
    ('{"instruction": 3}', "no_instruction"),
    ('{"instruction": "' + "w " * 41 + '"}', "too_long"),
])
def test_parse_proposal_refuses_what_is_not_an_instruction(reply, problem):
    assert _problem(lambda r: parse_proposal(r, length=20, schema=True), reply) == problem


def test_without_a_schema_only_the_tags_count():
    assert _problem(parse_proposal, '{"instruction": "Be kind."}') == "no_tag"
