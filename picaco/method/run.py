"""Running Algorithm 1 with its state on disk, step by step, so a run can stop anywhere and resume.

    state = iterate(run, state)        # for t = 1..T: the E-step, then the M-step (picaco/method/picaco.py)

Each step is "load, else compute and save" (RunStore.checkpoint): its state goes to its own file of the
run store (picaco/method/store.py), written atomically after the step finished; a restarted run continues
after the last complete file, and every call it repeats is answered by the cache. Before anything is
written, every input is loaded and checked (picaco/method/inputs.py); a resume whose inputs differ from
the ones the run was started with is refused, and so is each step of a run whose inputs changed since.

`optimize()` runs the whole loop with one LLMClient on one event loop. The `run_*` functions run one step
each (what a Prefect task calls): each checks the run, opens its own client, and resumes from the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from picaco.base.config import RunConfig
from picaco.base.errors import RunStateError
from picaco.io import atomic_write_text
from picaco.llm.budget import BudgetExceeded
from picaco.llm.client import LLMClient
from picaco.llm.usage import usage_scope
from picaco.method.context import RunContext
from picaco.method.held_out import held_out_comparison
from picaco.method.inputs import RunInputs, held_out_prompts, load_composition_for, load_prompts, run_inputs
from picaco.method.picaco import (
    MStepDraft,
    draft_m_step,
    e_step,
    m_step,
    merge_aligned_pools,
    noisy_pool_step,
    sample_and_judge,
)
from picaco.method.probe import JudgeProbe, probe_error, probe_judge
from picaco.method.result import OptimizeResult, history_row, result_markdown
from picaco.method.state import (
    EStepShard,
    EStepState,
    EStepTally,
    IterationState,
    NoisyState,
    filtered_replies,
    initial_iteration,
)
from picaco.method.store import RunStore

Event = Callable[..., None]
R = TypeVar("R")

# re-exported: callers import the inputs and the store from here
__all__ = ["RunStore", "RunStateError", "held_out_prompts", "load_composition_for", "load_prompts", "optimize",
           "start_run"]


def _quiet(*args, **kwargs) -> None:
    """The event sink of a run nobody watches."""


def start_run(config: RunConfig) -> RunInputs:
    """Check every input (nothing is written when one is bad), then create the run directory or check
    that a resume has the inputs it was started with."""
    inputs = run_inputs(config)
    RunStore(config.run_dir).start(config, inputs)
    return inputs


@dataclass(frozen=True)
class Run:
    """A started run: what its steps compute with (ctx) and where they checkpoint (store)."""

    ctx: RunContext
    store: RunStore
    emit: Event = _quiet

    @property
    def config(self) -> RunConfig:
        return self.ctx.config


@dataclass(frozen=True)
class RunState:
    """What Algorithm 1 carries from one iteration to the next: the fixed noisy pool and iteration t."""

    noisy: NoisyState
    iteration: IterationState

    @property
    def t(self) -> int:
        return self.iteration.t


async def _measured(work: Awaitable[R]) -> tuple[R, dict[str, dict]]:
    """The result of `work` and the calls it made, by role (its own: not those of a step running beside it)."""
    with usage_scope() as scope:
        result = await work
    return result, {role: u.as_dict() for role, u in sorted(scope.items())}


def _merge_usage(a: dict, b: dict) -> dict:
    out = {role: dict(v) for role, v in a.items()}
    for role, v in b.items():
        target = out.setdefault(role, {})
        for k, x in v.items():
            target[k] = target.get(k, 0) + x
    return out


def _estep_name(t: int) -> str:
    return f"iter_{t:03d}.estep"


# -- the steps, checkpointed ------------------------------------------------------------------------------
async def judge_probe(run: Run) -> JudgeProbe | None:
    """picaco's judge calibration probe (picaco/method/probe.py), before the first target call of every
    start; recorded in judge_probe.json, and a judge on an inverted or flat scale stops the run."""
    if not run.config.picaco.judge_probe:
        return None
    run.emit("judge_probe", t=0)
    probe = await probe_judge(run.ctx)
    record = probe.model_dump(mode="json")
    if run.store.load_json("judge_probe.json") != record:  # a resume leaves an unchanged record untouched
        run.store.save_json("judge_probe.json", record)
    if probe.failed:
        raise probe_error(probe)
    return probe


async def noisy_pool(run: Run) -> NoisyState:
    """R^n, once (Alg. 1 lines 9-12)."""
    return await run.store.checkpoint("noisy.json", NoisyState, lambda: noisy_pool_step(run.ctx))


async def e_step_of(run: Run, state: RunState) -> EStepState:
    """Alg. 1 lines 4-8 of iteration t = state.t + 1, under e^(t-1)."""
    t = state.t + 1

    async def compute() -> EStepState:
        estep, usage = await _measured(e_step(run.ctx, t, state.iteration.best.instruction,
                                                   state.iteration.pools, state.noisy))
        run.store.save_json(f"{_estep_name(t)}.usage.json", usage)
        return estep

    return await run.store.checkpoint(f"{_estep_name(t)}.json", EStepState, compute)


async def m_step_of(run: Run, state: RunState, estep: EStepState,
                    draft: Awaitable[tuple[MStepDraft, dict]] | None = None) -> IterationState:
    """Alg. 1 lines 13-14 of iteration estep.t: the complete iteration, with its calls by role. `draft`: the
    M-step's proposals and p_e samples with their calls, started while the E-step ran (see iterate)."""
    async def compute() -> IterationState:
        drafted, draft_usage = await draft if draft else (None, {})
        iteration, usage = await _measured(m_step(run.ctx, state.iteration, estep, state.noisy, drafted))
        estep_usage = run.store.load_json(f"{_estep_name(estep.t)}.usage.json") or {}
        return iteration.model_copy(update={"usage_by_role": _merge_usage(estep_usage, _merge_usage(draft_usage, usage))})

    return await run.store.checkpoint(f"iter_{estep.t:03d}.json", IterationState, compute)


