"""A whole run with a real model as the target (SmolLM2-135M on the managed llama.cpp engine, extra 'local'),
killed with -9 mid-run: its engine ends with it, the run resumes from the cache, its rerun pays nothing, and
its result is the one an uninterrupted run computes from the same samples (the engine's sampling is not
repeatable by seed, so "the same" means: from the samples the killed run and its resume drew).

The cheap form of the check bench/real_engine.py makes with configs/local.yaml and configs/local_target.yaml:
tiny replies (8 tokens) and no demonstrations in the prompts, 2 prompts, one iteration; judge and optimizer on the simulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import yaml

from picaco.config import load_run_config
from picaco.llm import local_engine
from picaco.llm.calllog import read_call_log
from picaco.method.run import optimize

pytest.importorskip("llama_cpp", reason="the extra 'local' is not installed (make install installs it)")


def run_config(root, run_name: str = "r") -> dict:
    return {"run_name": run_name, "composition": "helpfulness", "prompts": {"demo_family": "hh"},
            "runs_dir": str(root / "runs"),
            "models": {"target": "local/smollm2", "judge": "sim/judge", "optimizer": "sim/optimizer",
                       "embedding": "sim/embed"},
            "sampling": {"target_max_tokens": 8},
            "picaco": {"n_prompts": 2, "m1": 1, "m2": 1, "iterations": 1, "n_pe_samples": 1, "buckets": 1,
                       "samples_per_bucket": 1, "demos_per_bucket": 0, "noisy_samples": 2, "held_out": 0,
                       "judge_probe": False},
            "client": {"cache_dir": str(root / "cache"),
                       "providers": {"local": {"kind": "llamacpp", "options": {"gguf": "smollm2", "n_ctx": 1024}},
                                     "sim": {"kind": "sim", "options": {"world": "values"}}}}}


def engine_calls(log) -> int:
    return sum(1 for x in read_call_log(log) if x.get("kind") == "call" and x.get("model") == "local/smollm2")


def paid(log) -> int:
    return sum(1 for x in read_call_log(log) if x.get("kind") == "call")


def result_of(run_dir) -> dict:
    out = json.loads((run_dir / "result.json").read_text())
    return {k: out[k] for k in ("best_instruction", "best_tc", "value_scores", "history", "conformity")}


def test_a_run_on_the_engine_killed_with_9_resumes_and_reruns_at_zero_calls(tmp_path, monkeypatch):
    monkeypatch.setenv("PICACO_HASH_MEMO_DIR", str(tmp_path / "memo"))
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run_config(tmp_path)))
    log = tmp_path / "runs" / "r" / "calls.jsonl"

    proc = subprocess.Popen([sys.executable, "-m", "picaco.cli", "optimize", "--config", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ})
    engines: set[int] = set()
    deadline = time.monotonic() + 120
    while engine_calls(log) < 2 and proc.poll() is None and time.monotonic() < deadline:
        engines |= {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
        time.sleep(0.1)
    assert proc.poll() is None, f"the run ended before the kill: {proc.stderr.read().decode()[-500:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert engines, "the run started no engine"
    for _ in range(50):  # the engine watches its parent once a second
        if not any(local_engine._pid_running(p) for p in engines):
            break
        time.sleep(0.1)
    assert not any(local_engine._pid_running(p) for p in engines), "the engine outlived the killed run"
    assert not (tmp_path / "runs" / "r" / "result.json").exists()
    killed_calls = engine_calls(log)
    assert killed_calls >= 2

    config = load_run_config(path)
    resumed = optimize(config)  # a new engine; the samples drawn before the kill come from the cache
    assert engine_calls(log) > killed_calls
    calls_after_resume = paid(log)

    again = optimize(config)  # a rerun: every answer cached, no engine started
    assert paid(log) == calls_after_resume
    assert again.best_instruction == resumed.best_instruction

    # a run never interrupted, over the samples the killed run and its resume drew: the same result
    (tmp_path / "fresh.yaml").write_text(yaml.safe_dump(run_config(tmp_path, "fresh")))
    optimize(load_run_config(tmp_path / "fresh.yaml"))
    assert paid(tmp_path / "runs" / "fresh" / "calls.jsonl") == 0
    assert result_of(tmp_path / "runs" / "fresh") == result_of(tmp_path / "runs" / "r")
