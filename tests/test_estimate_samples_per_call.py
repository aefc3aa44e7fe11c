"""`picaco estimate` counts the calls a server that returns fewer samples per call than asked needs
(llama.cpp and Ollama return one): ceil(n / max_samples_per_call) per request, each billed its prompt."""

from __future__ import annotations

import math

from tiny_run import small_run_config

from picaco.base.config import ProviderSettings, RunConfig
from picaco.estimate import estimate, samples_per_call
from picaco.llm.calllog import read_call_log


def run_with_target(root, provider: dict) -> RunConfig:
    raw = small_run_config(root, models={"target": "gw/smol", "judge": "sim/judge", "optimizer": "sim/optimizer",
                                         "embedding": "sim/embed"})
    raw["picaco"].update({"noisy_samples": 5, "m2": 2})
    raw["client"]["providers"]["gw"] = provider
    return RunConfig.model_validate(raw)


def test_one_sample_servers_are_counted_call_by_call(tmp_path):
    url = "http://127.0.0.1:9/v1"  # never called: the estimate runs on the simulator
    honoured = estimate(run_with_target(tmp_path, {"kind": "openai", "base_url": url}), workdir=tmp_path / "a")
    llama = estimate(run_with_target(tmp_path, {"kind": "llamacpp", "base_url": url}), workdir=tmp_path / "b")
    two = estimate(run_with_target(tmp_path, {"kind": "openai", "base_url": url, "max_samples_per_call": 2}),
                   workdir=tmp_path / "c")
    lines = [x for x in read_call_log(tmp_path / "a" / "runs" / "estimate-r" / "calls.jsonl")
             if x.get("kind") == "call" and x.get("role") == "target"]
    assert max(x["n"] for x in lines) == 5  # the noisy pool asks for 5 samples at once
    assert honoured["by_role"]["target"]["calls"] == len(lines)
    assert llama["by_role"]["target"]["calls"] == sum(x["n"] for x in lines)
    assert two["by_role"]["target"]["calls"] == sum(math.ceil(x["n"] / 2) for x in lines)
    assert llama["by_role"]["target"]["prompt_tokens"] == sum(x["n"] * x["prompt_tokens"] for x in lines)
    assert llama["by_role"]["target"]["samples_per_call"] == 1 and honoured["by_role"]["target"]["samples_per_call"] == 128
    # the other roles' providers are unchanged
    assert llama["by_role"]["judge"]["calls"] == honoured["by_role"]["judge"]["calls"]


def test_samples_per_call_by_kind_and_setting():
    assert samples_per_call("llamacpp/x", {}) == 1
    assert samples_per_call("ollama/x", {}) == 1
    assert samples_per_call("sim/x", {"sim": ProviderSettings(kind="sim", max_samples_per_call=3)}) == 3
