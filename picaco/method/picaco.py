"""Algorithm 1 of the paper as steps over typed records.

    noisy_pool_step  - R^n: raw responses (no instruction), top-M2 by q_phi, with p(yhat|x)   (once)
    e_step           - sample under e^{t-1} in buckets, judge, q_phi, R^a <- top-M1           (Alg. 1, 4-8)
    m_step           - M2 new instructions from the optimizer + the M2 best kept, all rescored
                       by Eq. (4) on the current pools; the argmax is e^t                       (Alg. 1, 13-14)

Each step reads its inputs from records and returns records; calls go through the LLMClient (so every
one is cached), and every random choice comes from `derive_rng(run seed, step, indices)`.

A reply that a content filter refused is a *missing* sample, never a made-up one: a missing target
response is left out (and counted as `filtered` in its step's report), a refused judge or optimizer reply
is asked again like an unusable one, and the run goes on. `filtered_replies` sums them for the result.

Choices where the paper is silent are marked "Choice:" and collected in docs/method.md.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict

from picaco.base.config import RunConfig
from picaco.base.errors import PicacoError
from picaco.base.prompts import TaskPrompt
from picaco.llm.client import LLMClient
from picaco.llm.request import ChatRequest, ChatResponse, Sample
from picaco.method.estimators import Judgement, judge_many, p_e, q_phi, value_judge_parser
from picaco.method.objective import log_q_phi, response_weight, tc_objective
from picaco.method.pools import AlignedEntry, NoisyEntry, select_noisy_pool, update_aligned_pool
from picaco.rng import derive_rng
from picaco.templates import (TECHNIQUES, TEMPLATE_VERSION, parse_instruction, render_e_step, render_m_step,
                              render_value_elaboration, render_value_judge)
from picaco.templates.render import render_query

log = logging.getLogger(__name__)


class NoisyState(BaseModel):
    model_config = ConfigDict(extra="forbid")
    observation: list[str]  # S
    pools: dict[str, list[NoisyEntry]]  # prompt_id -> top-M2
    filtered: int = 0  # raw, reference and S samples refused by a content filter (missing)


class Candidate(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    instruction: str
    born: int  # iteration that proposed it (0: the seed)
    tc: float | None = None  # TC_e on the pools of the iteration that last scored it
    aligned_term: float | None = None
    noisy_term: float | None = None


class EStepReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instruction: str
    responses: int
    judged: int
    missing: int  # responses with no usable judge reply after every attempt
    judge_attempts: int
    filtered: int = 0  # target samples refused by a content filter: missing responses, never judged
    judge_filtered: int = 0  # judge replies refused by a content filter (asked again, as unusable ones are)
    value_means: dict[str, float | None]  # mean 1-5 score per value over judged responses; None: none judged
    conformity: float | None  # mean over values of value_means
    mean_q_phi: float | None


class EStepState(BaseModel):
    model_config = ConfigDict(extra="forbid")
    t: int
    pools: dict[str, list[AlignedEntry]]
    report: EStepReport


class MStepReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    proposed: int
    optimizer_attempts: int = 0  # optimizer requests made, retries included
    optimizer_filtered: int = 0  # optimizer replies refused by a content filter (asked again)
    pe_filtered: int = 0  # p_e samples of the candidates refused by a content filter (left out of Eq. 6)
    new_unique: int
    skipped: list[str]  # why an optimizer slot gave no candidate (no <INS>, empty, duplicate)
    kept: int
    best_changed: bool


class IterationState(BaseModel):
    """Everything needed to resume after iteration t."""

    model_config = ConfigDict(extra="forbid")
    t: int
    best: Candidate
    candidates: list[Candidate]
    pools: dict[str, list[AlignedEntry]]
    estep: EStepReport
    mstep: MStepReport | None = None
    usage_by_role: dict[str, dict] = {}


@dataclass
class RunContext:
    """What every step needs; built once per process from the config (no global state)."""

    config: RunConfig
    composition: object  # picaco.values.Composition
    prompts: list[TaskPrompt]
    client: LLMClient

    @property
    def beta(self) -> float:
        return self.config.picaco.beta if self.config.picaco.beta is not None else float(self.composition.beta)

    @property
    def value_names(self) -> list[str]:
        return [v.name for v in self.composition.values]

    @property
    def key_extra(self) -> dict[str, str]:
        return {"templates": TEMPLATE_VERSION}

    async def embed(self, texts: list[str]) -> np.ndarray:
        return await self.client.embed(self.config.models.embedding, texts)

    async def chat(self, request: ChatRequest, n: int = 1, start: int = 0) -> ChatResponse:
        """Every chat of the method: a sample a content filter refused comes back empty and filtered,
        for the step to count as missing."""
        return await self.client.chat(request, n=n, start=start, filtered="missing")

    def target_request(self, system: str | None, user: str) -> ChatRequest:
        s = self.config.sampling
        return ChatRequest.of(self.config.models.target, system, user, role="target", key_extra=self.key_extra,
                              seed=self.config.seed, temperature=s.target_temperature,
                              max_tokens=s.target_max_tokens)

    async def judge(self, items: list[tuple[str, str]]) -> list[Judgement]:
        comp, s = self.composition, self.config.sampling
        return await judge_many(
            self.client, items, model=self.config.models.judge,
            render=lambda q, r: render_value_judge(comp.values, comp.judge_variant, q, r),
            parse=value_judge_parser(self.value_names, comp.judge_variant),
            attempts=self.config.picaco.judge_attempts, temperature=s.judge_temperature,
            retry_temperature=s.judge_retry_temperature, max_tokens=s.judge_max_tokens,
            seed=self.config.seed, key_extra=self.key_extra)


def usable(sample: Sample) -> bool:
    """A sample the method can use: not empty, and not cut by a content filter (a refused or partly
    refused answer is missing, whatever text it kept)."""
    return bool(sample.text.strip()) and not sample.filtered


def user_prompt(query: str) -> str:
    """The user turn of Fig. 7 on its own: what the raw model (no meta-instruction) is asked."""
    return render_query(query)


def instructed_request(ctx: "RunContext", instruction: str, demos, query: str) -> ChatRequest:
    """Fig. 7: the meta-instruction and demonstrations as the system prompt, the wrapped query as user."""
    system, user = render_e_step(instruction, list(demos), query)
    return ctx.target_request(system, user)


# -- S: the textual observation -------------------------------------------------------------------
# Choice: S is one sample; an empty or content-filtered one is drawn again (the next sample index).
OBSERVATION_ATTEMPTS = 3


async def observation_texts(ctx: RunContext) -> tuple[list[str], int]:
    """S of Eq. (2)/(5), and how many of its samples a content filter refused. HH: the demonstrations
    (D) themselves (App. C.1: "S = D"); we use their answers, since copying shows up in responses.
    Schwartz: the target model's own elaboration of the values, one call (App. C.1)."""
    comp = ctx.composition
    if comp.kind == "hh":
        return [d.answer for d in comp.demonstrations], 0

    request = ctx.target_request(None, render_value_elaboration(comp.values))
    filtered = 0
    for attempt in range(OBSERVATION_ATTEMPTS):
        reply = await ctx.chat(request, n=1, start=attempt)
        filtered += reply.filtered
        if usable(reply.samples[0]):
            return [reply.text], filtered
    raise PicacoError(f"the target model {ctx.config.models.target} gave no elaboration of the values (S) in "
                      f"{OBSERVATION_ATTEMPTS} samples ({filtered} refused by a content filter, the rest empty); "
                      f"cannot go on")


