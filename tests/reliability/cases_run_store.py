"""Campaign cases: the run store (its directory, its state files, resumes) and its figures.

The figures (MEASURES) are each asserted at a smaller size by tests/reliability/test_run_store_measures.py:
    resume_equal_after_kill           kill -9 `picaco optimize` in the noisy pool, an E-step and an M-step,
                                      resume: result.json equals an uninterrupted run's (True)
    mixed_resume_accepted             resumes accepted after an input's content changed (0)
    concurrent_start_races_accepted   two processes start one run name with different configs at once,
                                      20 times: races where both were accepted (0)
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

from reliability_campaign import Case, nothing_half_written, picaco, small_run_config, working_directory, write_yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ is not a package of the project; the kill tool lives there
    sys.path.insert(0, str(ROOT))

from bench.kill_resume import during, run_and_kill  # noqa: E402

RUN = Path("runs") / "r"
DEMOS = [{"query": "Should I move abroad for a job?", "answer": "Weigh your family's needs and your duties."},
         {"query": "Is it fine to skip a family dinner?", "answer": "Keep the tradition when you can."}]
PROMPTS = ["Should I tell my friend a hard truth?", "How do I honour my parents?", "Is it wrong to break a rule?"]
THRIFT = {"name": "Thrift", "definition": "Spending little and wasting nothing.", "instruction": "Be thrifty.",
          "family": "schwartz"}


def _config(root: Path, **fields) -> Path:
    return write_yaml(root / "run.yaml", small_run_config(root, **fields))


def _optimize(root: Path, **fields):
    return picaco("optimize", "--config", str(_config(root, **fields)))


def user_inputs(root: Path, values=("Benevolence", "Tradition", "Security", THRIFT), demos=DEMOS,
                 prompts=PROMPTS, seed_instruction: str | None = None) -> dict:
    """A user composition file and prompts file; returns the config fields that name them."""
    comp = {"name": "mine", "values": list(values), "demonstrations": demos}
    if seed_instruction:
        comp["seed_instruction"] = seed_instruction
    write_yaml(root / "mine.yaml", comp)
    (root / "x.jsonl").write_text("".join(json.dumps({"prompt_id": f"p{k}", "prompt": p}) + "\n"
                                          for k, p in enumerate(prompts)))
    return {"composition": str(root / "mine.yaml"), "prompts": {"demo_family": None, "path": str(root / "x.jsonl")}}


def _finished(root: Path, iterations: int = 1, **fields):
    seen = _optimize(root, picaco={"iterations": iterations}, **fields)
    assert seen.exit_code == 0, seen.stderr
    return seen


def truncate_half(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: len(text) // 2])  # half a file, as a crash of a non-atomic writer leaves it


# -- the run directory ------------------------------------------------------------------------------------
def _runs_dir_is_a_file(root: Path):
    (root / "runs").write_text("not a folder\n")
    return _optimize(root)


def _run_dir_is_a_file(root: Path):
    (root / "runs").mkdir()
    (root / RUN).write_text("not a folder\n")
    return _optimize(root)


def _only_file(name: str):
    def check(root: Path) -> str | None:
        if (root / "runs").is_file() and (root / "runs").read_text() == "not a folder\n":
            return nothing_half_written(root)
        if (root / RUN).is_file() and (root / RUN).read_text() == "not a folder\n":
            return nothing_half_written(root)
        return f"{name} was changed or replaced"

    return check


# -- damaged state files ----------------------------------------------------------------------------------
def _damaged(name: str, drop: str | None = None):
    def act(root: Path):
        _finished(root)
        if drop:
            (root / RUN / drop).unlink()
        truncate_half(root / RUN / name)
        return _optimize(root)

    return act


def _left_as_is(name: str):
    def check(root: Path) -> str | None:
        text = (root / RUN / name).read_text()
        try:
            json.loads(text)
            return f"{name} was rewritten"
        except ValueError:
            return None if not (root / RUN / "iter_002.json").exists() else "the run went on"

    return check


# -- disk full --------------------------------------------------------------------------------------------
@contextmanager
def disk_full_for(name: str):
    real_fsync = os.fsync

    def fsync(fd):
        if name in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    with mock.patch.object(os, "fsync", fsync):
        yield


def _disk_full(root: Path):
    with disk_full_for("iter_001.estep.json"):
        return _optimize(root)


def _disk_full_left(root: Path) -> str | None:
    if not (root / RUN / "noisy.json").exists():
        return "the finished noisy pool was lost"
    if (root / RUN / "iter_001.estep.json").exists():
        return "iter_001.estep.json exists"
    return nothing_half_written(root)


# -- resumes with changed inputs --------------------------------------------------------------------------
def _template_edit():
    return mock.patch("picaco.templates.TEMPLATE_DIGEST", "0" * 64)


@contextmanager
def _nothing():
    yield


# what changes between the first run and the resume: (user inputs of the resume, patch around the resume)
EDITS = {
    "composition values": (dict(values=("Benevolence", "Tradition")), _nothing),
    "a value's definition": (dict(values=("Benevolence", "Tradition", "Security",
                                          {**THRIFT, "definition": "Saving money."})), _nothing),
    "demonstrations": (dict(demos=DEMOS[:1]), _nothing),
    "seed instruction": (dict(seed_instruction="Be kind and keep traditions."), _nothing),
    "prompts file": (dict(prompts=PROMPTS[:2] + ["Is lying ever right?"]), _nothing),
    "templates": ({}, _template_edit),
}


def _resume_after(edit: str):
    def act(root: Path):
        _finished(root, **user_inputs(root))
        changed, patch = EDITS[edit]
        fields = user_inputs(root, **changed)
        with patch():
            return _optimize(root, picaco={"iterations": 2}, **fields)

    return act


def _not_resumed(root: Path) -> str | None:
    if (root / RUN / "iter_002.estep.json").exists():
        return "iteration 2 was computed on the changed inputs"
    return nothing_half_written(root)


def _settings_changed(root: Path):
    _finished(root)
    return _optimize(root, picaco={"iterations": 2, "m1": 1})


def _older_run_dir(root: Path):
    (root / RUN).mkdir(parents=True)
    raw = small_run_config(root)
    (root / RUN / "config.json").write_text(json.dumps({"fingerprint": "0" * 64, "config": raw}))
    return _optimize(root)


def _no_config_json(root: Path):
    _finished(root)
    (root / RUN / "config.json").unlink()
    return _optimize(root)


# -- what must work -----------------------------------------------------------------------------------------
def _lower_T(root: Path):
    _finished(root, iterations=2)
    return _optimize(root, picaco={"iterations": 1})


def _result_describes_T1(root: Path) -> str | None:
    history = [h["t"] for h in json.loads((root / RUN / "result.json").read_text())["history"]]
    return None if history == [1] else f"result.json history lists t={history} for T=1"


def _corrected_after_failed_start(root: Path):
    bad = _optimize(root, models={"judge": "gpt-4o"})
    assert bad.exit_code == 2, bad.stderr
    return _optimize(root)


CASES = [
    Case("S01", "run store", "runs_dir is a file", r"runs_dir .*runs is a file, not a (directory|folder)",
         "the file as it was", _runs_dir_is_a_file, _only_file("runs")),
    Case("S02", "run store", "the run's directory is a file",
         r"run directory .*runs/r is a file, not a (directory|folder)", "the file as it was", _run_dir_is_a_file,
         _only_file("runs/r")),
    Case("S03", "run store", "config.json truncated, then run again",
         r"config\.json is damaged .*delete the folder .*runs/r", "the damaged file, untouched",
         _damaged("config.json"), _left_as_is("config.json")),
    Case("S04", "run store", "noisy.json truncated, then run again",
         r"noisy\.json is damaged .*delete it and run again",
         "the damaged file, untouched", _damaged("noisy.json"), _left_as_is("noisy.json")),
    Case("S05", "run store", "iter_001.json truncated, then run again",
         r"iter_001\.json is damaged .*delete it and run again", "the damaged file, untouched",
         _damaged("iter_001.json"), _left_as_is("iter_001.json")),
    Case("S06", "run store", "iter_001.estep.json truncated (killed before the M-step), then run again",
         r"iter_001\.estep\.json is damaged .*delete it", "the damaged file, untouched",
         _damaged("iter_001.estep.json", drop="iter_001.json"), _left_as_is("iter_001.estep.json")),
    Case("S07", "run store", "the disk fills up while the E-step's state is written",
         r"cannot write .*iter_001\.estep\.json: No space left on device", "noisy.json kept, no temp file",
         _disk_full, _disk_full_left),
    Case("S08", "resume", "resume after editing the composition's values",
         r"mine\.yaml: values differ: Benevolence, Tradition, Security, Thrift -> Benevolence, Tradition",
         "no iteration 2", _resume_after("composition values"), _not_resumed),
    Case("S09", "resume", "resume after editing the composition's demonstrations",
         r"mine\.yaml: demonstrations changed",
         "no iteration 2", _resume_after("demonstrations"), _not_resumed),
    Case("S10", "resume", "resume after editing the seed instruction", r"mine\.yaml: seed instruction changed",
         "no iteration 2", _resume_after("seed instruction"), _not_resumed),
    Case("S11", "resume", "resume after editing the prompts file",
         r"prompts file .*x\.jsonl changed \(1 of 3 selected prompts differ, e\.g\. id p2\)", "no iteration 2",
         _resume_after("prompts file"), _not_resumed),
    Case("S12", "resume", "resume after a template file changed", r"prompt template files changed", "no iteration 2",
         _resume_after("templates"), _not_resumed),
    Case("S13", "resume", "resume with another method setting (m1)", r"picaco\.m1 2 -> 1.*--run-name",
         "no iteration 2", _settings_changed, _not_resumed),
    Case("S14", "resume", "resume a run directory written by an older picaco", r"older picaco.*another run_name",
         "its files, untouched", _older_run_dir, nothing_half_written),
    Case("S15", "resume", "run again after deleting only config.json", r"no config\.json.*delete the folder",
         "the state files, untouched", _no_config_json, _not_resumed),
    Case("S16", "resume", "lower T of a finished run from 2 to 1", r"Optimized meta-instruction",
         "result.json describes exactly iteration 1", _lower_T, _result_describes_T1, expect_exit=0),
    Case("S17", "run store", "correct a config whose start failed (a judge without a slash), run again",
         r"Optimized meta-instruction", "the run, finished", _corrected_after_failed_start,
         lambda root: None if (root / RUN / "result.json").exists() else "no result.json", expect_exit=0),
    Case("S18", "resume", "resume after editing a user-defined value's definition",
         r"mine\.yaml: definitions or instructions of Thrift changed", "no iteration 2",
         _resume_after("a value's definition"), _not_resumed),
]


# -- figures ------------------------------------------------------------------------------------------------
def _killable_config(workdir: Path, latency_ms: int, iterations: int) -> Path:
    raw = small_run_config(workdir, picaco={"iterations": iterations, "n_prompts": 4})
    raw["client"]["providers"]["sim"]["options"]["latency_ms"] = latency_ms
    return write_yaml(workdir / "run.yaml", raw)


def _optimizer_replied(call_log: Path) -> bool:
    try:
        return '"role":"optimizer"' in call_log.read_text()
    except OSError:
        return False


def resume_equal_after_kill(workdir: Path, latency_ms: int = 100, iterations: int = 2) -> bool:
    """kill -9 `picaco optimize` while calls are in flight in the noisy pool, in iteration 1's E-step and in
    iteration 1's M-step (its draft, once the optimizer has replied); resume each; True when every result.json equals an uninterrupted run's."""
    import shutil

    whole_dir = workdir / "whole"
    whole_dir.mkdir()
    seen = picaco("optimize", "--config", str(_killable_config(whole_dir, latency_ms, iterations)))
    if seen.exit_code != 0:
        raise RuntimeError(f"the uninterrupted run failed: {seen.stderr}")
    whole = json.loads((whole_dir / RUN / "result.json").read_text())
    points = {  # where to kill: (the step has started, the step's file is written)
        "noisy pool": (lambda d: (d / RUN / "config.json").exists(), lambda d: (d / RUN / "noisy.json").exists()),
        "E-step 1": (lambda d: (d / RUN / "noisy.json").exists(), lambda d: (d / RUN / "iter_001.estep.json").exists()),
        # the M-step's calls are made by its draft, beside the E-step: killed once the optimizer has replied
        "M-step 1": (lambda d: _optimizer_replied(d / RUN / "calls.jsonl"),
                     lambda d: (d / RUN / "iter_001.json").exists()),
    }
    equal = True
    for name, (started, done) in points.items():
        d = workdir / name.replace(" ", "-")
        d.mkdir()
        config = _killable_config(d, latency_ms, iterations)
        killed = run_and_kill(config, d / "trace.txt", during(lambda: started(d), lambda: done(d)), cwd=d)
        at_point = killed.killed and killed.in_flight > 0 and started(d) and not done(d)
        seen = picaco("optimize", "--config", str(config))
        resumed = json.loads((d / RUN / "result.json").read_text()) if seen.exit_code == 0 else None
        print(f"  kill -9 during the {name}: killed there with {killed.in_flight} calls in flight: {at_point}; "
              f"resumed result equals the uninterrupted one: {resumed == whole}")
        equal &= at_point and resumed == whole
        shutil.rmtree(d / "cache", ignore_errors=True)
    return equal


def mixed_resume_accepted(workdir: Path) -> int:
    """Resumes accepted after one input's content changed (of len(EDITS)); 0 when every one is refused."""
    accepted = 0
    for edit in EDITS:
        d = workdir / edit.replace(" ", "-")
        d.mkdir()
        with working_directory(d):
            seen = _resume_after(edit)(d)
        accepted += seen.exit_code == 0
    return accepted


