"""Exact p_e(y|x) against the paper's Eq. (6) on one real M-step, and the check against the engine itself.

    .venv/bin/python bench/logprob_pe.py [N_PROMPTS]

SmolLM2-135M-Instruct on a managed llama.cpp engine (logits_all, n_batch 1) is the target; the judge and the
optimizer are the simulated value world. One noisy pool, one E-step and one M-step's proposals are made
once; then the M-step's candidates are scored twice on the same pools, with Eq. (6) (n samples per prompt
under each candidate, embedded) and with the exact log-prob estimator (picaco.pe_estimator: logprob).

Prints and ends with one JSON line:
  logprob_check_max_abs_err_per_token  a greedy generation's log-probs as the engine reported them vs picaco's
                                       score of the same text (goal <= 1e-3)
  pe_rank_corr                         Spearman over the candidates between TC_e with Eq. (6) and with exact p_e
  pe_exact_tokens_ratio                target tokens the exact estimator spends / tokens Eq. (6) spends
                                       (prompt + generated, on the same candidates and pools, cold cache)
  engine_generated_tokens_per_s        generated tokens / seconds of the engine's chat calls (Eq. 6 samples;
                                       n_batch 1, so the prompt before them is evaluated token by token too)
  engine_scored_prompt_tokens_per_s    prompt tokens / seconds of the engine's echo calls (exact p_e)
(one request in flight, so a call's latency is the engine's time for it)
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from picaco.base.config import RunConfig
from picaco.llm.client import LLMClient
from picaco.llm.engine_check import check_engine
from picaco.llm.logprobs import chat_template_for
from picaco.method.context import RunContext, instructed_request
from picaco.method.exact_pe import PE_DEMONSTRATIONS
from picaco.method.inputs import run_inputs
from picaco.method.picaco import dedupe, e_step, noisy_pool_step, propose, score
from picaco.method.state import initial_iteration


def config(tmp: Path, n_prompts: int, estimator: str, log: str) -> RunConfig:
    return RunConfig.model_validate({
        "run_name": "bench-logprob", "composition": "hh_balance", "prompts": {"demo_family": "hh"},
        "models": {"target": "local/smollm2", "judge": "sim/judge", "optimizer": "sim/optimizer"},
        "sampling": {"target_max_tokens": 48},
        "picaco": {"n_prompts": n_prompts, "m1": 3, "m2": 4, "iterations": 1, "n_pe_samples": 3, "buckets": 1,
                   "samples_per_bucket": 3, "noisy_samples": 4, "held_out": 0, "judge_probe": False,
                   "pe_estimator": estimator},
        "client": {"cache_dir": str(tmp / "cache"), "call_log_path": str(tmp / log), "providers": {
            # one request in flight: the server answers one at a time, so a call's latency is its engine time
            "local": {"kind": "llamacpp", "max_concurrency": 1,
                      "options": {"gguf": "smollm2", "n_ctx": 2048, "logits_all": True, "n_batch": 1}},
            "sim": {"kind": "sim", "options": {"world": "values"}}}},
        "runs_dir": str(tmp / "runs"), "seed": 0})


def context(cfg: RunConfig, client: LLMClient) -> RunContext:
    inputs = run_inputs(cfg)
    return RunContext(config=cfg, composition=inputs.composition, prompts=inputs.prompts, client=client)


def target_calls(path: Path, op: str) -> list[dict]:
    rows = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return [r for r in rows if r["kind"] == "call" and r["op"] == op and r["role"] == "target"]


def tokens(calls: list[dict]) -> int:
    return sum(c["prompt_tokens"] + c["completion_tokens"] for c in calls)


def per_second(calls: list[dict], field: str) -> float:
    seconds = sum(c["latency_ms"] for c in calls) / 1000
    return sum(c[field] for c in calls) / seconds if seconds else float("nan")


def spearman(a: list[float], b: list[float]) -> float:
    def ranks(x):
        x = np.asarray(x, dtype=float)
        order = x.argsort(kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=float)
        for v in np.unique(x):  # ties share their mean rank
            r[x == v] = r[x == v].mean()
        return r
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


async def main(n_prompts: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="picaco-logprob-pe-") as d:
        tmp = Path(d)
        sim_cfg = config(tmp, n_prompts, "similarity", "similarity.jsonl")
        exact_cfg = config(tmp, n_prompts, "logprob", "exact.jsonl")
        async with LLMClient(config(tmp, n_prompts, "similarity", "setup.jsonl").client) as client:
            ctx = context(sim_cfg, client)
            t0 = time.perf_counter()
            noisy = await noisy_pool_step(ctx)
            start = initial_iteration(ctx.composition.seed_instruction)
            estep = await e_step(ctx, 1, start.best.instruction, {}, noisy)
            proposals = await propose(ctx, 1, start.candidates)
            pool = dedupe(1, start.candidates, proposals, sim_cfg.picaco.m2)
            setup_s = time.perf_counter() - t0
        candidates = pool.candidates
        results = {}
        for name, cfg in (("similarity", sim_cfg), ("logprob", exact_cfg)):
            async with LLMClient(cfg.client) as client:
                t0 = time.perf_counter()
                scored = await score(context(cfg, client), candidates, estep.pools, noisy)
                results[name] = ([s.candidate.tc for s in scored], time.perf_counter() - t0)
            print(f"{name}: TC_e {[round(x, 4) for x in results[name][0]]} in {results[name][1]:.1f} s")
        async with LLMClient(exact_cfg.client) as client:
            ctx = context(exact_cfg, client)
            template = chat_template_for("local", exact_cfg.client.providers)
            messages = instructed_request(ctx, candidates[-1].instruction, list(PE_DEMONSTRATIONS),
                                          ctx.prompts[0].text).messages
            client.provider("local")  # starts the engine, for its base_url
            engine = client._engines["local"]
            check = await check_engine(client, "local/smollm2", engine.base_url, messages, template, max_tokens=32)
        sim_calls = target_calls(tmp / "similarity.jsonl", "chat")
        exact_calls = target_calls(tmp / "exact.jsonl", "score")
        return {
            "n_prompts": n_prompts, "candidates": len(candidates),
            "pool_responses": sum(len(v) for v in estep.pools.values()),
            "setup_s": round(setup_s, 1), "eq6_score_s": round(results["similarity"][1], 1),
            "exact_score_s": round(results["logprob"][1], 1),
            "eq6_target_tokens": tokens(sim_calls), "exact_target_tokens": tokens(exact_calls),
            "check_tokens": len(check.engine_tokens), "check_tokens_match": check.tokens_match,
            "logprob_check_max_abs_err_per_token": check.max_abs_err_per_token,
            "pe_rank_corr": spearman(results["similarity"][0], results["logprob"][0]),
            "pe_exact_tokens_ratio": tokens(exact_calls) / tokens(sim_calls) if sim_calls else float("nan"),
            "engine_generated_tokens_per_s": per_second(sim_calls, "completion_tokens"),
            "engine_scored_prompt_tokens_per_s": per_second(exact_calls, "prompt_tokens"),
        }


if __name__ == "__main__":
    out = asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
    for key, value in out.items():
        print(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    print(json.dumps(out))
