"""The run store: a resume must have the inputs the run was started with (their content, not their paths),
a failed start writes nothing, two starts cannot both claim a run, and a damaged or unwritable file is
one line that says how to recover."""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
import time

import pytest
import yaml

from picaco.config import parse_run_config
from picaco.io import FileWriteError
from picaco.llm.errors import ConfigError, PicacoError
from picaco.method import run as runner
from picaco.method import store as store_module
from picaco.method.run import RunStateError, RunStore, optimize

from test_run import tiny

DEMOS = [{"query": "Should I move abroad for a job?", "answer": "Weigh your family's needs and your duties."},
         {"query": "Is it fine to skip a family dinner?", "answer": "Keep the tradition when you can."}]


def composition_file(path, values=("Benevolence", "Conformity", "Tradition", "Security"), demos=DEMOS, **extra):
    path.write_text(yaml.safe_dump({"name": "mine", "values": list(values), "demonstrations": demos, **extra}))
    return path


def prompts_file(path, texts=None):
    texts = texts or ["Should I tell my friend a hard truth?", "How do I honour my parents?",
                      "Is it wrong to break a rule to help someone?", "What do I owe my neighbours?"]
    path.write_text("".join(json.dumps({"prompt_id": f"p{k}", "prompt": t}) + "\n" for k, t in enumerate(texts)))
    return path


def user_run(tmp_path, iterations=1, **fields) -> dict:
    raw = tiny(tmp_path, iterations=iterations)
    raw["composition"] = str(tmp_path / "mine.yaml")
    raw["prompts"] = {"path": str(tmp_path / "x.jsonl")}
    raw.update(fields)
    return raw


def _edit_values(tmp_path):
    composition_file(tmp_path / "mine.yaml", values=("Benevolence", "Tradition"))


def _edit_definition(tmp_path):
    mine = {"name": "Thrift", "definition": "Spending little.", "instruction": "Be thrifty.", "family": "schwartz"}
    composition_file(tmp_path / "mine.yaml", values=("Benevolence", {**mine, "definition": "Saving money."}))


def _edit_seed(tmp_path):
    composition_file(tmp_path / "mine.yaml", seed_instruction="Be kind and keep traditions.")


def _edit_demos(tmp_path):
    composition_file(tmp_path / "mine.yaml", demos=DEMOS[:1])


def _edit_prompts(tmp_path):
    prompts_file(tmp_path / "x.jsonl", ["Should I tell my friend a hard truth?", "How do I honour my parents?",
                                        "Is lying ever right?", "What do I owe my neighbours?"])


def _edit_templates(tmp_path, monkeypatch):
    import picaco.templates

    monkeypatch.setattr(picaco.templates, "TEMPLATE_DIGEST", "0" * 64)


@pytest.mark.parametrize("edit,named", [
    (_edit_values, r"mine\.yaml: values differ: Benevolence, Conformity, Tradition, Security -> Benevolence, Tradition"),
    (_edit_definition, r"mine\.yaml: definitions or instructions of Thrift changed"),
    (_edit_seed, r"mine\.yaml: seed instruction changed"),
    (_edit_demos, r"mine\.yaml: demonstrations changed"),
    (_edit_prompts, r"prompts file .*x\.jsonl changed \(1 of 4 selected prompts differ, e\.g\. id p2\)"),
    (_edit_templates, r"prompt template files changed \(same version"),
])
def test_a_resume_after_an_input_file_changed_is_refused_naming_it(tmp_path, monkeypatch, edit, named):
    first_values = ("Benevolence", {"name": "Thrift", "definition": "Spending little.", "instruction": "Be thrifty.",
                                    "family": "schwartz"}) if edit is _edit_definition else None
    composition_file(tmp_path / "mine.yaml", **({"values": first_values} if first_values else {}))
    prompts_file(tmp_path / "x.jsonl")
    optimize(parse_run_config(user_run(tmp_path)))
    if edit is _edit_templates:
        edit(tmp_path, monkeypatch)
    else:
        edit(tmp_path)
    with pytest.raises(ConfigError, match=named) as info:
        optimize(parse_run_config(user_run(tmp_path, iterations=2)))
    assert "another run_name" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "runs" / "tiny" / "iter_002.estep.json").exists()


def test_a_step_run_on_its_own_checks_the_inputs_too(tmp_path):
    composition_file(tmp_path / "mine.yaml")
    prompts_file(tmp_path / "x.jsonl")
    cfg = parse_run_config(user_run(tmp_path, iterations=2))
    runner.run_noisy_pool(cfg)
    _edit_values(tmp_path)
    with pytest.raises(ConfigError, match="values differ"):
        runner.run_e_step(cfg, 1)


def test_the_same_content_at_another_path_resumes(tmp_path):
    composition_file(tmp_path / "mine.yaml")
    prompts_file(tmp_path / "x.jsonl")
    whole = optimize(parse_run_config(user_run(tmp_path / "whole", composition=str(tmp_path / "mine.yaml"),
                                               prompts={"path": str(tmp_path / "x.jsonl")}, iterations=2)))
    optimize(parse_run_config(user_run(tmp_path)))
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(tmp_path / "mine.yaml", moved / "mine.yaml")
    shutil.move(tmp_path / "x.jsonl", moved / "x.jsonl")
    resumed = optimize(parse_run_config(user_run(tmp_path, iterations=2, composition=str(moved / "mine.yaml"),
                                                 prompts={"path": str(moved / "x.jsonl")})))
    assert resumed["best_instruction"] == whole["best_instruction"]


