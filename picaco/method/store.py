"""The run store: one directory per run, each step's state in its own JSON file.

Layout of `artifacts/runs/<run>/`:
    config.json            the config and the fingerprint of every input's content (picaco.method.inputs)
    .lock                  taken while a start checks or creates config.json
    noisy.json             R^n and S (written once)
    iter_003.estep.json    R^a after the E-step of iteration 3
    iter_003.json          the complete iteration 3: pools, candidates with TC_e, e^3, usage by role
    result.json/.md        the best instruction with its per-value scores
    calls.jsonl            the call log of every step

Each file is written atomically, after its step finished. A start takes the directory's lock, then
either creates config.json or checks the inputs against it, so two starts with different inputs can
never both go on; the same inputs twice is fine (the processes share the cache).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from picaco.base.config import RunConfig
from picaco.base.errors import ConfigError, RunStateError
from picaco.io import atomic_write_json, atomic_write_text, write_error
from picaco.method.inputs import RunInputs, input_differences
from picaco.method.state import EStepState, IterationState, NoisyState

STORE_FORMAT = 2  # 1 (no "format" key): config.json held a hash of the config only, not of the inputs' content
T = TypeVar("T", bound=BaseModel)


class RunStore:
    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir)

    def path(self, name: str) -> Path:
        return self.dir / name

    # -- config.json: which inputs this directory belongs to -------------------------------------------
    def start(self, config: RunConfig, inputs: RunInputs) -> None:
        """Create the run, or check that a resume has the inputs it was started with. Under the lock, so
        that of two simultaneous starts with different inputs exactly one goes on."""
        with self._locked():
            stored = self._stored_config(config)
            if stored is None:
                started = sorted(p.name for p in self.dir.glob("*.json"))
                if started:
                    raise RunStateError(
                        f"run '{config.run_name}' in {self.dir} has state files ({', '.join(started[:3])}) but no "
                        f"config.json, so its inputs cannot be checked: delete the folder (the cache answers the "
                        f"calls already made) or choose another run_name")
            else:
                self._check_inputs(config, inputs, stored)
                if stored["config"] == config.model_dump(mode="json"):
                    return  # nothing new to record
            # the config is rewritten when only T changed, so config.json names the T of the last start
            atomic_write_json(self.path("config.json"), {
                "format": STORE_FORMAT, "fingerprint": inputs.fingerprint, "inputs": inputs.record,
                "sources": inputs.sources, "config": config.model_dump(mode="json")})

    def verify(self, config: RunConfig, inputs: RunInputs) -> None:
        """A step's check (read-only): the run was started, and with these inputs."""
        stored = self._stored_config(config)
        if stored is None:
            raise RunStateError(f"run '{config.run_name}' has not been started in {self.dir} (no config.json): "
                                "run `picaco optimize` or the noisy-pool step first")
        self._check_inputs(config, inputs, stored)

    def _stored_config(self, config: RunConfig) -> dict | None:
        """config.json, None when there is none yet."""
        stored = self._read(self.path("config.json"), json.loads, recover=(
            f"delete the folder {self.dir} (the cache answers the calls already made) or choose another run_name"))
        if stored is None:
            return None
        if not isinstance(stored, dict) or "config" not in stored:
            raise RunStateError(f"{self.path('config.json')} is not a picaco run record: delete the folder "
                                f"{self.dir} or choose another run_name")
        if stored.get("format") != STORE_FORMAT:
            raise RunStateError(
                f"run '{config.run_name}' in {self.dir} was started by an older picaco that did not record the "
                f"content of its inputs, so a resume cannot be checked: start it again under another run_name "
                f"(or delete the folder); the cache answers the calls already made, and the old files stay readable")
        return stored

    def _check_inputs(self, config: RunConfig, inputs: RunInputs, stored: dict) -> None:
        if stored.get("fingerprint") == inputs.fingerprint:
            return
        differences = input_differences(stored.get("inputs", {}), inputs.record, inputs.sources)
        raise ConfigError(
            f"run '{config.run_name}' in {self.dir} was started with different inputs: "
            f"{'; '.join(differences) or 'their fingerprints differ'}. Resume it with the inputs it was started "
            f"with, or start a new run under another run_name (--run-name NEW): the calls already made are "
            f"answered by the cache")

    @contextmanager
    def _locked(self):
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path(".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise write_error(self.path(".lock"), exc) from None
        try:
            # flock, not fcntl.lockf: the lock belongs to this open file, so two threads of one process
            # exclude each other too. Released when the file is closed, or when the process dies.
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- state files -------------------------------------------------------------------------------------
    def _read(self, path: Path, parse: Callable[[str], T], recover: str | None = None) -> T | None:
        """The parsed file, None when absent; a damaged file is one RunStateError naming it and the way out."""
        recover = recover or ("delete it and run again: the run recomputes that step, and the cache answers "
                              "the calls it had made")
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise RunStateError(f"run state file {path} cannot be read ({getattr(exc, 'strerror', None) or exc}); "
                                f"{recover}") from None
        try:
            return parse(text)
        except ValueError as exc:  # json.JSONDecodeError and pydantic's ValidationError are ValueErrors
            errors = getattr(exc, "errors", None)
            reason = errors()[0]["msg"] if callable(errors) else str(exc).splitlines()[0]
            raise RunStateError(f"run state file {path} is damaged (truncated or edited: {reason}); "
                                f"{recover}") from None

    def load_json(self, name: str) -> dict | None:
        return self._read(self.path(name), json.loads)

    def save_json(self, name: str, obj) -> None:
        atomic_write_json(self.path(name), obj)

    def load_model(self, name: str, model: type[T]) -> T | None:
        return self._read(self.path(name), model.model_validate_json)

    def save_model(self, name: str, state) -> None:
        atomic_write_text(self.path(name), state.model_dump_json(indent=1))

    async def checkpoint(self, name: str, model: type[T], compute: Callable[[], Awaitable[T]]) -> T:
        """Load, else compute and save: a step's state, from its file when the step finished before."""
        done = self.load_model(name, model)
        if done is not None:
            return done
        state = await compute()
        self.save_model(name, state)
        return state

    def load_noisy(self) -> NoisyState | None:
        return self.load_model("noisy.json", NoisyState)

    def load_estep(self, t: int) -> EStepState | None:
        return self.load_model(f"iter_{t:03d}.estep.json", EStepState)

    def load_iteration(self, t: int) -> IterationState | None:
        return self.load_model(f"iter_{t:03d}.json", IterationState)

    def last_complete_iteration(self) -> int:
        done = sorted(int(p.name[5:8]) for p in self.dir.glob("iter_[0-9][0-9][0-9].json"))
        t = 0
        for k in done:  # only a gapless prefix counts
            if k == t + 1:
                t = k
        return t

    def iterations(self, upto: int | None = None) -> list[IterationState]:
        """The complete iterations 1.., at most up to `upto`."""
        last = self.last_complete_iteration() if upto is None else min(upto, self.last_complete_iteration())
        out = []
        for t in range(1, last + 1):
            state = self.load_iteration(t)
            if state is not None:
                out.append(state)
        return out

