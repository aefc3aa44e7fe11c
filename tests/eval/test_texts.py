"""Our baseline prompt files: versioned, and safe for any query text."""

from __future__ import annotations

from picaco.eval.texts import EVAL_TEMPLATE_DIGEST, EVAL_TEMPLATE_VERSION, EVAL_TEMPLATES, render

# Editing a file under picaco/eval/templates changes the digest: bump EVAL_TEMPLATE_VERSION (it is in
# every cache key) and record the new pair here.
PINNED = {"2025.1": "870ac14690171f5ef05b45afbfcec8910d85c508b6e832304947b50586889310"}


def test_template_files_are_pinned_to_their_version():
    assert PINNED.get(EVAL_TEMPLATE_VERSION) == EVAL_TEMPLATE_DIGEST


def test_query_text_is_inserted_verbatim():
    nasty = "Say {query} and {comments}\n# Answer:\n```\\1 <INS>x</INS>"
    out = render("modular_summary", comments="Comment 1:\nfine", query=nasty)
    assert out.endswith(f"# Query:\n{nasty}\n# Answer:\n")
    assert out.count("Comment 1:") == 1
    assert render("urial_user", query=nasty) == f"# Query:\n```\n{nasty}\n```\n\n# Answer:\n"
    assert render("jailbreak_standin", query=nasty).endswith(f"Request: {nasty}")


def test_jailbreak_template_is_a_labelled_stand_in():
    text = EVAL_TEMPLATES["jailbreak_standin"].text
    assert text.startswith("[STAND-IN ADVERSARIAL WRAPPER FOR TESTING - NOT A REAL JAILBREAK]")
    assert EVAL_TEMPLATES["jailbreak_standin"].slots == {"query"}
