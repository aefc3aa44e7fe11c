"""Prompt text of the baselines that the paper does not print, kept as files in picaco/eval/templates.

Each file is *our* wording (see docs/evaluation.md, "Choices where the paper is vague"); the paper's own
templates (Figs. 7-10, Q+IF+CoT, URIAL for Schwartz) come from picaco.templates. Rendering uses the
same single-pass, never-rescanned slot substitution as picaco.templates, so a query containing
`{query}` or `# Answer:` lands in the prompt exactly as written.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from picaco.templates.render import Template

# Goes into the cache key of every call whose prompt is rendered from these files (with
# picaco.templates.TEMPLATE_VERSION); bump it when a file changes.
EVAL_TEMPLATE_VERSION = "2025.1"


def _read(name: str) -> str:
    text = resources.files("picaco.eval").joinpath("templates", name).read_text(encoding="utf-8")
    return text[:-1] if text.endswith("\n") else text


def _names() -> list[str]:
    folder = resources.files("picaco.eval").joinpath("templates")
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".txt"))


EVAL_TEMPLATES: dict[str, Template] = {n[:-4]: Template(n[:-4], _read(n)) for n in _names()}

EVAL_TEMPLATE_DIGEST = hashlib.sha256(b"".join(
    n.encode() + b"\0" + resources.files("picaco.eval").joinpath("templates", n).read_bytes() + b"\0"
    for n in _names())).hexdigest()


def render(name: str, **slots: str) -> str:
    return EVAL_TEMPLATES[name].render(**slots)
