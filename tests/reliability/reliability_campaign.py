"""The bad-input and fault campaign as a table a reviewer can read.

Each `Case` is one thing a user did wrong (or one fault the world did to them): what they did, what they
must see (one line, naming the file, field or value; never a traceback), and what must be on disk
afterwards (nothing half-written). The table is collected from the `CASES` lists of the modules below;
`tests/reliability/test_*.py` runs every case, and `bench/reliability.py` prints the table with its
figures.

A case's `act` runs in a fresh directory of its own and returns what the user saw; `disk` looks at that
directory afterwards and returns None when it is as the case says, else what is wrong.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from tiny_run import small_run_config  # noqa: F401  (cases build on it)

# modules (in tests/reliability/) whose CASES lists make up the campaign, in the table's order
CASE_MODULES = ("cases_config", "cases_run_store", "cases_calls", "cases_cache", "cases_datasets",
                "cases_sim_server")


@dataclass(frozen=True)
class Seen:
    """What the user saw: the exit code, standard output, standard error and whether a traceback showed."""

    exit_code: int
    stdout: str = ""
    stderr: str = ""
    traceback: bool = False

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


@dataclass(frozen=True)
class Case:
    id: str
    area: str
    what: str  # what the user did, or what fault hit them
    sees: str  # a regex the single error line must match (it names the file, field or value)
    leaves: str  # what is on disk afterwards, in words
    act: Callable[[Path], Seen]
    disk: Callable[[Path], str | None] = field(default=lambda root: None)
    expect_exit: int | None = None  # None: any non-zero exit; 0 for faults the product must ride out

    def verdict(self, seen: Seen, root: Path) -> "Verdict":
        problems = []
        if seen.traceback or "Traceback (most recent call last)" in seen.stderr + seen.stdout:
            problems.append("a traceback was shown")
        if self.expect_exit == 0:
            if seen.exit_code != 0:
                problems.append(f"exit {seen.exit_code}, expected 0: {' | '.join(seen.error_lines)[:300]}")
            elif not re.search(self.sees, seen.stdout + seen.stderr, flags=re.S):
                problems.append(f"output does not match {self.sees!r}")
        else:
            if seen.exit_code == 0:
                problems.append("exit 0: the bad input was accepted")
            if self.expect_exit is not None and seen.exit_code != self.expect_exit:
                problems.append(f"exit {seen.exit_code}, expected {self.expect_exit}")
            lines = seen.error_lines
            if len(lines) != 1:
                problems.append(f"{len(lines)} error lines, expected 1: {' | '.join(lines)[:300]}")
            elif not re.search(self.sees, lines[0]):
                problems.append(f"error line {lines[0]!r} does not match {self.sees!r}")
        disk_problem = self.disk(root)
        return Verdict(case=self, seen=seen, clear=not problems, disk_ok=disk_problem is None,
                       problems=problems + ([f"on disk: {disk_problem}"] if disk_problem else []))


@dataclass(frozen=True)
class Verdict:
    case: Case
    seen: Seen
    clear: bool  # one line naming the thing, no traceback, the right exit
    disk_ok: bool  # nothing half-written, the state the case describes
    problems: list[str]

    @property
    def shown(self) -> str:
        lines = self.seen.error_lines
        return lines[0] if len(lines) == 1 else " | ".join(lines)


def _case_modules():
    return [importlib.import_module(name) for name in CASE_MODULES]


def all_cases() -> list[Case]:
    cases: list[Case] = [case for module in _case_modules() for case in module.CASES]
    ids = [c.id for c in cases]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise ValueError(f"duplicate case ids: {sorted(dupes)}")
    return cases


def all_measures() -> dict[str, Callable[[Path], object]]:
    """The campaign's figures beyond the table (e.g. `secret_found`), from the modules' MEASURES dicts:
    name -> function(work directory) -> value. bench/reliability.py prints them; tests check them."""
    measures: dict[str, Callable[[Path], object]] = {}
    for module in _case_modules():
        for key, fn in getattr(module, "MEASURES", {}).items():
            if key in measures:
                raise ValueError(f"measure {key!r} is defined twice")
            measures[key] = fn
    return measures


def run_case(case: Case, root: Path) -> Verdict:
    root.mkdir(parents=True, exist_ok=True)
    with working_directory(root):
        try:
            seen = case.act(root)
        except BaseException:  # an escaped exception is exactly what the user would have seen as a traceback
            seen = Seen(exit_code=1, stderr=traceback.format_exc(), traceback=True)
    return case.verdict(seen, root)


# -- helpers for writing cases ------------------------------------------------------------------------------
@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def picaco(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Seen:
    """Run the `picaco` command in this process, as `picaco.cli:main` would: what the user sees."""
    from typer.testing import CliRunner

    from picaco.cli import app

    runner = CliRunner()
    result = runner.invoke(app, list(args), env=env, input=input, catch_exceptions=True)
    escaped = result.exception is not None and not isinstance(result.exception, SystemExit)
    stderr = result.stderr
    if escaped:
        stderr += "".join(traceback.format_exception(result.exception))
    return Seen(exit_code=result.exit_code, stdout=result.stdout, stderr=stderr, traceback=escaped)


def write_yaml(path: Path, raw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def leftovers(root: Path) -> list[str]:
    """Files a crash or an error left half-written: temp files of atomic writes and empty JSON files."""
    bad = []
    for p in root.rglob("*"):
        if p.is_file() and (p.name.endswith(".tmp") or (p.suffix == ".json" and p.stat().st_size == 0)):
            bad.append(str(p.relative_to(root)))
    return bad


def nothing_half_written(root: Path) -> str | None:
    bad = leftovers(root)
    return f"half-written files: {bad}" if bad else None


def no_run_dir(name: str = "r") -> Callable[[Path], str | None]:
    """The run directory was not created (its inputs were refused before anything was written)."""

    def check(root: Path) -> str | None:
        run_dir = root / "runs" / name
        if run_dir.exists():
            return f"run directory {run_dir.relative_to(root)} was created: {sorted(p.name for p in run_dir.iterdir())}"
        return nothing_half_written(root)

    return check
