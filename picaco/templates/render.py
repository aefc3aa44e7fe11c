"""The paper's prompt templates (Figs. 7-10, App. C.3) as text files, and a renderer that is safe for any text.

Rendering is one pass of named-slot substitution over the *template* text only: a slot is `{name}` with a
lower-case identifier, each match is replaced by a function (so backslashes in values are never read as
regex escapes), and the substituted values are never scanned again. A query that contains `{query}`,
`{braces}`, "# Answer:" or "<INS>" therefore lands in the prompt exactly as written and cannot open a slot
or change the template around it. Literal braces in the templates (the JSON skeletons) are not slots
because a slot name must start with a lower-case letter right after the brace.

Every template file has exactly one trailing newline removed when it is read (editors add one); a file
that must end in a newline, like `e_step_user.txt`, therefore ends in an empty line.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Protocol

# Callers put this into every cache key of a call whose prompt comes from these templates. Bump it
# whenever a template file changes; tests/templates/test_render.py pins the digest of this version.
TEMPLATE_VERSION = "2025.2"

DEFAULT_INSTRUCTION_WORDS = 150  # Fig. 8 "{length}": the paper gives no number; ours, configurable

_SLOT = re.compile(r"\{([a-z][a-z0-9_]*)\}")


class TemplateError(ValueError):
    """A template was rendered with a missing, unknown or non-string slot value."""


# Duck types, so that picaco.values can import this module without a cycle.
class _ValueLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def definition(self) -> str: ...


class _DemoLike(Protocol):
    @property
    def query(self) -> str: ...
    @property
    def answer(self) -> str: ...


@dataclass(frozen=True)
class Template:
    name: str
    text: str

    @property
    def slots(self) -> frozenset[str]:
        return frozenset(_SLOT.findall(self.text))

    def render(self, **values: str) -> str:
        missing = self.slots - values.keys()
        unknown = values.keys() - self.slots
        if missing or unknown:
            raise TemplateError(
                f"template {self.name!r}: missing slots {sorted(missing)}, unknown slots {sorted(unknown)}"
            )
        for key, val in values.items():
            if not isinstance(val, str):
                raise TemplateError(f"template {self.name!r}: slot {key!r} must be a str, got {type(val).__name__}")
        # A function replacement: the value is inserted verbatim and re.sub never rescans it.
        return _SLOT.sub(lambda m: values[m.group(1)], self.text)


def _read(name: str) -> str:
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    return text[:-1] if text.endswith("\n") else text


def _template_files() -> list[str]:
    return sorted(p.name for p in resources.files(__package__).iterdir() if p.name.endswith(".txt"))


TEMPLATES: dict[str, Template] = {
    name[: -len(".txt")]: Template(name[: -len(".txt")], _read(name))
    for name in _template_files()
    if name != "m_step_techniques.txt"
}

# sha256 over every template file (name + bytes); lets tests catch an edit without a version bump.
TEMPLATE_DIGEST = hashlib.sha256(
    b"".join(
        n.encode() + b"\0" + resources.files(__package__).joinpath(n).read_bytes() + b"\0"
        for n in _template_files()
    )
).hexdigest()


def _load_techniques() -> tuple[str, ...]:
    lines = (ln.strip() for ln in _read("m_step_techniques.txt").splitlines())
    return tuple(ln for ln in lines if ln and not ln.startswith("#"))


TECHNIQUES: tuple[str, ...] = _load_techniques()

JUDGE_VARIANTS: tuple[str, ...] = ("quality", "harm", "values")


def join_names(names: Sequence[str]) -> str:
    """'A', 'A and B', 'A, B, and C' -- the list style of Table 3."""
    names = list(names)
    if not names:
        raise TemplateError("at least one value name is needed")
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"{names[0]} and {names[1]}"
    return ", ".join(names[:-1]) + f", and {names[-1]}"


def _text(what: str, val: object, *, allow_empty: bool = False) -> str:
    if not isinstance(val, str):
        raise TemplateError(f"{what} must be a str, got {type(val).__name__}")
    if not allow_empty and not val.strip():
        raise TemplateError(f"{what} is empty")
    return val


def _value_names(values: Sequence[_ValueLike]) -> list[str]:
    if not values:
        raise TemplateError("at least one value is needed")
    return [_text("value name", v.name) for v in values]


def _demos_block(demos: Sequence[_DemoLike]) -> str:
    if not demos:
        raise TemplateError("at least one demonstration is needed")
    tpl = TEMPLATES["demonstration"]
    return "\n".join(
        tpl.render(query=_text("demonstration query", d.query), answer=_text("demonstration answer", d.answer))
        for d in demos
    )


def _aspects(values: Sequence[_ValueLike]) -> str:
    tpl = TEMPLATES["value_judge_aspect"]
    return "\n".join(
        tpl.render(name=_text("value name", v.name), definition=_text("value definition", v.definition))
        for v in values
    )


def render_query(query: str) -> str:
    """The wrapped query of Fig. 7's user prompt: '# Query:\\n{query}\\n# Answer:\\n'."""
    return TEMPLATES["e_step_user"].render(query=_text("query", query, allow_empty=True))


