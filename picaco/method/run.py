"""Running Algorithm 1 with its state on disk, step by step, so a run can stop anywhere and resume.

Layout of `artifacts/runs/<run>/`:
    config.json            the run's config (a restart with a different method config is refused)
    noisy.json             R^n and S (written once)
    iter_003.estep.json    R^a after the E-step of iteration 3
    iter_003.json          the complete iteration 3: pools, candidates with TC_e, e^3, usage by role
    result.json/.md        the best instruction with its per-value scores
    calls.jsonl            the call log of every step

Each file is written atomically, after its step finished; a restarted run continues after the last
complete file, and every call it repeats is answered by the cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

from picaco.config import RunConfig
from picaco.io import atomic_write_json, atomic_write_text, read_prompt_table
from picaco.llm.client import LLMClient
from picaco.llm.errors import ConfigError
from picaco.method.picaco import (AlignedEntry, Candidate, EStepState, EStepTally, IterationState, NoisyState,
                                  RunContext, TaskPrompt, e_step, filtered_replies, merge_aligned_pools, m_step,
                                  noisy_pool_step, sample_and_judge, select_task_prompts)
from pydantic import BaseModel, ConfigDict

log = logging.getLogger(__name__)

Event = Callable[..., None]


# -- inputs ---------------------------------------------------------------------------------------------
def load_prompts(config: RunConfig) -> list[TaskPrompt]:
    src, n = config.prompts, config.picaco.n_prompts
    if src.demo_family is not None:
        from picaco.values import load_demo_prompts

        rows = load_demo_prompts(family=src.demo_family)
        where = f"bundled demo prompts ({src.demo_family})"
    else:
        rows = read_prompt_table(src.path)
        where = str(src.path)
    return select_task_prompts(rows, src.offset, n, where, "picaco.n_prompts")


def held_out_prompts(config: RunConfig, count: int) -> list[TaskPrompt]:
    """Prompts after the optimization set in the same source: the demo's held-out test prompts."""
    shifted = config.model_copy(update={"prompts": config.prompts.model_copy(
        update={"offset": config.prompts.offset + config.picaco.n_prompts}),
        "picaco": config.picaco.model_copy(update={"n_prompts": count})})
    return load_prompts(shifted)


def load_composition_for(config: RunConfig):
    from picaco.values import load_composition

    return load_composition(config.composition)


# -- the store ------------------------------------------------------------------------------------------
class RunStore:
    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir)

    def path(self, name: str) -> Path:
        return self.dir / name

    def check_config(self, config: RunConfig) -> None:
        """A run directory belongs to one method config; T may grow (continue a finished run)."""
        fingerprint = _method_fingerprint(config)
        stored = self.path("config.json")
        if stored.exists():
            previous = json.loads(stored.read_text(encoding="utf-8"))
            if previous.get("fingerprint") != fingerprint["fingerprint"]:
                raise ConfigError(
                    f"run '{config.run_name}' in {self.dir} was started with a different config "
                    f"(composition, prompts, models, sampling, seed or method settings differ); "
                    f"choose a new run_name or delete the folder")
        atomic_write_json(stored, fingerprint)

    def load_noisy(self) -> NoisyState | None:
        p = self.path("noisy.json")
        return NoisyState.model_validate_json(p.read_text(encoding="utf-8")) if p.exists() else None

    def save_noisy(self, state: NoisyState) -> None:
        atomic_write_text(self.path("noisy.json"), state.model_dump_json(indent=1))

    def load_estep(self, t: int) -> EStepState | None:
        p = self.path(f"iter_{t:03d}.estep.json")
        return EStepState.model_validate_json(p.read_text(encoding="utf-8")) if p.exists() else None

    def save_estep(self, state: EStepState) -> None:
        atomic_write_text(self.path(f"iter_{state.t:03d}.estep.json"), state.model_dump_json(indent=1))

    def load_iteration(self, t: int) -> IterationState | None:
        p = self.path(f"iter_{t:03d}.json")
        return IterationState.model_validate_json(p.read_text(encoding="utf-8")) if p.exists() else None

    def save_iteration(self, state: IterationState) -> None:
        atomic_write_text(self.path(f"iter_{state.t:03d}.json"), state.model_dump_json(indent=1))

    def last_complete_iteration(self) -> int:
        done = sorted(int(p.name[5:8]) for p in self.dir.glob("iter_[0-9][0-9][0-9].json"))
        t = 0
        for k in done:  # only a gapless prefix counts
            if k == t + 1:
                t = k
        return t

    def iterations(self) -> list[IterationState]:
        out = []
        for t in range(1, self.last_complete_iteration() + 1):
            state = self.load_iteration(t)
            if state is not None:
                out.append(state)
        return out


