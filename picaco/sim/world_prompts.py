"""Reading the paper's prompts as the value world sees them: demonstrations, sentences, judge prompts.

Shared by the roles of picaco.sim.world and the optimizer of picaco.sim.world_optimizer.
"""

from __future__ import annotations

import re

SENT_SPLIT = re.compile(r"(?<=[.!?])\s+")


def strip_fences(text: str) -> str:
    lines = [ln for ln in text.splitlines() if not ln.strip().startswith("```")]
    return "\n".join(lines).strip()


def qa_blocks(lines: list[str]) -> list[tuple[str, str]]:
    """'# Query:' / '# Answer:' blocks (each marker on a line of its own) -> [(query, answer)]."""
    out: list[tuple[str, str]] = []
    q: list[str] | None = None
    a: list[str] | None = None
    for ln in lines:
        s = ln.strip()
        if s == "# Query:":
            if q is not None and a is not None:
                out.append((strip_fences("\n".join(q)), strip_fences("\n".join(a))))
            q, a = [], None
        elif s == "# Answer:" and q is not None and a is None:
            a = []
        elif a is not None:
            a.append(ln)
        elif q is not None:
            q.append(ln)
    if q is not None and a is not None:
        out.append((strip_fences("\n".join(q)), strip_fences("\n".join(a))))
    return [(x, y) for x, y in out if y]


def cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


def join_names(items: list[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    return ", ".join(items[:-1]) + f", and {items[-1]}"


_ENUM = re.compile(r"^(?:\s*(?:\d+[.)]|[-*\u2022])(?=\s|$))+\s*")


def sentences(text: str) -> list[str]:
    """Sentences of an instruction, without list numbering or bullets."""
    out = []
    for line in text.splitlines():
        for s in SENT_SPLIT.split(line):
            s = _ENUM.sub("", s).strip()
            if s and any(ch.isalpha() for ch in s):
                out.append(s)
    return out


def _between(text: str, start: str, end: str | None, *, last_end: bool = False) -> str:
    i = text.find(start)
    if i < 0:
        return ""
    i += len(start)
    if end is None:
        return text[i:]
    j = text.rfind(end) if last_end else text.find(end, i)
    return text[i:j] if j >= i else text[i:]


def parse_value_judge(text: str) -> tuple[str, str, list[tuple[str, str]], bool]:
    query = _between(text, "## Instruction:", "## Output:").strip()
    eval_at = text.rfind("## Evaluation")
    out_at = text.find("## Output:")
    response = text[out_at + len("## Output:"): eval_at].strip() if 0 <= out_at < eval_at else ""
    aspects_block = _between(text[eval_at:] if eval_at >= 0 else text, "### Aspects", "### Format")
    aspects = []
    for ln in aspects_block.splitlines():
        m = re.match(r"^\s*-\s*([^:]{1,60}):\s*(.*)$", ln)
        if m:
            aspects.append((m.group(1).strip(), m.group(2).strip()))
    return query, response, aspects, harm_scale(text)


_STATED_TOP = re.compile(r"\b5\s*=\s*(not\b[^,;)]*|[^,;)]*harm)", re.IGNORECASE)


def harm_scale(text: str) -> bool:
    """Whether a judge prompt asks for harm (5 = harmful) rather than conformity (5 = best). A stated scale
    decides ("5 = extremely harmful" -> harm; "5 = not harmful at all" -> conformity); without one, the
    wording "rate the harm" is read as harm, as Fig. 9 intends."""
    stated = _STATED_TOP.search(text)
    if stated:
        return not stated.group(1).lower().startswith("not")
    return bool(re.search(r"rate the harm\b", text, re.IGNORECASE))


def parse_relevance_judge(text: str) -> tuple[str, str]:
    q_at = text.find("# Query:")
    r_at = text.find("# Response:", q_at + 1 if q_at >= 0 else 0)
    tail = text.rfind("Output your score")
    query = text[q_at + len("# Query:"): r_at].strip() if 0 <= q_at < r_at else ""
    end = tail if tail > r_at else len(text)
    response = text[r_at + len("# Response:"): end].strip() if r_at >= 0 else ""
    return query, response
