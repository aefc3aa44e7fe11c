"""Text normalization, stable prompt ids, kind inference and the cheap English heuristic.

Everything here is pure and deterministic: no locale, no hash salting, no network models.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

# NFKC leaves typographic quotes and dashes alone; fold them so that "don’t" and "don't" get one id.
_FOLD = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2033": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u00a0": " ",
    }
)
_WS = re.compile(r"\s+")
_WORD = re.compile(r"\w+")
_LATIN_WORD = re.compile(r"[a-z']+")

# A small closed list of very frequent English function words. A text of several words that contains
# none of them is almost never English.
ENGLISH_STOPWORDS = frozenset(
    """a about after all also am an and any are as at be because been before being but by can could did
    do does doing for from had has have he her here him his how i if in into is it its just me more most
    my no not now of on one or other our out over she should so some such than that the their them then
    there these they this those through to too under up very was we were what when where which while who
    whom why will with would you your""".split()
)


def clean_prompt(text: str) -> str:
    """The prompt as stored: the source text with surrounding whitespace removed, inner text untouched."""
    return text.strip()


def normalize_text(text: str) -> str:
    """Canonical form used for ids and exact de-duplication: NFKC, casefold, folded quotes, one space."""
    folded = unicodedata.normalize("NFKC", text).translate(_FOLD).casefold()
    return _WS.sub(" ", folded).strip()


def prompt_id(text: str) -> str:
    """Stable 16-hex-digit id of a prompt: sha256 of its normalized text (so case/spacing variants share it)."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()[:16]


def tokens(text: str) -> list[str]:
    """Word tokens of the normalized text (punctuation dropped), used by the near-duplicate pass."""
    return _WORD.findall(normalize_text(text))


def infer_kind(text: str) -> str:
    """'question' when the prompt ends with a question mark, otherwise 'instruction'."""
    return "question" if text.rstrip().endswith("?") else "instruction"


def looks_english(text: str, *, min_ascii_letter_share: float, min_words_for_stopwords: int = 6) -> bool:
    """Cheap English check: mostly ASCII letters, and a longer text has at least one English stopword.

    Scripts other than Latin fail the ASCII share; Latin-script languages (French, Spanish, German...) in
    texts of `min_words_for_stopwords` words or more fail the stopword test. Short texts pass on the share
    alone, so a stem like "My duty is" is kept.
    """
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    ascii_share = sum(1 for c in letters if c.isascii()) / len(letters)
    if ascii_share < min_ascii_letter_share:
        return False
    words = _LATIN_WORD.findall(text.lower())
    if len(words) >= min_words_for_stopwords:
        return any(w.strip("'") in ENGLISH_STOPWORDS for w in words)
    return True
