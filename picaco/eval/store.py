"""On-disk layout of an evaluation, `<out_dir>/<name>/`:

    results/<group>/<...>/<method>.json   one MethodRun per evaluated (composition, method[, variant])
    value_sets/hh_<n>.yaml                the growing HH compositions of Fig. 3
    responses.parquet/.csv                every response with its scores
    values.parquet/.csv                   per-value means by method (Tables 6-10)
    summary.parquet/.csv                  one row per method: conformity, CV, missing, calls, wall time
    report.md, figures/*.png              the report
    calls.jsonl                           the call log

A MethodRun carries the fingerprint of everything that decides its numbers; a re-run with the same
fingerprint is read back instead of recomputed (and a changed config recomputes only what changed).
Every file is written atomically.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from picaco.eval.metrics import ResponseRecord, Summary
from picaco.io import atomic_write_text


class MethodRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str
    group: str  # main | value_sets | jailbreak | optimizer_choice
    composition: str  # the composition's name
    composition_title: str
    method: str
    label: str  # as shown in tables, e.g. "PICACO" or "PICACO (gpt-4o)"
    variant: str | None = None
    fingerprint: str
    value_names: list[str]  # the judged values (may be more than the composition's, see judged_values)
    intended_values: list[str]  # the composition's own values
    relevance: bool
    prompts: dict[str, str]  # prompt_id -> text as sent (after any wrapper)
    info: dict
    responses: list[ResponseRecord]
    summary: Summary
    usage_by_role: dict[str, dict]
    wall_s: float

    def calls(self) -> dict[str, int]:
        """Totals over roles: client requests, provider calls, samples from the cache and fetched."""
        keys = ("requests", "calls", "samples_hit", "samples_miss", "prompt_tokens", "completion_tokens")
        return {k: sum(int(u.get(k, 0)) for u in self.usage_by_role.values()) for k in keys}


def fingerprint(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


class EvalStore:
    def __init__(self, eval_dir: Path) -> None:
        self.dir = Path(eval_dir)

    def result_path(self, key: str) -> Path:
        return self.dir / "results" / f"{key}.json"

    def load(self, key: str, expected_fingerprint: str | None = None) -> MethodRun | None:
        p = self.result_path(key)
        if not p.exists():
            return None
        run = MethodRun.model_validate_json(p.read_text(encoding="utf-8"))
        if expected_fingerprint is not None and run.fingerprint != expected_fingerprint:
            return None
        return run

    def save(self, run: MethodRun) -> Path:
        p = self.result_path(run.key)
        atomic_write_text(p, run.model_dump_json())
        return p
