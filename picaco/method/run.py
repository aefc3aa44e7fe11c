"""Running Algorithm 1 with its state on disk, step by step, so a run can stop anywhere and resume.

The run store (picaco/method/store.py) keeps each step's state in its own file, written atomically after
the step finished; a restarted run continues after the last complete file, and every call it repeats
is answered by the cache. Before anything is written, every input is loaded and checked
(picaco/method/inputs.py); a resume whose inputs differ from the ones the run was started with is
refused, and so is each step of a run whose inputs changed since.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from picaco.base.config import RunConfig
from picaco.base.errors import RunStateError
from picaco.io import atomic_write_text
from picaco.llm.client import LLMClient
from picaco.method.inputs import RunInputs, held_out_prompts, load_composition_for, load_prompts, run_inputs
from picaco.method.picaco import (AlignedEntry, Candidate, EStepReport, EStepState, EStepTally, IterationState,
                                  NoisyState, RunContext, e_step, filtered_replies, m_step, merge_aligned_pools,
                                  noisy_pool_step, sample_and_judge)
from picaco.method.store import RunStore
from pydantic import BaseModel, ConfigDict

log = logging.getLogger(__name__)

Event = Callable[..., None]

# re-exported: callers import the inputs and the store from here
__all__ = ["RunStore", "RunStateError", "held_out_prompts", "load_composition_for", "load_prompts", "optimize",
           "start_run"]


def start_run(config: RunConfig) -> RunInputs:
    """Check every input (nothing is written when one is bad), then create the run directory or check
    that a resume has the inputs it was started with."""
    inputs = run_inputs(config)
    RunStore(config.run_dir).start(config, inputs)
    return inputs


def _checked(config: RunConfig) -> tuple[RunStore, RunInputs]:
    """A step run on its own (a Prefect task): the run was started, with the inputs the step would use."""
    store = RunStore(config.run_dir)
    inputs = run_inputs(config)
    store.verify(config, inputs)
    return store, inputs


# -- steps as units of work (what the Prefect tasks call) ------------------------------------------------
def _client_for(config: RunConfig) -> LLMClient:
    client_cfg = config.client
    if client_cfg.call_log_path is None:
        client_cfg = client_cfg.model_copy(update={"call_log_path": config.run_dir / "calls.jsonl"})
    return LLMClient(client_cfg)


async def _with_context(config: RunConfig, inputs: RunInputs, body):
    async with _client_for(config) as client:
        ctx = RunContext(config=config, composition=inputs.composition, prompts=inputs.prompts, client=client)
        result = await body(ctx)
        return result, client.usage_by_role()


def run_noisy_pool(config: RunConfig) -> NoisyState:
    """The first step: starts the run (see start_run), then R^n once."""
    return _noisy_pool(config, RunStore(config.run_dir), start_run(config))


def _noisy_pool(config: RunConfig, store: RunStore, inputs: RunInputs) -> NoisyState:
    existing = store.load_noisy()
    if existing is not None:
        return existing
    state, _ = asyncio.run(_with_context(config, inputs, noisy_pool_step))
    store.save_noisy(state)
    return state


def initial_iteration(inputs: RunInputs) -> IterationState:
    """Iteration 0: e^0 is the composition's seed meta-instruction (Tables 2-3), pools are empty."""
    seed = inputs.composition.seed_instruction
    cand = Candidate(instruction=seed, born=0)
    empty = EStepReport(instruction=seed, responses=0, judged=0, missing=0, judge_attempts=0, value_means={},
                        conformity=None, mean_q_phi=None)
    return IterationState(t=0, best=cand, candidates=[cand], pools={}, estep=empty)


def previous_iteration(store: RunStore, config: RunConfig, t: int, inputs: RunInputs) -> IterationState:
    if t == 1:
        return initial_iteration(inputs)
    prev = store.load_iteration(t - 1)
    if prev is None:
        raise RunStateError(f"iteration {t - 1} of run '{config.run_name}' is not complete; run it first")
    return prev


def _noisy_of(store: RunStore, config: RunConfig) -> NoisyState:
    noisy = store.load_noisy()
    if noisy is None:
        raise RunStateError(f"run '{config.run_name}' has no noisy pool yet; run the noisy-pool step first")
    return noisy


def run_e_step(config: RunConfig, t: int) -> EStepState:
    return _e_step(config, *_checked(config), t)


def _e_step(config: RunConfig, store: RunStore, inputs: RunInputs, t: int) -> EStepState:
    done = store.load_estep(t)
    if done is not None:
        return done
    noisy = _noisy_of(store, config)
    prev = previous_iteration(store, config, t, inputs)
    state, usage = asyncio.run(_with_context(
        config, inputs, lambda ctx: e_step(ctx, t, prev.best.instruction, prev.pools, noisy)))
    store.save_estep(state)
    store.save_json(f"iter_{t:03d}.estep.usage.json", usage)
    return state