async def iterate(run: Run, state: RunState) -> RunState:
    """One iteration of Algorithm 1: t = state.t + 1. The M-step's draft (proposals, p_e samples and their
    embeddings) needs iteration t-1 only, so it starts with the E-step: with a remote model the CPU embeds
    while the E-step's calls are out, and the step takes about max(calls, embedding) rather than their sum.
    Each step's usage counts its own calls (picaco/llm/usage.py's scopes); the draft's go to the M-step.
    The draft's calls are cached like every other, so a crash costs nothing twice."""
    t = state.t + 1
    run.emit("e_step", t=t)
    async def drafted() -> tuple[MStepDraft, dict]:  # the draft's coroutine made only once its task runs
        return await _measured(draft_m_step(run.ctx, t, state.iteration))

    ahead = asyncio.ensure_future(drafted()) if run.store.load_iteration(t) is None else None
    try:
        estep = await e_step_of(run, state)
    except BaseException:
        if ahead is not None:
            ahead.cancel()
            await asyncio.gather(ahead, return_exceptions=True)
        raise
    run.emit("m_step", t=t)
    iteration = await m_step_of(run, state, estep, ahead)
    run.emit("iteration", t=t, state=iteration)
    return RunState(noisy=state.noisy, iteration=iteration)


async def e_step_shard(run: Run, state: RunState, shard: int, n_shards: int) -> EStepShard:
    """The sampling and judging of one shard of X (prompts shard, shard+n_shards, ...) in iteration
    state.t + 1: the unit a distributed task runner spreads over workers. Shards share the cache and the
    run store, so a re-run shard returns at once."""
    t = state.t + 1
    name = f"{_estep_name(t)}.shard-{shard}-of-{n_shards}"

    async def compute() -> EStepShard:
        async def work():
            s_vecs = await run.ctx.embed(state.noisy.observation)
            return await sample_and_judge(run.ctx, state.iteration.best.instruction, run.ctx.block_offset + t, s_vecs,
                                          run.ctx.prompts[shard::n_shards])

        (fresh, tally), usage = await _measured(work())
        run.store.save_json(f"{name}.usage.json", usage)
        return EStepShard(t=t, shard=shard, n_shards=n_shards, fresh=fresh, tally=tally)

    return await run.store.checkpoint(f"{name}.json", EStepShard, compute)