# -- the noisy pool (offline, once) -----------------------------------------------------------------
async def noisy_pool_step(ctx: RunContext) -> NoisyState:
    """Raw model (no meta-instruction): `noisy_samples` responses per prompt, top-M2 by q_phi, and
    p(yhat|x) by Eq. (6) against n further raw samples (indices after the candidates' own)."""
    cfg = ctx.config.picaco
    observation, filtered = await observation_texts(ctx)
    s_vecs = await ctx.embed(observation)
    x_vecs = await ctx.embed([p.text for p in ctx.prompts])

    async def one(i: int, prompt: TaskPrompt) -> tuple[list[NoisyEntry], int]:
        request = ctx.target_request(None, user_prompt(prompt.text))
        raw, refs = await asyncio.gather(ctx.chat(request, n=cfg.noisy_samples, start=0),
                                         ctx.chat(request, n=cfg.n_pe_samples, start=cfg.noisy_samples))
        missing = raw.filtered + refs.filtered
        texts = [s.text for s in raw.samples if usable(s)]
        ref_texts = [s.text for s in refs.samples if usable(s)]
        # Choice: without any reference sample p(yhat|x) cannot be estimated; the prompt then has no noisy
        # pool (its noisy term is left out, as for a prompt whose raw samples are all missing)
        if not texts or not ref_texts:
            return [], missing
        y_vecs, ref_vecs = await asyncio.gather(ctx.embed(texts), ctx.embed(ref_texts))
        q = q_phi(y_vecs, x_vecs[i], s_vecs)
        p = p_e(y_vecs, ref_vecs)
        entries = [NoisyEntry(text=t, origin=f"raw/s{k:03d}", q_phi=float(q[k]), p=float(p[k]))
                   for k, t in enumerate(texts)]
        return select_noisy_pool(entries, cfg.m2), missing

    results = await asyncio.gather(*[one(i, p) for i, p in enumerate(ctx.prompts)])
    filtered += sum(missing for _, missing in results)
    if filtered:
        log.warning("noisy pool: %d samples refused by a content filter (left out as missing)", filtered)
    return NoisyState(observation=observation, pools={p.prompt_id: pool for p, (pool, _) in zip(ctx.prompts, results)},
                      filtered=filtered)


