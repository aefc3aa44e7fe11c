"""Task prompts X: the records the method optimizes on and the evaluation scores on."""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict

from picaco.base.errors import ConfigError


class TaskPrompt(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    prompt_id: str
    text: str


def prompt_id_of(text: str) -> str:
    """The id of a prompt that comes without one: the same for the same text in every file."""
    return hashlib.sha256(" ".join(text.split()).lower().encode()).hexdigest()[:16]


def select_task_prompts(rows: list[dict], offset: int, count: int, where: str, what: str) -> list[TaskPrompt]:
    """Rows offset..offset+count-1 of a prompt source (`where`) as TaskPrompts; `what` names the setting
    that asked for `count` in the error when the source is too short."""
    available = len(rows) - offset
    if available < count:
        raise ConfigError(f"{what}={count} but {where} holds only {max(0, available)} prompts after offset {offset}")
    out = []
    row_of: dict[str, int] = {}  # pools are keyed by prompt_id: two rows with one id would share a pool
    for row, r in enumerate(rows[offset:offset + count], start=offset + 1):  # rows counted from 1 in messages
        text = r.get("prompt")
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{where}: row {row} (counting from 1) has an empty prompt")
        given = r.get("prompt_id")
        prompt_id = str(given) if given else prompt_id_of(text)
        if prompt_id in row_of:
            same = "prompt_id" if given else "prompt text (and so the derived prompt_id)"
            raise ConfigError(f"{where}: rows {row_of[prompt_id]} and {row} (counting from 1) have the same {same} "
                              f"{prompt_id!r}: their pools would be merged")
        row_of[prompt_id] = row
        out.append(TaskPrompt(prompt_id=prompt_id, text=text))
    return out
