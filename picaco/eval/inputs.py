"""Inputs of an evaluation: prompt sets, URIAL's prompt file, the jailbreak template."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from picaco.base.errors import ConfigError
from picaco.base.prompts import TaskPrompt, select_task_prompts
from picaco.eval.config import PromptSet
from picaco.eval.texts import EVAL_TEMPLATES
from picaco.io import read_prompt_table
from picaco.templates.render import Template, TemplateError
from picaco.values import load_demo_prompts


def normalized(text: str) -> str:
    return " ".join(text.split()).lower()


def load_prompt_set(spec: PromptSet, kind: str, *, composition: str = "", default_offset: int = 0,
                    what: str = "prompts") -> list[TaskPrompt]:
    """The prompts of `spec` for a composition of `kind` ('hh' | 'schwartz'). A `{composition}` in the
    path is replaced by the composition's name (datasets_prep writes <out>/<composition>/test.parquet)."""
    if spec.path is not None:
        path = Path(str(spec.path).replace("{composition}", composition))
        rows, where = read_prompt_table(path), str(path)
    else:
        family = kind if spec.family == "auto" else spec.family
        rows, where = load_demo_prompts(family=family), f"bundled demo prompts ({family})"
    offset = default_offset if spec.offset is None else spec.offset
    return select_task_prompts(rows, offset, spec.count, where, f"{what}.count")


def check_disjoint(test: list[TaskPrompt], optimization: list[TaskPrompt], where: str) -> None:
    """The test set must be held out from the optimization set (App. C.2 evaluates on a separate test set)."""
    seen = {normalized(p.text) for p in optimization}
    shared = [p.prompt_id for p in test if normalized(p.text) in seen]
    if shared:
        raise ConfigError(f"{where}: {len(shared)} test prompts are also in the optimization set "
                          f"(e.g. {shared[0]}); move prompts.offset past the optimization prompts")


# -- URIAL ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UrialPrompt:
    instruction: str  # everything before the first '# Query:' (with its '# Instruction' heading)
    demonstrations: tuple[tuple[str, str], ...]  # URIAL's own (query, answer) pairs
    source: str


_FENCED = re.compile(r"^#\s*Query:\s*```(.*?)```\s*#\s*Answer:\s*```(.*?)```", re.DOTALL | re.MULTILINE)


def parse_urial_prompt(text: str, source: str) -> UrialPrompt:
    # the meta-instruction itself mentions "# Query:" in running text; a block starts on a line of its own
    first = re.search(r"^#\s*Query:\s*$", text, re.MULTILINE)
    if first is None:
        raise ConfigError(f"URIAL prompt {source}: no '# Query:' block found (is this a URIAL prompt file?)")
    instruction = text[:first.start()].strip()
    if not instruction:
        raise ConfigError(f"URIAL prompt {source}: the meta-instruction before the first '# Query:' is empty")
    demos = tuple((q.strip(), a.strip()) for q, a in _FENCED.findall(text) if q.strip() and a.strip())
    if not demos:
        raise ConfigError(f"URIAL prompt {source}: no '# Query:' / '# Answer:' blocks in triple backticks")
    return UrialPrompt(instruction, demos, source)


def load_urial_prompt(location: str, timeout_s: float = 30.0) -> UrialPrompt:
    """Read URIAL's prompt from a path or an http(s) URL (never copied into the project)."""
    if re.match(r"^https?://", location):
        import httpx

        try:
            r = httpx.get(location, timeout=timeout_s, follow_redirects=True)
            r.raise_for_status()
        except httpx.HTTPError as exc:
            raise ConfigError(f"urial.prompt: cannot fetch {location}: {exc}; point urial.prompt at a local "
                              "copy of URIAL's inst_1k_v4.txt") from None
        return parse_urial_prompt(r.text, location)
    path = Path(location)
    if not path.is_file():
        raise ConfigError(f"urial.prompt: file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"urial.prompt: cannot read {path}: {exc}") from None
    return parse_urial_prompt(text, str(path))


# -- the jailbreak wrapper -------------------------------------------------------------------------------
def load_jailbreak_template(path: Path | None) -> Template:
    if path is None:
        return EVAL_TEMPLATES["jailbreak_standin"]
    if not path.is_file():
        raise ConfigError(f"analyses.jailbreak.template: file {path} does not exist")
    tpl = Template("jailbreak", path.read_text(encoding="utf-8").rstrip("\n"))
    if tpl.slots != {"query"}:
        raise ConfigError(f"analyses.jailbreak.template: {path} must have exactly the slot {{query}}, "
                          f"found {sorted(tpl.slots) or 'none'}")
    return tpl


def wrap_prompts(prompts: list[TaskPrompt], template: Template) -> list[TaskPrompt]:
    try:
        return [TaskPrompt(prompt_id=p.prompt_id, text=template.render(query=p.text)) for p in prompts]
    except TemplateError as exc:
        raise ConfigError(f"analyses.jailbreak.template: {exc}") from None
