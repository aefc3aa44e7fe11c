"""Draft demonstrations for a new value composition with an LLM, for a person to review.

The paper's demonstrations were "initially drafted by GPT-4o and then manually refined" (App. C.1).
This drafts the first half: one answer per query that should embody every value while staying specific
to the query. The output YAML is marked as a draft; nothing loads it as a composition until the user has
reviewed it and added the usual fields (name, kind, beta, seed_instruction).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import yaml

from picaco.base.config import ClientConfig
from picaco.base.errors import ConfigError, PicacoError
from picaco.io import atomic_write_text, check_output_path
from picaco.llm.client import LLMClient
from picaco.llm.request import ChatRequest
from picaco.templates.render import Template
from picaco.values import get_value

# Ours, not the paper's: the paper does not publish the prompt its demonstrations were drafted with.
DRAFT_PROMPT = Template("draft_demonstration", (
    "You are helping to write demonstrations that show an assistant how to answer while embodying these "
    "values together:\n{values_block}\n\n"
    "Answer the query below in 80 to 160 words. Embody every value through what the answer actually "
    "recommends or says about this particular situation; do not name the values, do not explain them in "
    "general terms, and where values pull in different directions, integrate them rather than picking "
    "one.\n\n# Query:\n{query}\n# Answer:\n"))
DRAFT_VERSION = "draft-1"


def render_draft_prompt(values: Sequence, query: str) -> str:
    block = "\n".join(f"- {v.name}: {v.definition}" for v in values)
    return DRAFT_PROMPT.render(values_block=block, query=query)


async def draft_demonstrations(client: LLMClient, model: str, values: Sequence, queries: Sequence[str],
                               seed: int = 0, temperature: float = 0.7) -> list[dict]:
    if not queries:
        raise ConfigError("draft-demos: no queries given")
    requests = [ChatRequest.of(model, None, render_draft_prompt(values, q), role="other", seed=seed,
                               temperature=temperature, max_tokens=400, key_extra={"prompt": DRAFT_VERSION})
                for q in queries]
    replies = await asyncio.gather(*[client.chat(r, n=1) for r in requests])
    return [{"query": q, "answer": r.text.strip()} for q, r in zip(queries, replies)]


def write_draft(path: Path, values: Sequence, drafts: list[dict], model: str) -> None:
    empty = [d["query"] for d in drafts if not d["answer"]]
    doc = {
        "draft": f"DRAFTED BY {model}: review and edit every answer before using it as demonstrations",
        "values": [v.name for v in values],
        "demonstrations": drafts,
    }
    if empty:
        doc["empty_answers"] = empty
    try:
        atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100))
    except PicacoError:
        raise  # already the one line to show
    except OSError as err:
        raise PicacoError(f"cannot write {path}: {err.strerror or err}") from None


def read_queries(path: Path) -> list[str]:
    if path.is_dir():
        raise ConfigError(f"queries file {path} is a folder, not a text file")
    if not path.is_file():
        raise ConfigError(f"queries file {path} does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ConfigError(f"queries file {path} is not UTF-8 text") from None
    queries = [line.strip() for line in lines if line.strip()]
    if not queries:
        raise ConfigError(f"queries file {path} is empty")
    return queries


def draft_to_file(value_names: str, queries_path: Path, model: str, out: Path, *, cache_dir: Path,
                  seed: int = 0) -> int:
    """`picaco draft-demos`: every input is checked before the first call is paid for; returns the count."""
    values = [get_value(name.strip()) for name in value_names.split(",") if name.strip()]
    if not values:
        raise ConfigError("--values names no value")
    queries = read_queries(queries_path)
    check_output_path(out, "--out", folder=False)

    async def run() -> list[dict]:
        async with LLMClient(ClientConfig(cache_dir=cache_dir)) as client:
            return await draft_demonstrations(client, model, values, queries, seed=seed)

    drafts = asyncio.run(run())
    write_draft(out, values, drafts, model)
    return len(drafts)