# -- E-step -----------------------------------------------------------------------------------------
def bucket_demonstrations(ctx: RunContext, t: int) -> list[list]:
    """Choice: buckets are shared by all prompts of an iteration (one system prompt per bucket), each
    with `demos_per_bucket` demonstrations drawn without replacement from D by derive_rng(seed, t, b)."""
    demos = list(ctx.composition.demonstrations)
    k = min(ctx.config.picaco.demos_per_bucket, len(demos))
    return [derive_rng(ctx.config.seed, "estep-bucket", t, b).sample(demos, k)
            for b in range(ctx.config.picaco.buckets)]


class EStepTally(BaseModel):
    """Sums behind an EStepReport; tallies of disjoint prompt shards add up to the whole step's."""

    model_config = ConfigDict(extra="forbid")
    responses: int = 0
    judged: int = 0
    missing: int = 0
    judge_attempts: int = 0
    filtered: int = 0
    judge_filtered: int = 0
    score_sums: dict[str, float] = {}
    q_phi_sum: float = 0.0

    def __add__(self, other: "EStepTally") -> "EStepTally":
        sums = dict(self.score_sums)
        for v, x in other.score_sums.items():
            sums[v] = sums.get(v, 0.0) + x
        return EStepTally(responses=self.responses + other.responses, judged=self.judged + other.judged,
                          missing=self.missing + other.missing,
                          judge_attempts=self.judge_attempts + other.judge_attempts,
                          filtered=self.filtered + other.filtered,
                          judge_filtered=self.judge_filtered + other.judge_filtered,
                          score_sums=sums, q_phi_sum=self.q_phi_sum + other.q_phi_sum)

    def report(self, instruction: str, value_names: list[str]) -> EStepReport:
        means = {v: (self.score_sums.get(v, 0.0) / self.judged if self.judged else None) for v in value_names}
        return EStepReport(instruction=instruction, responses=self.responses, judged=self.judged, missing=self.missing,
                           judge_attempts=self.judge_attempts, filtered=self.filtered,
                           judge_filtered=self.judge_filtered, value_means=means,
                           conformity=float(np.mean(list(means.values()))) if self.judged else None,
                           mean_q_phi=self.q_phi_sum / self.responses if self.responses else None)


