"""A finished run, read from its run store (artifacts/runs/<run>/): its result, its config and where they
came from. A run that is missing, unfinished or damaged is one RunStateError line with the way out."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pydantic import ValidationError

from picaco.base.config import RunConfig
from picaco.base.errors import RunStateError
from picaco.method.result import OptimizeResult
from picaco.method.store import RunStore


@dataclass(frozen=True)
class FinishedRun:
    run_dir: Path
    result: OptimizeResult
    config: RunConfig
    fingerprint: str | None  # of every input's content (picaco.method.inputs), as config.json holds it
    config_sha256: str  # of the config record itself, canonical JSON
    result_date: str  # when result.json was written, UTC ISO 8601
    composition_record: dict  # the composition as config.json describes it (names, hashes)


def _validated(model, data, path: Path, recover: str):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise RunStateError(f"{path} is not a picaco run record ({where}: {first['msg']}); {recover}") from None


def load_finished_run(runs_dir: str | Path, name: str) -> FinishedRun:
    runs_dir = Path(runs_dir)
    run_dir = runs_dir / name
    if not run_dir.is_dir():
        known = sorted(p.parent.name for p in runs_dir.glob("*/config.json")) if runs_dir.is_dir() else []
        hint = f"runs there: {', '.join(known[:8])}" if known else "no runs there"
        raise RunStateError(f"no run '{name}' in {runs_dir} ({hint}); pass --runs-dir if it lives elsewhere")
    store = RunStore(run_dir)
    recover = f"run `picaco optimize` for run '{name}' to the end again (the cache answers the calls already made)"
    stored = store.load_json("config.json")
    if stored is None:
        raise RunStateError(f"run '{name}' in {run_dir} has no config.json: it was never started properly")
    if not isinstance(stored, dict) or not isinstance(stored.get("config"), dict):
        raise RunStateError(f"{run_dir / 'config.json'} is not a picaco run record (no 'config')")
    config = _validated(RunConfig, stored["config"], run_dir / "config.json", "the run cannot be used")
    raw = store.load_json("result.json")
    T_ = config.picaco.iterations
    if raw is None:
        raise RunStateError(f"run '{name}' is unfinished: no result.json in {run_dir} "
                            f"({store.last_complete_iteration()} of {T_} iterations complete); {recover}")
    result = _validated(OptimizeResult, raw, run_dir / "result.json", recover)
    last = result.history[-1].t if result.history else 0
    if last != T_:
        # config.json names the T of the last start: a run extended to more iterations and not yet
        # through them still holds the result of the shorter run
        raise RunStateError(f"run '{name}' is unfinished: result.json describes {last} iterations, the run was last "
                            f"started with {T_}; {recover}")
    canonical = json.dumps(stored["config"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    mtime = (run_dir / "result.json").stat().st_mtime
    return FinishedRun(
        run_dir=run_dir, result=result, config=config, fingerprint=stored.get("fingerprint"),
        config_sha256=hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        result_date=datetime.fromtimestamp(mtime, timezone.utc).isoformat(timespec="seconds"),
        composition_record=(stored.get("inputs") or {}).get("composition") or {})
