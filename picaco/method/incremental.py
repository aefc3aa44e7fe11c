"""Incremental re-optimization (picaco's extension; docs/method.md, "Incremental runs").

A run with `from_run: <earlier run>` starts where the earlier, finished run ended instead of at the
composition's seed: e^0 is the earlier run's best instruction and the earlier run's best candidates (up
to M2) are the first iteration's existing candidates, and iteration t samples in block T' + t (T' the
earlier run's T), so iteration 1 draws exactly the samples the earlier run's final report drew under that
instruction. Everything else is the new run's own: its
composition (a value added, removed or reweighted), its prompts, its settings. What is reused is what the
content-addressed cache already holds for identical requests: the E-step of t = 1 (the earlier final
report's samples of its best instruction), the seeds' p_e samples, the held-out samples of e^0 (the
earlier run's held-out samples of its best), the noisy
pool's raw samples, every embedding; with `picaco.judge_per_value` the judge scores of the values the two
compositions share (a Fig. 9 request over all values changes when a value is added, so without it every
judgement is asked again).

The earlier run is an input like any other: its name, the fingerprint of its inputs and the seeds taken
from it are part of this run's record, so a resume after the earlier run was extended or redone is refused.
This module reads the earlier run's files itself (not through RunStore, which imports the inputs).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from picaco.base.config import RunConfig
from picaco.base.errors import ConfigError
from picaco.method.state import IterationState, best_first


@dataclass(frozen=True)
class EarlierRun:
    name: str
    fingerprint: str
    values: list[str]
    seeds: tuple[str, ...]  # the earlier run's best instruction first, then its next-best candidates
    iterations: int  # T of the earlier run: this run's sampling blocks start after it

    def record(self) -> dict:
        """What this run's inputs record of it (config.json; a change is refused on resume)."""
        return {"name": self.name, "fingerprint": self.fingerprint, "values": self.values, "iterations": self.iterations,
                "seeds": [hashlib.sha256(s.encode("utf-8")).hexdigest()[:16] for s in self.seeds]}


def _read(path: Path, what: str, name: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"from_run: run '{name}' has no {what} ({path}); it must be a finished run") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"from_run: {path} cannot be read ({exc.__class__.__name__}); rerun '{name}'") from None
    if not isinstance(data, dict):
        raise ConfigError(f"from_run: {path} is not a picaco run record")
    return data


def load_earlier_run(config: RunConfig) -> EarlierRun | None:
    """The run named by config.from_run, checked: finished, in the same runs_dir, not this run."""
    name = config.from_run
    if name is None:
        return None
    if name == config.run_name:
        raise ConfigError(f"from_run: '{name}' is this run itself; name an earlier run (a from-run run is a new run)")
    run_dir = config.runs_dir / name
    if not run_dir.is_dir():
        raise ConfigError(f"from_run: no run '{name}' in {config.runs_dir}")
    stored = _read(run_dir / "config.json", "config.json", name)
    result = _read(run_dir / "result.json", "result.json", name)
    fingerprint, history = stored.get("fingerprint"), result.get("history")
    if not isinstance(fingerprint, str) or not isinstance(history, list) or not history:
        raise ConfigError(f"from_run: run '{name}' was written by an older picaco or has no history; rerun it")
    last_t = history[-1].get("t") if isinstance(history[-1], dict) else None
    path = run_dir / f"iter_{last_t:03d}.json" if isinstance(last_t, int) else run_dir / "iter_?.json"
    try:
        last = IterationState.model_validate(_read(path, f"iteration {last_t}", name))
    except ValidationError as exc:
        raise ConfigError(f"from_run: {path} is not an iteration record ({exc.errors()[0]['msg']})") from None
    best = result.get("best_instruction")
    if not isinstance(best, str) or not best.strip():
        raise ConfigError(f"from_run: {run_dir / 'result.json'} has no best_instruction")
    others = [c.instruction for c in best_first(last.candidates) if c.instruction != best]
    seeds = tuple([best] + others[:config.picaco.m2 - 1])
    values = list((stored.get("inputs") or {}).get("composition", {}).get("values", []))
    return EarlierRun(name=name, fingerprint=fingerprint, values=values, seeds=seeds, iterations=last.t)


def from_run_difference(old: dict | None, new: dict | None) -> str | None:
    """The phrase a refused resume gives when the earlier run differs."""
    if old == new:
        return None
    if old is None or new is None:
        return f"from_run {(old or {}).get('name')} -> {(new or {}).get('name')}"
    if old.get("name") != new.get("name"):
        return f"from_run {old.get('name')} -> {new.get('name')}"
    return (f"the earlier run '{new.get('name')}' (from_run) changed since this run started (its inputs or its "
            f"best instructions differ)")