class EStepShard(BaseModel):
    model_config = ConfigDict(extra="forbid")
    t: int
    shard: int
    n_shards: int
    fresh: dict[str, list[AlignedEntry]]
    tally: EStepTally


def run_e_step_shard(config: RunConfig, t: int, shard: int, n_shards: int) -> EStepShard:
    """The sampling and judging of one shard of X (prompts shard, shard+n_shards, ...): the unit a
    distributed task runner spreads over workers. Shards share the on-disk cache; the result is written
    to the run store, so a re-run shard returns at once."""
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard must be within [0, {n_shards}), got {shard}")
    return _e_step_shard(config, *_checked(config), t, shard, n_shards)


def _e_step_shard(config: RunConfig, store: RunStore, inputs: RunInputs, t: int, shard: int,
                  n_shards: int) -> EStepShard:
    name = f"iter_{t:03d}.estep.shard-{shard}-of-{n_shards}"
    done = store.load_model(f"{name}.json", EStepShard)
    if done is not None:
        return done
    noisy = _noisy_of(store, config)
    prev = previous_iteration(store, config, t, inputs)

    async def body(ctx: RunContext):
        s_vecs = await ctx.embed(noisy.observation)
        return await sample_and_judge(ctx, prev.best.instruction, t, s_vecs, ctx.prompts[shard::n_shards])

    (fresh, tally), usage = asyncio.run(_with_context(config, inputs, body))
    result = EStepShard(t=t, shard=shard, n_shards=n_shards, fresh=fresh, tally=tally)
    atomic_write_text(store.path(f"{name}.json"), result.model_dump_json())
    store.save_json(f"{name}.usage.json", usage)
    return result


def merge_e_step_shards(config: RunConfig, t: int, n_shards: int) -> EStepState:
    """Combine the shards of iteration t into the same EStepState a single-process E-step gives."""
    store, inputs = _checked(config)
    done = store.load_estep(t)
    if done is not None:
        return done
    prev = previous_iteration(store, config, t, inputs)
    fresh: dict[str, list[AlignedEntry]] = {}
    tally = EStepTally()
    usage: dict = {}
    for k in range(n_shards):
        shard = _e_step_shard(config, store, inputs, t, k, n_shards)
        fresh.update(shard.fresh)
        tally = tally + shard.tally
        usage = _merge_usage(usage, store.load_json(f"iter_{t:03d}.estep.shard-{k}-of-{n_shards}.usage.json") or {})
    ctx = RunContext(config=config, composition=inputs.composition, prompts=inputs.prompts, client=None)
    state = EStepState(t=t, pools=merge_aligned_pools(ctx, prev.pools, fresh), report=tally.report(
        prev.best.instruction, ctx.value_names))
    store.save_estep(state)
    store.save_json(f"iter_{t:03d}.estep.usage.json", usage)
    return state


def run_m_step(config: RunConfig, t: int) -> IterationState:
    return _m_step(config, *_checked(config), t)


def _m_step(config: RunConfig, store: RunStore, inputs: RunInputs, t: int) -> IterationState:
    done = store.load_iteration(t)
    if done is not None:
        return done
    estep = store.load_estep(t)
    if estep is None:
        raise RunStateError(f"iteration {t} of run '{config.run_name}' has no E-step yet")
    noisy = _noisy_of(store, config)
    prev = previous_iteration(store, config, t, inputs)
    (candidates, best, report), usage = asyncio.run(_with_context(
        config, inputs, lambda ctx: m_step(ctx, t, prev.candidates, estep.pools, noisy, prev.best.instruction)))
    estep_usage = store.load_json(f"iter_{t:03d}.estep.usage.json") or {}
    state = IterationState(t=t, best=best, candidates=candidates, pools=estep.pools, estep=estep.report,
                           mstep=report, usage_by_role=_merge_usage(estep_usage, usage))
    store.save_iteration(state)
    return state


def _merge_usage(a: dict, b: dict) -> dict:
    out = {role: dict(v) for role, v in a.items()}
    for role, v in b.items():
        target = out.setdefault(role, {})
        for k, x in v.items():
            target[k] = target.get(k, 0) + x
    return out


def run_final_report(config: RunConfig) -> dict:
    return _final_report(config, *_checked(config))