RACER = r"""
import sys
sys.path.insert(0, {root!r})
from picaco.config import parse_run_config
from picaco.base.errors import PicacoError
from picaco.method.run import start_run
import json
raw = json.loads({raw!r})
print("ready", flush=True)
for line in sys.stdin:
    raw["run_name"] = line.split()[1]
    try:
        start_run(parse_run_config(raw))
        print("accepted", flush=True)
    except PicacoError as exc:
        print("refused", str(exc).replace("\n", " "), flush=True)
"""


def concurrent_start_races_accepted(workdir: Path, races: int = 20) -> int:
    """Two processes, configs differing in their seed, start the same run name at the same moment (both
    are already running and waiting on their stdin for the word); counts the races both won."""
    racers = []
    for seed in (1, 2):
        raw = small_run_config(workdir, seed=seed)
        racers.append(subprocess.Popen([sys.executable, "-c", RACER.format(root=str(ROOT), raw=json.dumps(raw))],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=workdir))
    both = 0
    try:
        for p in racers:
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError("a racer did not start")
        for k in range(races):
            for p in racers:  # the word goes to both before either reads the answer
                p.stdin.write(f"go race-{k}\n")
                p.stdin.flush()
            answers = [p.stdout.readline().strip() for p in racers]
            if "accepted" not in answers or not all(a == "accepted" or a.startswith("refused") for a in answers):
                raise RuntimeError(f"race {k}: neither start was accepted, or a racer failed: {answers}")
            both += all(a == "accepted" for a in answers)
    finally:
        for p in racers:
            p.stdin.close()
            p.wait(timeout=60)
    return both


MEASURES = {
    "resume_equal_after_kill": resume_equal_after_kill,
    "mixed_resume_accepted": mixed_resume_accepted,
    "concurrent_start_races_accepted": concurrent_start_races_accepted,
}