async def sample_and_judge(ctx: RunContext, instruction: str, t: int, observation_vecs: np.ndarray,
                           prompts: list[TaskPrompt] | None = None
                           ) -> tuple[dict[str, list[AlignedEntry]], EStepTally]:
    """Bucketed sampling under `instruction` (samples t*r .. t*r+r-1 of each bucket's request, so every
    iteration draws fresh responses even when the instruction did not change), then q_w and q_phi.
    `prompts` restricts the work to a shard of X (for distributed runners); default all of X."""
    cfg = ctx.config.picaco
    prompts = ctx.prompts if prompts is None else prompts
    r = cfg.samples_per_bucket
    buckets = bucket_demonstrations(ctx, t)
    x_vecs = await ctx.embed([p.text for p in prompts])
    jobs = [(i, b) for i in range(len(prompts)) for b in range(len(buckets))]
    replies = await asyncio.gather(*[
        ctx.chat(instructed_request(ctx, instruction, buckets[b], prompts[i].text), n=r, start=t * r)
        for i, b in jobs])
    drawn: list[tuple[int, str, str]] = []  # (prompt index, origin, text)
    filtered = sum(reply.filtered for reply in replies)
    if filtered:
        log.warning("E-step t=%d: %d responses refused by a content filter (left out as missing)", t, filtered)
    for (i, b), reply in zip(jobs, replies):
        for s in reply.samples:
            if usable(s):
                drawn.append((i, f"t{t:03d}/b{b}/s{s.index:03d}", s.text))
    judgements, y_vecs = await asyncio.gather(
        ctx.judge([(prompts[i].text, text) for i, _, text in drawn]),
        ctx.embed([text for _, _, text in drawn]))
    by_prompt: dict[str, list[AlignedEntry]] = {p.prompt_id: [] for p in prompts}
    tally = EStepTally(responses=len(drawn), filtered=filtered, score_sums={v: 0.0 for v in ctx.value_names})
    for k, ((i, origin, text), judgement) in enumerate(zip(drawn, judgements)):
        tally.judge_attempts += judgement.attempts
        tally.judge_filtered += judgement.filtered
        q = float(q_phi(y_vecs[k:k + 1], x_vecs[i], observation_vecs)[0])
        tally.q_phi_sum += q
        if judgement.scores is None:
            tally.missing += 1
            continue
        tally.judged += 1
        for v, score in judgement.scores.items():
            tally.score_sums[v] += score
        weight = response_weight(judgement.scores, q, ctx.beta, cfg.q_phi_floor, cfg.redundancy_weight)
        by_prompt[prompts[i].prompt_id].append(
            AlignedEntry(text=text, origin=origin, scores=judgement.scores, q_phi=q, weight=weight))
    return by_prompt, tally


def merge_aligned_pools(ctx: RunContext, pools: dict[str, list[AlignedEntry]],
                        fresh: dict[str, list[AlignedEntry]]) -> dict[str, list[AlignedEntry]]:
    m1 = ctx.config.picaco.m1
    return {p.prompt_id: update_aligned_pool(pools.get(p.prompt_id, []), fresh.get(p.prompt_id, []), m1)
            for p in ctx.prompts}


async def e_step(ctx: RunContext, t: int, instruction: str, pools: dict[str, list[AlignedEntry]],
                 noisy: NoisyState) -> EStepState:
    s_vecs = await ctx.embed(noisy.observation)
    fresh, tally = await sample_and_judge(ctx, instruction, t, s_vecs)
    return EStepState(t=t, pools=merge_aligned_pools(ctx, pools, fresh),
                      report=tally.report(instruction, ctx.value_names))


# -- M-step -----------------------------------------------------------------------------------------
def stratified_examples(candidates: list[Candidate], rng, k: int = 4) -> list[str]:
    """Four instructions at different levels of TC_e (App. C.1), lowest first: the candidates sorted by
    TC_e are cut into k strata and one is drawn from each. Choice: with fewer than k candidates, draw
    with replacement and sort."""
    ranked = sorted(candidates, key=lambda c: (c.tc if c.tc is not None else -np.inf, c.instruction))
    if len(ranked) >= k:
        strata = np.array_split(np.arange(len(ranked)), k)
        picks = [ranked[int(rng.choice(list(s)))] for s in strata]
    else:
        picks = sorted((rng.choice(ranked) for _ in range(k)),
                       key=lambda c: (c.tc if c.tc is not None else -np.inf, c.instruction))
    return [c.instruction for c in picks]