def _method_fingerprint(config: RunConfig) -> dict:
    relevant = config.model_dump(mode="json", exclude={"client", "runs_dir", "run_name"})
    relevant["picaco"].pop("iterations", None)
    text = json.dumps(relevant, sort_keys=True)
    return {"fingerprint": hashlib.sha256(text.encode()).hexdigest(), "config": config.model_dump(mode="json")}


# -- steps as units of work (what the Prefect tasks call) ------------------------------------------------
def _client_for(config: RunConfig) -> LLMClient:
    client_cfg = config.client
    if client_cfg.call_log_path is None:
        client_cfg = client_cfg.model_copy(update={"call_log_path": config.run_dir / "calls.jsonl"})
    return LLMClient(client_cfg)


async def _with_context(config: RunConfig, body):
    async with _client_for(config) as client:
        ctx = RunContext(config=config, composition=load_composition_for(config), prompts=load_prompts(config),
                         client=client)
        result = await body(ctx)
        return result, client.usage_by_role()


def run_noisy_pool(config: RunConfig) -> NoisyState:
    store = RunStore(config.run_dir)
    store.check_config(config)
    existing = store.load_noisy()
    if existing is not None:
        return existing
    state, _ = asyncio.run(_with_context(config, noisy_pool_step))
    store.save_noisy(state)
    return state


def initial_iteration(config: RunConfig) -> IterationState:
    """Iteration 0: e^0 is the composition's seed meta-instruction (Tables 2-3), pools are empty."""
    from picaco.method.picaco import EStepReport

    seed = load_composition_for(config).seed_instruction
    cand = Candidate(instruction=seed, born=0)
    empty = EStepReport(instruction=seed, responses=0, judged=0, missing=0, judge_attempts=0, value_means={},
                        conformity=None, mean_q_phi=None)
    return IterationState(t=0, best=cand, candidates=[cand], pools={}, estep=empty)


def previous_iteration(store: RunStore, config: RunConfig, t: int) -> IterationState:
    if t == 1:
        return initial_iteration(config)
    prev = store.load_iteration(t - 1)
    if prev is None:
        raise RuntimeError(f"iteration {t - 1} of run '{config.run_name}' is not complete; run it first")
    return prev


def run_e_step(config: RunConfig, t: int) -> EStepState:
    store = RunStore(config.run_dir)
    done = store.load_estep(t)
    if done is not None:
        return done
    noisy = store.load_noisy()
    if noisy is None:
        raise RuntimeError(f"run '{config.run_name}' has no noisy pool yet; run the noisy-pool step first")
    prev = previous_iteration(store, config, t)
    state, usage = asyncio.run(_with_context(
        config, lambda ctx: e_step(ctx, t, prev.best.instruction, prev.pools, noisy)))
    store.save_estep(state)
    atomic_write_json(store.path(f"iter_{t:03d}.estep.usage.json"), usage)
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
    store = RunStore(config.run_dir)
    path = store.path(f"iter_{t:03d}.estep.shard-{shard}-of-{n_shards}.json")
    if path.exists():
        return EStepShard.model_validate_json(path.read_text(encoding="utf-8"))
    noisy = store.load_noisy()
    if noisy is None:
        raise RuntimeError(f"run '{config.run_name}' has no noisy pool yet; run the noisy-pool step first")
    prev = previous_iteration(store, config, t)

    async def body(ctx: RunContext):
        s_vecs = await ctx.embed(noisy.observation)
        return await sample_and_judge(ctx, prev.best.instruction, t, s_vecs, ctx.prompts[shard::n_shards])

    (fresh, tally), usage = asyncio.run(_with_context(config, body))
    result = EStepShard(t=t, shard=shard, n_shards=n_shards, fresh=fresh, tally=tally)
    atomic_write_text(path, result.model_dump_json())
    atomic_write_json(store.path(f"iter_{t:03d}.estep.shard-{shard}-of-{n_shards}.usage.json"), usage)
    return result


