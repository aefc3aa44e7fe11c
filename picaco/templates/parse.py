"""Parsers for the replies to the Fig. 8 (optimizer), Fig. 9 (value judge) and Fig. 10 (relevance) prompts.

They are lenient about *form* (code fences, single quotes, trailing commas, "4" / 4 / "4/5", key spelling)
and strict about *content*: a score is only ever read from the reply, never guessed, and anything
missing or out of range raises `ReplyParseError` so that the caller can resample or fail loudly.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from typing import Any

from picaco.base.errors import PicacoError
from picaco.templates.render import DEFAULT_INSTRUCTION_WORDS

# An instruction longer than this many times the requested word limit is rejected (the optimizer
# ignored the limit or rambled); anything up to it is accepted as is, because models overshoot a little.
INSTRUCTION_LENGTH_FACTOR = 2.0

SCORE_MIN, SCORE_MAX = 1, 5


class ReplyParseError(PicacoError, ValueError):
    """A model reply could not be read. `problem` is a short code; the message is one line."""

    def __init__(self, problem: str, detail: str, reply: str) -> None:
        self.problem = problem
        self.detail = detail
        self.reply = reply
        excerpt = " ".join(reply.split())[:80]
        super().__init__(f"{problem}: {detail} (reply begins {excerpt!r})")

    def __reduce__(self):
        return (ReplyParseError, (self.problem, self.detail, self.reply))


def normalize_key(name: str) -> str:
    """Case-insensitive, ignoring spaces, hyphens and underscores: 'Non-Toxicity' == 'non_toxicity'."""
    return re.sub(r"[\s\-_]+", "", name).lower()


# ---------------------------------------------------------------------------------------------- <INS>

_INS = re.compile(r"<\s*ins\s*>((?:(?!<\s*ins\s*>).)*?)<\s*/\s*ins\s*>", re.IGNORECASE | re.DOTALL)
_FENCE = re.compile(r"^```[A-Za-z0-9_-]*\s*\n?(.*?)\n?```$", re.DOTALL)


def parse_instruction(reply: str, *, length: int = DEFAULT_INSTRUCTION_WORDS) -> str:
    """The text of the LAST complete <INS>...</INS> pair in the reply (tags case-insensitive).

    The last pair wins because optimizers sometimes quote an example instruction before giving their
    own. A pair is complete when it is closed and holds no other opening tag (so a stray or truncated
    "<INS>" never swallows text). Raises ReplyParseError when there is no complete pair ("no_tag"), the
    text is empty ("empty"), or it has more than INSTRUCTION_LENGTH_FACTOR x `length` words ("too_long").
    """
    if not isinstance(reply, str):
        raise ReplyParseError("not_text", f"reply must be a str, got {type(reply).__name__}", repr(reply))
    found = _INS.findall(reply)
    if not found:
        raise ReplyParseError("no_tag", "no complete <INS>...</INS> pair", reply)
    return _checked_instruction(found[-1], reply, length, "inside <INS>...</INS>")


def parse_proposal(reply: str, *, length: int = DEFAULT_INSTRUCTION_WORDS, schema: bool = False) -> str:
    """The optimizer's instruction: from the <INS> tags of Fig. 8, or, when the request carried the reply
    schema (`request.instruction_schema`), from its JSON object {"instruction": "..."}. The tags win when both
    are there (a model may write them inside the JSON string). Same checks as `parse_instruction`; a reply
    with neither is "no_tag" (with a schema: "no_instruction")."""
    if not schema or (isinstance(reply, str) and _INS.search(reply)):
        return parse_instruction(reply, length=length)
    text = None
    for span in reversed(_object_spans(reply)):
        obj = _load_object(span)
        if obj is not None and isinstance(obj.get("instruction"), str):
            text = obj["instruction"]
            break
    if text is None:
        raise ReplyParseError("no_instruction", 'neither <INS>...</INS> nor a JSON {"instruction": "..."}', reply)
    return _checked_instruction(text, reply, length, 'in {"instruction": ...}')


def _checked_instruction(text: str, reply: str, length: int, where: str) -> str:
    text = text.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    if not text:
        raise ReplyParseError("empty", f"the instruction {where} is empty", reply)
    words = len(text.split())
    limit = int(INSTRUCTION_LENGTH_FACTOR * length)
    if words > limit:
        raise ReplyParseError(
            "too_long", f"instruction has {words} words, over {limit} (2 x the {length}-word limit)", reply
        )
    return text


# ---------------------------------------------------------------------------------------------- JSON


def _object_spans(text: str) -> list[str]:
    """Top-level {...} spans in order; braces inside double-quoted strings do not count."""
    spans, depth, start, in_str, esc = [], 0, -1, False, False
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"' and depth > 0:
            in_str = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append(text[start : i + 1])
    return spans


_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_PY_LITERALS = {"true": "True", "false": "False", "null": "None"}


def _load_object(span: str) -> dict | None:
    """json, then json without trailing commas, then a Python literal (single quotes). None if all fail."""
    for attempt in (span, _TRAILING_COMMA.sub(r"\1", span)):
        try:
            obj = json.loads(attempt)
        except ValueError:
            continue
        return obj if isinstance(obj, dict) else None
    pyish = re.sub(r"\b(true|false|null)\b", lambda m: _PY_LITERALS[m.group(1)], span)
    try:
        obj = ast.literal_eval(pyish)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


_SCORE_STR = re.compile(r"^\s*\[?\s*(\d+(?:\.\d+)?)\s*(?:/\s*5(?:\.0+)?)?\s*\]?\s*$")


def _score(raw: Any, what: str, reply: str) -> int:
    if isinstance(raw, bool):
        raise ReplyParseError("bad_score", f"score for {what} is a boolean ({raw})", reply)
    if isinstance(raw, (int, float)):
        num = float(raw)
    elif isinstance(raw, str):
        m = _SCORE_STR.match(raw)
        if not m:
            raise ReplyParseError("bad_score", f"score for {what} is not a number 1-5: {raw!r}", reply)
        num = float(m.group(1))
    else:
        raise ReplyParseError("bad_score", f"score for {what} has type {type(raw).__name__}", reply)
    if num != int(num):
        raise ReplyParseError("bad_score", f"score for {what} is not a whole number: {raw!r}", reply)
    if not SCORE_MIN <= num <= SCORE_MAX:
        raise ReplyParseError("bad_score", f"score for {what} is outside 1-5: {raw!r}", reply)
    return int(num)


def _normalized(obj: dict) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for k, v in obj.items():
        out.setdefault(normalize_key(str(k)), []).append(v)
    return out


def _entry_score(entry: Any, what: str, reply: str) -> int:
    if isinstance(entry, dict):
        scores = _normalized(entry).get("score")
        if not scores:
            raise ReplyParseError("missing_score", f"entry for {what} has no 'score'", reply)
        return _single(scores, what, reply)
    return _score(entry, what, reply)


def _single(raws: list[Any], what: str, reply: str) -> int:
    scores = {_score(r, what, reply) for r in raws}
    if len(scores) > 1:
        raise ReplyParseError("ambiguous", f"{what} is given different scores {sorted(scores)}", reply)
    return scores.pop()


def _unwrap(obj: dict, keys: set[str]) -> dict:
    """Descend through single-key wrappers such as {"scores": {...}} until a wanted key shows up."""
    for _ in range(3):
        if keys & set(_normalized(obj)):
            return obj
        inner = [v for v in obj.values() if isinstance(v, dict)]
        if len(obj) != 1 or len(inner) != 1:
            return obj
        obj = inner[0]
    return obj


_SCORE_TOKEN = r"""["']?\s*\[?\s*(\d+(?:\.\d+)?)\s*(?:/\s*5(?:\.0+)?)?\s*\]?\s*["']?"""


def _name_pattern(name: str) -> str:
    flex = r"[\s\-_]*".join(re.escape(c) for c in normalize_key(name))
    return rf"(?<![A-Za-z0-9\-_]){flex}(?![A-Za-z0-9])"


def _regex_value_scores(reply: str, names: Sequence[str]) -> dict[str, list[str]]:
    """Last resort for near-JSON (e.g. unquoted keys as drawn in Fig. 9): 'Name': {... "score": 4 ...}
    or 'Name': 4. Only reads numbers that are written next to the value's name."""
    found: dict[str, list[str]] = {}
    for n in names:
        key = rf"""["']?{_name_pattern(n)}["']?\s*:\s*"""
        nested = re.compile(key + r"""\{[^{}]*?["']?score["']?\s*:\s*""" + _SCORE_TOKEN, re.IGNORECASE)
        flat = re.compile(key + _SCORE_TOKEN + r"(?=\s*[,}\n]|\s*$)", re.IGNORECASE)
        hits = nested.findall(reply) or flat.findall(reply)
        if hits:
            found[n] = hits
    return found


def parse_value_scores(reply: str, value_names: Sequence[str]) -> dict[str, int]:
    """Fig. 9 reply -> {value name (as given): score 1-5}.

    Reads the first {...} object in the reply that holds every value with valid scores (an echoed format
    skeleton before the answer is skipped; fences, single quotes and trailing commas are tolerated).
    Entries may be {"reason": ..., "score": "4"} or a bare score. Keys match the value names
    case-insensitively, ignoring spaces, hyphens and underscores; extra keys are ignored.
    Raises ReplyParseError when a value is missing, a score is not a whole number in 1-5, or a value is
    given two different scores.
    """
    if not isinstance(reply, str):
        raise ReplyParseError("not_text", f"reply must be a str, got {type(reply).__name__}", repr(reply))
    names = [v if isinstance(v, str) else v.name for v in value_names]
    if not names:
        raise ValueError("value_names is empty")
    wanted = {normalize_key(n): n for n in names}
    if len(wanted) != len(names):
        raise ValueError(f"value_names has names that collide after normalization: {names}")

    best_missing: list[str] | None = None
    first_error: ReplyParseError | None = None
    parsed_any = False
    for span in _object_spans(reply):
        obj = _load_object(span)
        if obj is None:
            continue
        parsed_any = True
        table = _normalized(_unwrap(obj, set(wanted)))
        missing = [n for k, n in wanted.items() if k not in table]
        if missing:
            if best_missing is None or len(missing) < len(best_missing):
                best_missing = missing
            continue
        try:
            return {n: _single([_entry_score(e, n, reply) for e in table[k]], n, reply) for k, n in wanted.items()}
        except ReplyParseError as e:
            # e.g. the judge echoed the format skeleton before its answer: look on, report this if nothing fits
            first_error = first_error or e
    if first_error is not None:
        raise first_error

    hits = _regex_value_scores(reply, names)
    if len(hits) == len(names):
        return {n: _single(hits[n], n, reply) for n in names}
    if not parsed_any and not hits:
        raise ReplyParseError("no_json", "no readable JSON object with scores", reply)
    options = [m for m in (best_missing, [n for n in names if n not in hits] if hits else None) if m]
    missing = min(options, key=len) if options else names
    raise ReplyParseError("missing_value", f"no score for {', '.join(missing)}", reply)


_SCORE_FIELD = re.compile(r"""["']?\bscore["']?\s*:\s*""" + _SCORE_TOKEN, re.IGNORECASE)


def parse_relevance(reply: str) -> int:
    """Fig. 10 reply {"reason": ..., "score": "4"} -> 4: the first object with a valid score, else a
    `score: N` written in the text. Raises ReplyParseError if no score 1-5 is given."""
    if not isinstance(reply, str):
        raise ReplyParseError("not_text", f"reply must be a str, got {type(reply).__name__}", repr(reply))
    first_error: ReplyParseError | None = None
    for span in _object_spans(reply):
        obj = _load_object(span)
        if obj is None:
            continue
        table = _normalized(_unwrap(obj, {"score"}))
        if "score" in table:
            try:
                return _single(table["score"], "relevance", reply)
            except ReplyParseError as e:  # an echoed skeleton may come before the answer
                first_error = first_error or e
    if first_error is not None:
        raise first_error
    hits = _SCORE_FIELD.findall(reply)
    if hits:
        return _single(hits, "relevance", reply)
    raise ReplyParseError("missing_score", "no relevance score found", reply)
