"""The run store at the library level, beyond what the campaign's cases show: a step run on its own
checks the inputs too, moved but unchanged inputs resume, two starts cannot both claim a run, and the
way out a damaged or unwritable file names really recovers the run."""

from __future__ import annotations

import json
import shutil
import threading
import time

import pytest
from cases_run_store import disk_full_for, truncate_half, user_inputs
from reliability_campaign import small_run_config

from picaco.base.errors import ConfigError, FileWriteError, RunStateError
from picaco.config import parse_run_config
from picaco.method import run as runner
from picaco.method import store as store_module
from picaco.method.run import optimize


def config(root, iterations=1, **fields):
    return parse_run_config(small_run_config(root, picaco={"iterations": iterations}, **fields))


def test_a_step_run_on_its_own_checks_the_inputs_too(tmp_path):
    cfg = config(tmp_path, iterations=2, **user_inputs(tmp_path))
    runner.run_noisy_pool(cfg)
    user_inputs(tmp_path, values=("Benevolence", "Tradition"))
    with pytest.raises(ConfigError, match="values differ"):
        runner.run_e_step(cfg, 1)  # what a Prefect task does
    assert not (cfg.run_dir / "iter_001.estep.json").exists()


def test_unchanged_inputs_at_another_path_resume(tmp_path):
    whole = optimize(config(tmp_path / "whole", iterations=2, **user_inputs(tmp_path / "whole")))
    optimize(config(tmp_path, **user_inputs(tmp_path)))
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(tmp_path / "mine.yaml", moved / "mine.yaml")
    shutil.move(tmp_path / "x.jsonl", moved / "x.jsonl")
    resumed = optimize(config(tmp_path, iterations=2, **user_inputs(moved)))
    assert resumed.best_instruction == whole.best_instruction and resumed.history == whole.history


def test_two_starts_with_different_configs_cannot_both_be_accepted(tmp_path, monkeypatch):
    """The first start is slowed down inside its critical section (between finding no config.json and
    writing one); the second, with another seed, starts meanwhile: it must wait, then be refused."""
    real_write = store_module.atomic_write_json

    def slow_write(path, obj):
        time.sleep(0.5)
        real_write(path, obj)

    monkeypatch.setattr(store_module, "atomic_write_json", slow_write)
    outcomes: dict[int, str] = {}

    def start(seed: int) -> None:
        try:
            runner.start_run(config(tmp_path, seed=seed))
            outcomes[seed] = "accepted"
        except ConfigError as exc:
            outcomes[seed] = str(exc)

    first = threading.Thread(target=start, args=(1,))
    first.start()
    time.sleep(0.2)  # the first is asleep inside its check now
    start(2)
    first.join()
    assert outcomes[1] == "accepted"
    assert "seed 1 -> 2" in outcomes[2], outcomes
    assert json.loads((tmp_path / "runs" / "r" / "config.json").read_text())["config"]["seed"] == 1


def test_the_same_config_started_four_times_at_once_is_fine(tmp_path):
    cfg = config(tmp_path)
    errors: list[Exception] = []

    def start() -> None:
        try:
            runner.start_run(cfg)
        except Exception as exc:  # collected: the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.parametrize("damaged", ["config.json", "noisy.json", "iter_001.json", "iter_001.estep.json"])
def test_the_way_out_a_damaged_file_names_recovers_the_run(tmp_path, damaged):
    whole = optimize(config(tmp_path / "whole"))
    cfg = config(tmp_path)
    optimize(cfg)
    if damaged == "iter_001.estep.json":
        (cfg.run_dir / "iter_001.json").unlink()  # killed between the E-step and the M-step
    truncate_half(cfg.run_dir / damaged)
    with pytest.raises(RunStateError, match=rf"{damaged} is damaged") as info:
        optimize(cfg)
    if damaged == "config.json":
        assert f"delete the folder {cfg.run_dir}" in str(info.value)
        shutil.rmtree(cfg.run_dir)
    else:
        assert "delete it and run again" in str(info.value)
        (cfg.run_dir / damaged).unlink()
    again = optimize(cfg)
    assert again.best_instruction == whole.best_instruction and again.history == whole.history


def test_after_a_full_disk_the_run_goes_on_from_the_steps_it_kept(tmp_path):
    whole = optimize(config(tmp_path / "whole"))
    cfg = config(tmp_path)
    with disk_full_for("iter_001.estep.json"), pytest.raises(FileWriteError, match="No space left on device"):
        optimize(cfg)
    noisy = (cfg.run_dir / "noisy.json").read_text()
    assert optimize(cfg) == whole
    assert (cfg.run_dir / "noisy.json").read_text() == noisy


def test_lowering_T_gives_the_result_of_a_run_of_T_iterations(tmp_path):
    short = optimize(config(tmp_path / "short", iterations=1))
    optimize(config(tmp_path, iterations=2))
    lowered = optimize(config(tmp_path, iterations=1))
    assert [h.t for h in lowered.history] == [1]
    assert lowered == short