def merge_e_step_shards(config: RunConfig, t: int, n_shards: int) -> EStepState:
    """Combine the shards of iteration t into the same EStepState a single-process E-step gives."""
    store = RunStore(config.run_dir)
    done = store.load_estep(t)
    if done is not None:
        return done
    prev = previous_iteration(store, config, t)
    fresh: dict[str, list[AlignedEntry]] = {}
    tally = EStepTally()
    usage: dict = {}
    for k in range(n_shards):
        shard = run_e_step_shard(config, t, k, n_shards)
        fresh.update(shard.fresh)
        tally = tally + shard.tally
        usage_path = store.path(f"iter_{t:03d}.estep.shard-{k}-of-{n_shards}.usage.json")
        usage = _merge_usage(usage, json.loads(usage_path.read_text()) if usage_path.exists() else {})
    prompts = load_prompts(config)
    ctx = RunContext(config=config, composition=load_composition_for(config), prompts=prompts, client=None)
    names = [v.name for v in ctx.composition.values]
    state = EStepState(t=t, pools=merge_aligned_pools(ctx, prev.pools, fresh), report=tally.report(
        prev.best.instruction, names))
    store.save_estep(state)
    atomic_write_json(store.path(f"iter_{t:03d}.estep.usage.json"), usage)
    return state


def run_m_step(config: RunConfig, t: int) -> IterationState:
    store = RunStore(config.run_dir)
    done = store.load_iteration(t)
    if done is not None:
        return done
    estep = store.load_estep(t)
    if estep is None:
        raise RuntimeError(f"iteration {t} of run '{config.run_name}' has no E-step yet")
    noisy = store.load_noisy()
    prev = previous_iteration(store, config, t)
    (candidates, best, report), usage = asyncio.run(_with_context(
        config, lambda ctx: m_step(ctx, t, prev.candidates, estep.pools, noisy, prev.best.instruction)))
    estep_usage_path = store.path(f"iter_{t:03d}.estep.usage.json")
    estep_usage = json.loads(estep_usage_path.read_text()) if estep_usage_path.exists() else {}
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
    """Per-value scores of e^T on X (fresh samples: index block T+1), next to e^0's from iteration 1."""
    store = RunStore(config.run_dir)
    T = config.picaco.iterations
    last = store.load_iteration(T)
    if last is None:
        raise RuntimeError(f"run '{config.run_name}' has not finished iteration {T}")
    noisy = store.load_noisy()
    first = store.load_iteration(1)

    async def body(ctx: RunContext):
        s_vecs = await ctx.embed(noisy.observation)
        _, tally = await sample_and_judge(ctx, last.best.instruction, T + 1, s_vecs)
        return tally.report(last.best.instruction, ctx.value_names)

    report, _ = asyncio.run(_with_context(config, body))
    history = [{"t": s.t, "tc": s.best.tc, "conformity_under_previous_best": s.estep.conformity,
                "best_changed": s.mstep.best_changed if s.mstep else None} for s in store.iterations()]
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
    atomic_write_json(store.path("result.json"), result)
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
    store = RunStore(config.run_dir)
    store.check_config(config)
    emit("noisy_pool", t=0)
    run_noisy_pool(config)
    start = store.last_complete_iteration() + 1
    if start > 1:
        emit("resume", t=start - 1)
    for t in range(start, config.picaco.iterations + 1):
        emit("e_step", t=t)
        run_e_step(config, t)
        emit("m_step", t=t)
        state = run_m_step(config, t)
        emit("iteration", t=t, state=state)
    emit("final", t=config.picaco.iterations)
    return run_final_report(config)
