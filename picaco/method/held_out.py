"""The seed vs the optimized instruction on held-out prompts (picaco's extension; docs/method.md).

The in-sample figures of result.json score e^0 with the E-step of t = 1 and e^T with fresh samples of
block T+1, both on X, which the optimization saw. Here both instructions answer the prompts after X in the
same source with the same buckets of demonstrations and the same sample indices (one block apart from
any iteration's), so the only difference is the instruction; the paired difference of each prompt's
conformity (optimized minus seed) gets a percentile bootstrap interval.
"""

from __future__ import annotations

import logging

import numpy as np
from pydantic import BaseModel, ConfigDict

from picaco.method.context import RunContext
from picaco.method.inputs import held_out_prompts, prompt_source
from picaco.method.picaco import sample_and_judge
from picaco.stats import Interval, paired_difference

log = logging.getLogger(__name__)

# Held-out samples use their own block of sample indices (and buckets), apart from any iteration's.
HELD_OUT_SAMPLE_BLOCK = 10_000


class HeldOutScores(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    value_means: dict[str, float | None]
    conformity: float | None
    missing: int
    responses: int
    per_prompt: dict[str, float]  # each prompt's conformity: mean over its judged responses of the value mean


class HeldOutComparison(BaseModel):
    """What result.json's `held_out` holds."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    prompts: int
    sample_block: int
    bootstrap: int
    seed: HeldOutScores
    optimized: HeldOutScores
    difference: Interval | None  # optimized minus seed, paired by prompt; None: no prompt judged under both


async def judge_on_held_out(ctx: RunContext, instructions: dict[str, str],
                            observation_vecs: np.ndarray) -> dict[str, HeldOutScores]:
    """Responses of each instruction on ctx.prompts under the E-step protocol, judged; the same
    demonstrations and sample indices for every instruction."""
    out = {}
    for name, instruction in instructions.items():
        fresh, tally = await sample_and_judge(ctx, instruction, HELD_OUT_SAMPLE_BLOCK, observation_vecs)
        report = tally.report(instruction, ctx.value_names)
        per_prompt = {pid: float(np.mean([np.mean(list(e.scores.values())) for e in entries]))
                      for pid, entries in fresh.items() if entries}
        out[name] = HeldOutScores(value_means=report.value_means, conformity=report.conformity,
                                  missing=report.missing, responses=report.responses, per_prompt=per_prompt)
    return out


async def held_out_comparison(ctx: RunContext, seed_instruction: str, optimized: str,
                              observation_vecs: np.ndarray) -> HeldOutComparison | None:
    """The comparison on up to `picaco.held_out` prompts after X (None when 0 or the source has none left)."""
    cfg = ctx.config
    rows, where = prompt_source(cfg)
    count = min(cfg.picaco.held_out, len(rows) - cfg.prompts.offset - cfg.picaco.n_prompts)
    if count <= 0:
        if cfg.picaco.held_out:
            log.warning("no held-out comparison: %s holds no prompts after X", where)
        return None
    if count < cfg.picaco.held_out:
        log.warning("held-out comparison on %d prompts: %s holds no more after X", count, where)
    held = RunContext(config=ctx.config, composition=ctx.composition, prompts=held_out_prompts(ctx.config, count),
                      client=ctx.client, seeds=ctx.seeds, block_offset=ctx.block_offset)
    scores = await judge_on_held_out(held, {"seed": seed_instruction, "optimized": optimized}, observation_vecs)
    b = cfg.picaco.held_out_bootstrap
    diff = paired_difference(scores["optimized"].per_prompt, scores["seed"].per_prompt, b=b, seed=cfg.seed,
                             purpose="held-out")
    return HeldOutComparison(prompts=count, sample_block=HELD_OUT_SAMPLE_BLOCK, bootstrap=b,
                             seed=scores["seed"], optimized=scores["optimized"], difference=diff)