async def propose(ctx: RunContext, t: int, slot: int, existing: list[Candidate]
                  ) -> tuple[str | None, str | None, int, int]:
    """One optimizer call (Fig. 8) for candidate slot `slot`; retried on an unusable or content-filtered
    reply. Returns (instruction, None, attempts, filtered) or (None, reason, attempts, filtered)."""
    cfg, s = ctx.config.picaco, ctx.config.sampling
    rng = derive_rng(ctx.config.seed, "mstep-propose", t, slot)
    ranked = stratified_examples(existing, rng)
    demos = rng.sample(list(ctx.composition.demonstrations), min(3, len(ctx.composition.demonstrations)))
    technique = rng.choice(list(TECHNIQUES))
    system, user = render_m_step(ctx.composition.values, demos, ranked, technique, cfg.instruction_length)
    request = ChatRequest.of(ctx.config.models.optimizer_model, system, user, role="optimizer",
                             key_extra=ctx.key_extra, seed=ctx.config.seed,
                             temperature=s.optimizer_temperature, max_tokens=s.optimizer_max_tokens)
    reason = None
    filtered = 0
    for attempt in range(cfg.optimizer_attempts):
        reply = await ctx.chat(request, n=1, start=attempt)
        if reply.samples[0].filtered:
            filtered += 1
            reason = f"slot {slot}: the reply was refused by a content filter"
            log.info("optimizer reply content-filtered (t=%d, slot %d, attempt %d)", t, slot, attempt + 1)
            continue
        try:
            return parse_instruction(reply.text, length=cfg.instruction_length), None, attempt + 1, filtered
        except ValueError as exc:
            reason = f"slot {slot}: {exc}"
            log.info("optimizer reply unusable (t=%d, slot %d, attempt %d): %s", t, slot, attempt + 1, exc)
    log.warning("optimizer slot skipped after %d attempts: %s", cfg.optimizer_attempts, reason)
    return None, reason, cfg.optimizer_attempts, filtered


@dataclass(frozen=True)
class ScoringPools:
    """The fixed side of Eq. (4) within one M-step, embedded once for all candidates."""

    pool_vecs: dict[str, np.ndarray]
    weights: dict[str, np.ndarray]
    noisy: list[tuple[np.ndarray, np.ndarray]]  # per prompt: (p(yhat|x), log q_phi(yhat))


async def scoring_pools(ctx: RunContext, pools: dict[str, list[AlignedEntry]], noisy: NoisyState) -> ScoringPools:
    floor = ctx.config.picaco.q_phi_floor
    filled = [p for p in ctx.prompts if pools.get(p.prompt_id)]
    flat = await ctx.embed([e.text for p in filled for e in pools[p.prompt_id]]) if filled else None
    vecs, weights, offset = {}, {}, 0
    for p in filled:
        pool = pools[p.prompt_id]
        vecs[p.prompt_id] = flat[offset:offset + len(pool)]
        weights[p.prompt_id] = np.array([e.weight for e in pool])
        offset += len(pool)
    noisy_terms = []
    for p in ctx.prompts:
        npool = noisy.pools.get(p.prompt_id, [])
        noisy_terms.append((np.array([e.p for e in npool]), log_q_phi(np.array([e.q_phi for e in npool]), floor)))
    return ScoringPools(vecs, weights, noisy_terms)