async def merged_e_step(run: Run, state: RunState, n_shards: int) -> EStepState:
    """The shards of iteration state.t + 1 combined into the EStepState a single-process E-step gives."""
    t = state.t + 1

    async def compute() -> EStepState:
        fresh, tally, usage = {}, EStepTally(), dict[str, dict]()
        for k in range(n_shards):
            shard = await e_step_shard(run, state, k, n_shards)
            fresh.update(shard.fresh)
            tally = tally + shard.tally
            usage = _merge_usage(usage, run.store.load_json(f"{_estep_name(t)}.shard-{k}-of-{n_shards}.usage.json")
                                 or {})
        instruction = state.iteration.best.instruction
        merged = EStepState(t=t, pools=merge_aligned_pools(run.ctx, state.iteration.pools, fresh),
                            report=tally.report(instruction, run.ctx.value_names))
        run.store.save_json(f"{_estep_name(t)}.usage.json", usage)
        return merged

    return await run.store.checkpoint(f"{_estep_name(t)}.json", EStepState, compute)


async def final_report(run: Run, state: RunState) -> OptimizeResult:
    """Per-value scores of e^T on X (fresh samples: index block T+1), next to e^0's from iteration 1, and
    both on held-out prompts with the same demonstrations and samples (picaco/method/held_out.py).
    The result describes iterations 1..T of this config exactly, also when the run went further before
    (a lower T gives the result a run of T iterations gives)."""
    T_ = state.t
    last, store = state.iteration, run.store
    s_vecs = await run.ctx.embed(state.noisy.observation)
    _, tally = await sample_and_judge(run.ctx, last.best.instruction, run.ctx.block_offset + T_ + 1, s_vecs)
    report = tally.report(last.best.instruction, run.ctx.value_names)
    first = store.load_iteration(1)
    held_out = await held_out_comparison(run.ctx, run.ctx.start_instructions[0], last.best.instruction, s_vecs)
    result = OptimizeResult(
        run_name=run.config.run_name, composition=run.config.composition, best_instruction=last.best.instruction,
        best_tc=last.best.tc, best_born=last.best.born, value_scores=report.value_means,
        conformity=report.conformity, missing_judgements=report.missing,
        filtered_replies=filtered_replies(state.noisy, store.iterations(), report),
        seed_instruction=first.estep.instruction if first else None,
        seed_value_scores=first.estep.value_means if first else None,
        seed_conformity=first.estep.conformity if first else None,
        history=[history_row(s) for s in store.iterations(upto=T_)],
        judge_probe=store.load_json("judge_probe.json") if run.config.picaco.judge_probe else None,
        held_out=held_out.model_dump(mode="json") if held_out else None)
    store.save_json("result.json", result.model_dump(mode="json"))
    atomic_write_text(store.path("result.md"), result_markdown(result))
    return result


# -- where a run stands -----------------------------------------------------------------------------------
def _noisy_of(run: Run) -> NoisyState:
    noisy = run.store.load_noisy()
    if noisy is None:
        raise RunStateError(f"run '{run.config.run_name}' has no noisy pool yet; run the noisy-pool step first")
    return noisy


def _iteration(run: Run, t: int) -> IterationState:
    """Iteration t from the store (0: the seed)."""
    if t == 0:
        return initial_iteration(*run.ctx.start_instructions)
    state = run.store.load_iteration(t)
    if state is None:
        raise RunStateError(f"iteration {t} of run '{run.config.run_name}' is not complete; run it first")
    return state


def state_before(run: Run, t: int) -> RunState:
    """What iteration t starts from: the noisy pool and iteration t - 1."""
    return RunState(noisy=_noisy_of(run), iteration=_iteration(run, t - 1))


def left_to_do(store: RunStore, iterations: int) -> str:
    """What a stopped run still has to compute, from its store (a budget stop says it)."""
    done = min(store.last_complete_iteration(), iterations)
    left = [] if store.load_noisy() is not None else ["the noisy pool"]
    if done < iterations:
        span = f"iteration {iterations}" if done + 1 == iterations else f"iterations {done + 1}-{iterations}"
        saved = " (the E-step of the first is saved)" if store.load_estep(done + 1) is not None else ""
        left.append(f"{span} of {iterations}{saved}")
    return ", ".join(left + ["the final report"])


