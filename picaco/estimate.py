"""`picaco estimate`: what a configuration would cost on its real providers, before paying anything.

The configuration runs to the end on the simulated value world (same N, M1, M2, T, n, buckets, the
same prompts and composition), with every model replaced by the simulator playing its role; the calls
and tokens it makes, by role, are then priced with the *configured* models' prices. The simulator's
replies are 40-150 words: a real model that writes longer answers costs more, so the table also gives
an upper bound with every completion at its max_tokens.

A reduced estimate (`prompts_limit`, `iterations_limit`; `picaco estimate --quick`) runs the same
configuration with fewer prompts and iterations: it checks that the config runs (its composition, prompt
file, models, providers and prices) at a fraction of the time, and its figures are those of the reduced
run, reported under `reduced` and never scaled up to pass as the full run's cost.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from picaco.base.config import ProviderSettings, RunConfig
from picaco.estimate_exact_pe import exact_pe_lines
from picaco.llm.calllog import read_call_log, usage_by_role
from picaco.llm.logprobs import chat_template_for
from picaco.llm.pricing import PriceTable
from picaco.llm.providers import provider_class
from picaco.llm.request import split_model
from picaco.method.run import optimize


def simulated_config(config: RunConfig, workdir: Path) -> RunConfig:
    # The simulator's hashed embeddings stand in for any embedding model: the counts of texts (and so
    # the tokens a paid embedding API would bill) are the same, and they cost no CPU time.
    # A from_run config is estimated as a fresh run: the earlier run's cache is what makes it cheaper, and
    # the estimate's own empty cache has none of it, so the figure is an upper bound.
    # Exact p_e needs log-probs the simulator cannot give: the run uses Eq. 6 and its M-step sample calls are
    # replaced by the echo calls afterwards (picaco/estimate_exact_pe.py).
    return config.model_copy(update={
        "picaco": config.picaco.model_copy(update={"pe_estimator": "similarity"}),
        "run_name": f"estimate-{config.run_name}",
        "runs_dir": workdir / "runs",
        "from_run": None,
        "models": config.models.model_copy(update={"target": "sim/target", "judge": "sim/judge",
                                                    "optimizer": "sim/optimizer", "embedding": "sim/embedding"}),
        "client": config.client.model_copy(update={
            # its own empty cache, never a shared one: cached answers would hide the calls being counted
            "cache_dir": workdir / "cache", "cache_url": "", "call_log_path": None, "cache_mode": "normal",
            "providers": {"sim": ProviderSettings(kind="sim", options={"world": "values"})}}),
    })


def reduced_config(config: RunConfig, prompts_limit: int | None, iterations_limit: int | None) -> RunConfig:
    """The same configuration with at most `prompts_limit` prompts (N) and `iterations_limit` iterations (T)."""
    p = config.picaco
    update = {"n_prompts": min(p.n_prompts, prompts_limit or p.n_prompts),
              "iterations": min(p.iterations, iterations_limit or p.iterations)}
    return config.model_copy(update={"picaco": p.model_copy(update=update)})


def check_providers(config: RunConfig) -> None:
    """Every configured model names a provider the client can build (ConfigError otherwise): the simulated
    run replaces them all, so this is where a misspelt provider or kind is caught, without a key."""
    for model in (config.models.target, config.models.judge, config.models.optimizer_model, config.models.embedding):
        provider_class(split_model(model)[0], config.client.providers)


def estimate(config: RunConfig, workdir: Path | None = None, on_event=None, *,
             prompts_limit: int | None = None, iterations_limit: int | None = None) -> dict:
    workdir = Path(workdir or tempfile.mkdtemp(prefix="picaco-estimate-"))
    check_providers(config)
    if config.picaco.pe_estimator == "logprob":  # the target's template, or one line before the simulated run
        chat_template_for(split_model(config.models.target)[0], config.client.providers)
    run_cfg = reduced_config(config, prompts_limit, iterations_limit)
    sim_cfg = simulated_config(run_cfg, workdir)
    optimize(sim_cfg, on_event=on_event)
    prices = PriceTable.load(config.client.prices_path)
    s = config.sampling
    models = {"target": config.models.target, "judge": config.models.judge,
              "optimizer": config.models.optimizer_model, "embedding": config.models.embedding}
    lines = read_call_log(sim_cfg.run_dir / "calls.jsonl")
    if config.picaco.pe_estimator == "logprob":
        lines = exact_pe_lines(run_cfg, sim_cfg, lines)
    usage = usage_by_role(lines)
    limits = {role: samples_per_call(model, config.client.providers) for role, model in models.items()}
    _split_calls(usage, lines, limits)
    max_tokens = {"target": s.target_max_tokens, "judge": s.judge_max_tokens, "optimizer": s.optimizer_max_tokens,
                  "embedding": 0}
    rows: dict[str, dict[str, Any]] = {}
    for role, u in usage.items():
        model = models.get(role, "?")
        cost = prices.cost(model, u["prompt_tokens"], u["completion_tokens"])
        scored = [x for x in lines if x.get("kind") == "call" and x.get("op") == "score" and x.get("role") == role]
        bound = prices.cost(model, u["prompt_tokens"] + sum(x["prompt_tokens_bound"] - x["prompt_tokens"] for x in scored),
                            u["samples_drawn"] * max_tokens.get(role, 0) + len(scored))
        rows[role] = {"model": model, "calls": u["calls"], "samples_per_call": limits.get(role),
                      "score_calls": len(scored),
                      "prompt_tokens": u["prompt_tokens"],
                      "completion_tokens": u["completion_tokens"], "cost_usd": cost,
                      "cost_upper_bound_usd": bound, "priced": cost is not None}
    total = sum(r["cost_usd"] or 0.0 for r in rows.values())
    total_bound = sum(r["cost_upper_bound_usd"] or 0.0 for r in rows.values())
    unpriced = [r["model"] for r in rows.values() if not r["priced"]]
    reduced = None
    if run_cfg.picaco != config.picaco:
        reduced = {"n_prompts": [run_cfg.picaco.n_prompts, config.picaco.n_prompts],
                   "iterations": [run_cfg.picaco.iterations, config.picaco.iterations]}
    return {"by_role": rows, "total_usd": total, "total_upper_bound_usd": total_bound, "unpriced_models": unpriced,
            "reduced": reduced, "workdir": str(workdir)}


def samples_per_call(model: str, providers: dict[str, ProviderSettings]) -> int:
    """The most samples one call of `model` returns: its provider's setting, else its kind's default
    (1 for llama.cpp and Ollama, which ignore `n`)."""
    cls, settings = provider_class(split_model(model)[0], providers)
    return settings.max_samples_per_call or cls.default_max_samples_per_call


def _split_calls(usage: dict[str, dict], lines: list[dict], limits: dict[str, int]) -> None:
    """The simulated run draws a request's n samples in one call; a server giving at most L per call
    needs ceil(n / L) calls, each billed for the prompt again. Adds those calls and prompt tokens."""
    for line in lines:
        if line.get("kind") != "call" or line.get("op") != "chat" or line.get("role") not in usage:
            continue
        extra = -(-int(line.get("n", 1)) // limits.get(line["role"], 1 << 30)) - 1
        if extra > 0:
            usage[line["role"]]["calls"] += extra
            usage[line["role"]]["prompt_tokens"] += extra * int(line.get("prompt_tokens") or 0)