def _final_report(config: RunConfig, store: RunStore, inputs: RunInputs) -> dict:
    """Per-value scores of e^T on X (fresh samples: index block T+1), next to e^0's from iteration 1.
    The result describes iterations 1..T of this config exactly, also when the run went further before
    (a lower T gives the result a run of T iterations gives)."""
    T = config.picaco.iterations
    last = store.load_iteration(T)
    if last is None:
        raise RunStateError(f"run '{config.run_name}' has not finished iteration {T}")
    noisy = _noisy_of(store, config)
    first = store.load_iteration(1)

    async def body(ctx: RunContext):
        s_vecs = await ctx.embed(noisy.observation)
        _, tally = await sample_and_judge(ctx, last.best.instruction, T + 1, s_vecs)
        return tally.report(last.best.instruction, ctx.value_names)

    report, _ = asyncio.run(_with_context(config, inputs, body))
    history = [{"t": s.t, "tc": s.best.tc, "conformity_under_previous_best": s.estep.conformity,
                "best_changed": s.mstep.best_changed if s.mstep else None} for s in store.iterations(upto=T)]
    result = {
        "run_name": config.run_name,
        "composition": config.composition,
        "best_instruction": last.best.instruction,
        "best_tc": last.best.tc,
        "best_born": last.best.born,
        "value_scores": report.value_means,
        "conformity": report.conformity,
        "missing_judgements": report.missing,
        "filtered_replies": filtered_replies(noisy, store.iterations(), report),
        "seed_instruction": first.estep.instruction if first else None,
        "seed_value_scores": first.estep.value_means if first else None,
        "seed_conformity": first.estep.conformity if first else None,
        "history": history,
    }
    store.save_json("result.json", result)
    atomic_write_text(store.path("result.md"), result_markdown(result))
    return result


def _fmt(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def result_markdown(result: dict) -> str:
    lines = [f"# PICACO result: {result['run_name']}", "",
             f"Composition: **{result['composition']}**", "", "## Optimized meta-instruction", "",
             "> " + result["best_instruction"].replace("\n", "\n> "), "",
             "## Per-value judge scores (1-5) on the task prompts", "",
             "| value | seed (e^0) | optimized |", "|---|---|---|"]
    seed = result.get("seed_value_scores") or {}
    for v, score in result["value_scores"].items():
        lines.append(f"| {v} | {_fmt(seed.get(v))} | {_fmt(score)} |")
    lines += ["", f"Mean conformity: seed {_fmt(result.get('seed_conformity'))}, "
                  f"optimized {_fmt(result['conformity'])}. Missing judge scores: {result['missing_judgements']}. "
                  f"Replies refused by a content filter (left out as missing): {result.get('filtered_replies', 0)}.",
              "", "## TC_e per iteration", "", "| t | TC_e of e^t | conformity of responses under e^(t-1) |",
              "|---|---|---|"]
    for h in result["history"]:
        lines.append(f"| {h['t']} | {_fmt(h['tc'], 4)} | {_fmt(h['conformity_under_previous_best'])} |")
    return "\n".join(lines) + "\n"


def iteration_markdown(state: IterationState, history: list[IterationState] = ()) -> str:
    """The per-iteration Prefect artifact: TC_e per iteration so far, per-value scores, the instruction."""
    lines = [f"## Iteration {state.t}", "", f"TC_e of the best instruction: **{_fmt(state.best.tc, 4)}** "
             f"(born in iteration {state.best.born}; changed: {state.mstep.best_changed if state.mstep else '-'})",
             "", "| t | TC_e of e^t | mean judge score under e^(t-1) |", "|---|---|---|"]
    for past in [h for h in history if h.t < state.t] + [state]:
        lines.append(f"| {past.t} | {_fmt(past.best.tc, 4)} | {_fmt(past.estep.conformity)} |")
    lines += ["", "| value | mean score of responses under e^(t-1) |", "|---|---|"]
    lines += [f"| {v} | {_fmt(s)} |" for v, s in state.estep.value_means.items()]
    lines += ["", f"Judge replies missing after retries: {state.estep.missing} of {state.estep.responses}",
              "", "### Best instruction", "", "> " + state.best.instruction.replace("\n", "\n> "), "",
              "### Calls by role (this iteration)", "", "| role | calls | hits | misses | tokens |", "|---|---|---|---|---|"]
    for role, u in state.usage_by_role.items():
        lines.append(f"| {role} | {u.get('calls', 0)} | {u.get('samples_hit', 0)} | {u.get('samples_miss', 0)} | "
                     f"{u.get('prompt_tokens', 0) + u.get('completion_tokens', 0)} |")
    return "\n".join(lines) + "\n"


# -- the library call -------------------------------------------------------------------------------------
def optimize(config: RunConfig, on_event: Event | None = None) -> dict:
    """Run (or resume) PICACO to the end and return the result dict (also saved as result.json/.md)."""
    emit = on_event or (lambda *a, **k: None)
    inputs = start_run(config)
    store = RunStore(config.run_dir)
    emit("noisy_pool", t=0)
    _noisy_pool(config, store, inputs)
    start = store.last_complete_iteration() + 1
    if start > 1:
        emit("resume", t=min(start - 1, config.picaco.iterations))
    for t in range(start, config.picaco.iterations + 1):
        emit("e_step", t=t)
        _e_step(config, store, inputs, t)
        emit("m_step", t=t)
        state = _m_step(config, store, inputs, t)
        emit("iteration", t=t, state=state)
    emit("final", t=config.picaco.iterations)
    return _final_report(config, store, inputs)