async def score_candidate(ctx: RunContext, instruction: str, fixed: ScoringPools
                          ) -> tuple[float, float, float, int]:
    """Eq. (4) for one candidate, and how many of its p_e samples a content filter refused (they are left
    out of Eq. 6's mean). p_e(y|x) of Eq. (6) uses n samples drawn under e alone.
    Choice: the p_e samples use the Fig. 7 system prompt with the instruction and no demonstrations:
    the E-step's random demonstrations are shared by every candidate, so they do not tell candidates
    apart, and leaving them out isolates e (and saves their tokens)."""
    cfg = ctx.config.picaco
    replies = await asyncio.gather(*[
        ctx.chat(instructed_request(ctx, instruction, [], p.text), n=cfg.n_pe_samples, start=0)
        for p in ctx.prompts])
    per_prompt = [[s.text for s in reply.samples if usable(s)] for reply in replies]
    # one embedding request for the whole candidate: local models encode a big batch far faster
    flat = await ctx.embed([t for texts in per_prompt for t in texts]) if any(per_prompt) else None
    aligned, offset = [], 0
    for p, texts in zip(ctx.prompts, per_prompt):
        sample_vecs = flat[offset:offset + len(texts)] if texts else None
        offset += len(texts)
        if p.prompt_id in fixed.pool_vecs and texts:
            aligned.append((p_e(fixed.pool_vecs[p.prompt_id], sample_vecs), fixed.weights[p.prompt_id]))
    tc = tc_objective(aligned, fixed.noisy, cfg.pe_weighting)
    return tc.total, tc.aligned_term, tc.noisy_term, sum(reply.filtered for reply in replies)


def select_best(candidates: list[Candidate]) -> Candidate:
    """argmax TC_e; ties go to the older candidate, then to the text, so the choice is deterministic."""
    scored = [c for c in candidates if c.tc is not None and np.isfinite(c.tc)]
    if not scored:
        raise RuntimeError("no candidate could be scored (every prompt lacks judged responses)")
    return max(scored, key=lambda c: (c.tc, -c.born, c.instruction))


async def m_step(ctx: RunContext, t: int, candidates: list[Candidate], pools: dict[str, list[AlignedEntry]],
                 noisy: NoisyState, previous_best: str) -> tuple[list[Candidate], Candidate, MStepReport]:
    cfg = ctx.config.picaco
    kept = sorted(candidates, key=lambda c: (-(c.tc if c.tc is not None else np.inf), c.born,
                                             c.instruction))[:cfg.m2]
    proposals = await asyncio.gather(*[propose(ctx, t, slot, candidates) for slot in range(cfg.m2)])
    known = {c.instruction for c in kept}
    new, skipped = [], []
    for slot, (instruction, reason, _, _) in enumerate(proposals):
        if instruction is None:
            skipped.append(reason)
        elif instruction in known:
            skipped.append(f"slot {slot}: duplicate of an existing candidate")
        else:
            known.add(instruction)
            new.append(Candidate(instruction=instruction, born=t))
    pool_of_candidates = kept + new
    fixed = await scoring_pools(ctx, pools, noisy)
    scores = await asyncio.gather(*[score_candidate(ctx, c.instruction, fixed) for c in pool_of_candidates])
    rescored = [c.model_copy(update={"tc": tc, "aligned_term": a, "noisy_term": nt})
                for c, (tc, a, nt, _) in zip(pool_of_candidates, scores)]
    best = select_best(rescored)
    pe_filtered = sum(sc[3] for sc in scores)
    if pe_filtered:
        log.warning("M-step t=%d: %d p_e samples refused by a content filter (left out as missing)", t, pe_filtered)
    report = MStepReport(proposed=cfg.m2, optimizer_attempts=sum(p[2] for p in proposals),
                         optimizer_filtered=sum(p[3] for p in proposals), pe_filtered=pe_filtered,
                         new_unique=len(new), skipped=skipped, kept=len(kept),
                         best_changed=best.instruction != previous_best)
    return rescored, best, report


def filtered_replies(noisy: NoisyState | None, iterations: list[IterationState],
                     final: EStepReport | None = None) -> int:
    """Every reply of a run that a content filter refused (each counted as missing where it occurred):
    the noisy pool's, each iteration's E-step (responses and judge replies) and M-step (optimizer replies
    and p_e samples), and the final scoring's."""
    total = noisy.filtered if noisy is not None else 0
    for state in iterations:
        total += state.estep.filtered + state.estep.judge_filtered
        if state.mstep is not None:
            total += state.mstep.optimizer_filtered + state.mstep.pe_filtered
    if final is not None:
        total += final.filtered + final.judge_filtered
    return total