# -- running: the whole loop on one client, or one step per call -------------------------------------------
def _client_for(config: RunConfig) -> LLMClient:
    client_cfg = config.client
    if client_cfg.call_log_path is None:
        client_cfg = client_cfg.model_copy(update={"call_log_path": config.run_dir / "calls.jsonl"})
    return LLMClient(client_cfg)


async def _with_run(config: RunConfig, inputs: RunInputs, body: Callable[[Run], Awaitable], emit: Event | None = None):
    async with _client_for(config) as client:
        ctx = RunContext(config=config, composition=inputs.composition, prompts=inputs.prompts, client=client,
                         seeds=inputs.seeds, block_offset=inputs.block_offset)
        run = Run(ctx=ctx, store=RunStore(config.run_dir), emit=emit or _quiet)
        try:
            return await body(run)
        except BudgetExceeded as exc:  # the budget's line, plus where the run stands: whole loop or one step
            raise exc.with_left(left_to_do(run.store, config.picaco.iterations)) from None


def _step(config: RunConfig, body: Callable[[Run], Awaitable]):
    """One step of a started run on its own (a Prefect task): checked against the run's inputs, with its
    own client and event loop."""
    inputs = run_inputs(config)
    RunStore(config.run_dir).verify(config, inputs)
    return asyncio.run(_with_run(config, inputs, body))


def run_noisy_pool(config: RunConfig) -> NoisyState:
    """The first step: starts the run (see start_run), then R^n once."""
    inputs = start_run(config)

    async def body(run: Run) -> NoisyState:
        await judge_probe(run)
        return await noisy_pool(run)

    return asyncio.run(_with_run(config, inputs, body))


def run_e_step(config: RunConfig, t: int) -> EStepState:
    return _step(config, lambda run: e_step_of(run, state_before(run, t)))


def run_e_step_shard(config: RunConfig, t: int, shard: int, n_shards: int) -> EStepShard:
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard must be within [0, {n_shards}), got {shard}")
    return _step(config, lambda run: e_step_shard(run, state_before(run, t), shard, n_shards))


def merge_e_step_shards(config: RunConfig, t: int, n_shards: int) -> EStepState:
    return _step(config, lambda run: merged_e_step(run, state_before(run, t), n_shards))


def run_m_step_draft(config: RunConfig, t: int) -> int:
    """The M-step's draft of iteration t (proposals, p_e samples, their embeddings) into the call cache, run
    beside the E-step by the flows: the M-step then finds every one of those calls cached. Returns the
    number of candidates drafted (0 when iteration t is already done)."""
    async def body(run: Run) -> int:
        if run.store.load_iteration(t) is not None:
            return 0
        draft = await draft_m_step(run.ctx, t, state_before(run, t).iteration)
        return len(draft.pool.candidates)

    return _step(config, body)


def run_m_step(config: RunConfig, t: int) -> IterationState:
    async def body(run: Run) -> IterationState:
        state = state_before(run, t)
        estep = run.store.load_estep(t)
        if estep is None:
            done = run.store.load_iteration(t)
            if done is None:
                raise RunStateError(f"iteration {t} of run '{config.run_name}' has no E-step yet")
            return done
        return await m_step_of(run, state, estep)

    return _step(config, body)


def run_final_report(config: RunConfig) -> OptimizeResult:
    T_ = config.picaco.iterations

    async def body(run: Run) -> OptimizeResult:
        if run.store.load_iteration(T_) is None:
            raise RunStateError(f"run '{config.run_name}' has not finished iteration {T_}")
        return await final_report(run, state_before(run, T_ + 1))

    return _step(config, body)


def optimize(config: RunConfig, on_event: Event | None = None) -> OptimizeResult:
    """Run (or resume) PICACO to the end and return the result (also saved as result.json/.md)."""
    inputs = start_run(config)

    T_ = config.picaco.iterations

    async def steps(run: Run) -> OptimizeResult:
        await judge_probe(run)
        run.emit("noisy_pool", t=0)
        noisy = await noisy_pool(run)
        done = min(run.store.last_complete_iteration(), T_)
        if done:
            run.emit("resume", t=done)
        state = RunState(noisy=noisy, iteration=_iteration(run, done))
        while state.t < T_:
            state = await iterate(run, state)
        run.emit("final", t=T_)
        return await final_report(run, state)

    return asyncio.run(_with_run(config, inputs, steps, on_event))