@pytest.mark.parametrize("bad,named", [
    ({"models": {"embedding": "sim/embed", "judge": "gpt-4o"}}, r"models\.judge: model 'gpt-4o' is not of the form"),
    ({"models": {"embedding": "sim/embed", "target": "nope/x"}}, r"models\.target: unknown provider 'nope'"),
    ({"composition": "missing.yaml"}, r"missing\.yaml: file not found"),
    ({"prompts": {"path": "absent.jsonl"}}, r"prompts file absent\.jsonl does not exist"),
])
def test_a_failed_start_writes_nothing_and_the_corrected_config_then_runs(tmp_path, bad, named):
    with pytest.raises(ConfigError, match=named):
        optimize(parse_run_config({**tiny(tmp_path, iterations=1), **bad}))
    assert not (tmp_path / "runs").exists(), "the run directory was created before the inputs were checked"
    assert not (tmp_path / "cache").exists(), "calls were made before every input was checked"
    assert optimize(parse_run_config(tiny(tmp_path, iterations=1)))["best_instruction"]


def test_two_starts_with_different_configs_cannot_both_be_accepted(tmp_path, monkeypatch):
    """The first start is slowed down inside its critical section (between finding no config.json and
    writing one); the second, with another seed, starts meanwhile and must wait for it, then be refused."""
    real_write = store_module.atomic_write_json

    def slow_write(path, obj):
        time.sleep(0.5)
        real_write(path, obj)

    monkeypatch.setattr(store_module, "atomic_write_json", slow_write)
    outcomes: dict[int, str] = {}

    def start(seed: int) -> None:
        try:
            runner.start_run(parse_run_config({**tiny(tmp_path), "seed": seed}))
            outcomes[seed] = "accepted"
        except ConfigError as exc:
            outcomes[seed] = str(exc)

    first = threading.Thread(target=start, args=(1,))
    first.start()
    time.sleep(0.2)  # the first is now asleep inside its check
    start(2)
    first.join()
    assert outcomes[1] == "accepted"
    assert "seed 1 -> 2" in outcomes[2], outcomes
    assert json.loads((tmp_path / "runs" / "tiny" / "config.json").read_text())["config"]["seed"] == 1


def test_the_same_config_started_twice_at_once_is_fine(tmp_path):
    cfg = parse_run_config(tiny(tmp_path))
    errors = []
    threads = [threading.Thread(target=lambda: errors.extend(_start_errors(cfg))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def _start_errors(cfg) -> list[Exception]:
    try:
        runner.start_run(cfg)
        return []
    except PicacoError as exc:
        return [exc]


def _truncate(path):
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


@pytest.mark.parametrize("damaged,recover", [
    ("config.json", "folder"),
    ("noisy.json", "file"),
    ("iter_001.json", "file"),
    ("iter_001.estep.json", "file"),
])
def test_a_damaged_state_file_is_named_and_its_advice_recovers(tmp_path, damaged, recover):
    whole = optimize(parse_run_config(tiny(tmp_path / "whole", iterations=1)))
    cfg = parse_run_config(tiny(tmp_path, iterations=1))
    optimize(cfg)
    if damaged == "iter_001.estep.json":
        (cfg.run_dir / "iter_001.json").unlink()  # killed between the E-step and the M-step
    _truncate(cfg.run_dir / damaged)
    with pytest.raises(RunStateError, match=rf"{damaged} is damaged .*delete (it|the folder)") as info:
        optimize(cfg)
    assert "\n" not in str(info.value)
    if recover == "folder":
        assert f"delete the folder {cfg.run_dir}" in str(info.value)
        shutil.rmtree(cfg.run_dir)
    else:
        assert "delete it and run again" in str(info.value)
        (cfg.run_dir / damaged).unlink()
    again = optimize(cfg)
    assert again["best_instruction"] == whole["best_instruction"] and again["history"] == whole["history"]


def test_disk_full_during_a_step_is_one_line_and_leaves_no_half_written_file(tmp_path, monkeypatch):
    cfg = parse_run_config(tiny(tmp_path, iterations=1))
    real_fsync = os.fsync

    def full_disk(fd):
        if "iter_001.estep.json" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(FileWriteError, match=r"cannot write .*iter_001\.estep\.json: No space left on device; free"):
        optimize(cfg)
    assert not list(cfg.run_dir.glob("*.tmp")) and not list(cfg.run_dir.glob(".*.tmp"))
    assert (cfg.run_dir / "noisy.json").exists() and not (cfg.run_dir / "iter_001.estep.json").exists()
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert optimize(cfg)["history"][0]["t"] == 1


def test_lowering_T_gives_the_result_of_a_run_of_T_iterations(tmp_path):
    short = optimize(parse_run_config(tiny(tmp_path / "short", iterations=1)))
    optimize(parse_run_config(tiny(tmp_path, iterations=2)))
    lowered = optimize(parse_run_config(tiny(tmp_path, iterations=1)))
    assert [h["t"] for h in lowered["history"]] == [1]
    assert {k: v for k, v in lowered.items()} == short


def test_a_run_started_by_an_older_picaco_is_refused_clearly(tmp_path):
    cfg = parse_run_config(tiny(tmp_path))
    cfg.run_dir.mkdir(parents=True)
    (cfg.run_dir / "config.json").write_text(json.dumps({"fingerprint": "abc", "config": cfg.model_dump(mode="json")}))
    with pytest.raises(RunStateError, match="older picaco .* another run_name"):
        optimize(cfg)


def test_state_files_without_config_json_are_refused(tmp_path):
    cfg = parse_run_config(tiny(tmp_path, iterations=1))
    optimize(cfg)
    (cfg.run_dir / "config.json").unlink()
    with pytest.raises(RunStateError, match="no config.json"):
        optimize(cfg)
    assert RunStore(cfg.run_dir).load_iteration(1) is not None