def render_e_step(instruction: str, demos: Sequence[_DemoLike], query: str) -> tuple[str, str]:
    """Fig. 7: (system, user). System = header + meta-instruction + the sampled demonstrations.

    With no demonstrations (how picaco samples p_e(y|x) for a candidate, see docs/method.md) the system
    prompt is the header and the meta-instruction alone."""
    system = TEMPLATES["e_step_system"].render(
        meta_instruction=_text("instruction", instruction),
        demonstrations=_demos_block(demos) if demos else "",
    )
    return (system if demos else system.rstrip("\n")), render_query(query)


def render_m_step(
    values: Sequence[_ValueLike],
    demos: Sequence[_DemoLike],
    ranked: Sequence[str],
    technique: str,
    length: int = DEFAULT_INSTRUCTION_WORDS,
) -> tuple[str, str]:
    """Fig. 8: (system, user). `ranked` = [poor, fair, okay, good], lowest TC_e first.

    Exactly four instructions are needed; when fewer distinct ones exist (the first iteration), the
    caller decides how to fill the slots (e.g. repeat the best), so that policy stays in the method code.
    """
    if isinstance(ranked, str) or len(ranked) != 4:
        got = "a str" if isinstance(ranked, str) else f"{len(ranked)}"
        raise TemplateError(f"ranked must hold 4 instructions [poor, fair, okay, good], got {got}")
    if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
        raise TemplateError(f"length must be a positive int (words), got {length!r}")
    poor, fair, okay, good = (_text(f"ranked[{i}]", r) for i, r in enumerate(ranked))
    user = TEMPLATES["m_step_user"].render(
        intended_values=join_names(_value_names(values)),
        demonstrations=_demos_block(demos),
        technique=_text("technique", technique).strip(),
        poor=poor.strip(),
        fair=fair.strip(),
        okay=okay.strip(),
        good=good.strip(),
        length=str(length),
    )
    return TEMPLATES["m_step_system"].text, user


def render_value_judge(values: Sequence[_ValueLike], variant: str, query: str, response: str) -> str:
    """Fig. 9 as the judge's user prompt; `variant` picks the quality/harm/values wording."""
    if variant not in JUDGE_VARIANTS:
        raise TemplateError(f"judge variant must be one of {list(JUDGE_VARIANTS)}, got {variant!r}")
    names = _value_names(values)
    entry = TEMPLATES["value_judge_json_entry"]
    json_format = "{\n" + ",\n".join(entry.render(name=n) for n in names) + "\n}"
    return TEMPLATES[f"value_judge_{variant}"].render(
        intended_values=join_names(names),
        query=_text("query", query, allow_empty=True),
        response=_text("response", response, allow_empty=True),
        aspects=_aspects(values),
        json_format=json_format,
    )


def render_relevance_judge(query: str, response: str) -> str:
    """Fig. 10 as the judge's user prompt."""
    return TEMPLATES["relevance_judge"].render(
        query=_text("query", query, allow_empty=True), response=_text("response", response, allow_empty=True)
    )


def render_cot_turns(instruction: str, values: Sequence[_ValueLike], query: str) -> tuple[str, str, str]:
    """Q+IF+CoT (App. C.3): (system = meta-instruction, turn-1 user, turn-2 user).

    The caller sends turn 1, appends the model's reply as an assistant message, then sends turn 2.
    """
    turn1 = TEMPLATES["cot_turn1"].render(
        query=_text("query", query, allow_empty=True), intended_values=join_names(_value_names(values))
    )
    return _text("instruction", instruction), turn1, TEMPLATES["cot_turn2"].text


def urial_schwartz_instruction(values: Sequence[_ValueLike] | Sequence[str]) -> str:
    """The URIAL meta-instruction as modified for Schwartz compositions (App. C.3)."""
    names = [v if isinstance(v, str) else v.name for v in values]
    if not names:
        raise TemplateError("at least one value is needed")
    return TEMPLATES["urial_schwartz"].render(intended_values=join_names(names))


def schwartz_seed_instruction(names: Sequence[str]) -> str:
    """Table 3: 'You should always provide responses that reflect the values of A, B, C, and D.'"""
    return TEMPLATES["seed_schwartz"].render(intended_values=join_names(names))


def render_value_elaboration(values: Sequence[_ValueLike]) -> str:
    """Our wording (not the paper's) for App. C.1's S: ask the target model to elaborate on the values."""
    return TEMPLATES["value_elaboration"].render(
        intended_values=join_names(_value_names(values)), aspects=_aspects(values)
    )
