"""Algorithm 1 of the paper as steps over typed records (picaco/method/state.py).

    noisy_pool_step  - R^n: raw responses (no instruction), top-M2 by q_phi, with p(yhat|x)   (once)
    e_step           - sample under e^{t-1} in buckets, judge, q_phi, R^a <- top-M1           (Alg. 1, 4-8)
    draft_m_step     - propose (M2 optimizer calls) -> dedupe (new and M2 best kept) -> draw and
                       embed each candidate's p_e samples: needs iteration t-1 only, so it runs
                       while the E-step's calls are out                                        (Alg. 1, 13)
    m_step           - score (Eq. 4 on the E-step's pools) -> select: the argmax is e^t        (Alg. 1, 13-14)

Each step reads its inputs from records and returns records; calls go through the LLMClient (so every
one is cached), and every random choice comes from `derive_rng(run seed, step, indices)`. Persistence
is not here: picaco/method/run.py iterates them and checkpoints each step.

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

from picaco.base.config import RunConfig
from picaco.base.errors import PicacoError
from picaco.base.prompts import TaskPrompt
from picaco.llm.ask import ask
from picaco.llm.providers import provider_class
from picaco.llm.providers.openai import is_self_hosted
from picaco.llm.request import ChatRequest, ChatResponse, Sample, instruction_schema, split_model
from picaco.method.context import RunContext, instructed_request, usable, user_prompt
from picaco.method.estimators import Judgement, p_e, q_phi
from picaco.method.exact_pe import PE_DEMONSTRATIONS, exact_pe
from picaco.method.front import front_first, select_balanced, value_estimates
from picaco.method.objective import log_q_phi, response_weight, tc_objective
from picaco.method.pools import AlignedEntry, NoisyEntry, select_noisy_pool, update_aligned_pool
from picaco.method.state import (
    Candidate,
    EStepReport,
    EStepState,
    EStepTally,
    IterationState,
    MStepReport,
    NoisyState,
    Proposal,
    best_first,
    is_scored,
    tc_rank,
)
from picaco.rng import derive_rng
from picaco.templates import TECHNIQUES, parse_proposal, render_m_step, render_value_elaboration

log = logging.getLogger(__name__)


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

    async def draw(i: int, b: int) -> tuple[ChatResponse, list[Sample], list[Judgement], np.ndarray]:
        reply = await ctx.chat(instructed_request(ctx, instruction, buckets[b], prompts[i].text), n=r, start=t * r)
        kept = [s for s in reply.samples if usable(s)]
        if not kept:
            return reply, [], [], np.empty((0, 0))
        # judged and embedded as the reply arrives: the encoder works while the other calls are out
        judgements, vecs = await asyncio.gather(ctx.judge([(prompts[i].text, s.text) for s in kept]),
                                                ctx.embed([s.text for s in kept]))
        return reply, kept, judgements, vecs

    drawn_replies = await asyncio.gather(*[draw(i, b) for i, b in jobs])
    drawn: list[tuple[int, str, str]] = []  # (prompt index, origin, text)
    judgements: list[Judgement] = []
    filtered = sum(reply.filtered for reply, _, _, _ in drawn_replies)
    if filtered:
        log.warning("E-step t=%d: %d responses refused by a content filter (left out as missing)", t, filtered)
    for (i, b), (_, kept, their_judgements, _) in zip(jobs, drawn_replies):
        drawn.extend((i, f"t{t:03d}/b{b}/s{s.index:03d}", s.text) for s in kept)
        judgements.extend(their_judgements)
    y_vecs = np.concatenate([vecs for _, kept, _, vecs in drawn_replies if kept]) if drawn else np.empty((0, 0))
    by_prompt: dict[str, list[AlignedEntry]] = {p.prompt_id: [] for p in prompts}
    sums = {v: 0.0 for v in ctx.value_names}
    q_phis = [float(q_phi(y_vecs[k:k + 1], x_vecs[i], observation_vecs)[0]) for k, (i, _, _) in enumerate(drawn)]
    for (i, origin, text), judgement, q in zip(drawn, judgements, q_phis):
        if judgement.scores is None:
            continue
        for v, score in judgement.scores.items():
            sums[v] += score
        weight = response_weight(judgement.scores, q, ctx.beta, cfg.q_phi_floor, cfg.redundancy_weight)
        by_prompt[prompts[i].prompt_id].append(
            AlignedEntry(text=text, origin=origin, scores=judgement.scores, q_phi=q, weight=weight))
    judged = sum(j.scores is not None for j in judgements)
    tally = EStepTally(responses=len(drawn), judged=judged, missing=len(drawn) - judged,
                       judge_attempts=sum(j.attempts for j in judgements),
                       filtered=filtered, judge_filtered=sum(j.filtered for j in judgements),
                       score_sums=sums, q_phi_sum=sum(q_phis))
    return by_prompt, tally


def merge_aligned_pools(ctx: RunContext, pools: dict[str, list[AlignedEntry]],
                        fresh: dict[str, list[AlignedEntry]]) -> dict[str, list[AlignedEntry]]:
    m1 = ctx.config.picaco.m1
    return {p.prompt_id: update_aligned_pool(pools.get(p.prompt_id, []), fresh.get(p.prompt_id, []), m1)
            for p in ctx.prompts}


async def e_step(ctx: RunContext, t: int, instruction: str, pools: dict[str, list[AlignedEntry]],
                 noisy: NoisyState) -> EStepState:
    s_vecs = await ctx.embed(noisy.observation)
    fresh, tally = await sample_and_judge(ctx, instruction, ctx.block_offset + t, s_vecs)
    return EStepState(t=t, pools=merge_aligned_pools(ctx, pools, fresh),
                      report=tally.report(instruction, ctx.value_names))


# -- M-step: propose -> dedupe -> score -> select ---------------------------------------------------
def stratified_examples(candidates: list[Candidate], rng, k: int = 4) -> list[str]:
    """Four instructions at different levels of TC_e (App. C.1), lowest first: the candidates sorted by
    TC_e are cut into k strata and one is drawn from each. Choice: with fewer than k candidates, draw
    with replacement and sort."""
    def lowest_first(c: Candidate):
        return tc_rank(c), c.instruction

    ranked = sorted(candidates, key=lowest_first)
    if len(ranked) >= k:
        strata = np.array_split(np.arange(len(ranked)), k)
        picks = [ranked[int(rng.choice(list(s)))] for s in strata]
    else:
        picks = sorted((rng.choice(ranked) for _ in range(k)), key=lowest_first)
    return [c.instruction for c in picks]


def optimizer_schema(config: RunConfig) -> str | None:
    """The optimizer's reply schema {"instruction": ...}, or None for Fig. 8's free text alone
    (`picaco.optimizer_schema`; auto: on for a self-hosted engine that takes a schema). Choice: docs/method.md."""
    mode = config.picaco.optimizer_schema
    if mode == "auto":
        name = split_model(config.models.optimizer_model)[0]
        _, settings = provider_class(name, config.client.providers)
        mode = "on" if is_self_hosted(name, settings) and settings.options.get("schema_form") != "none" else "off"
    return instruction_schema() if mode == "on" else None


async def propose_one(ctx: RunContext, t: int, slot: int, existing: list[Candidate],
                      schema: str | None = None) -> Proposal:
    """One optimizer call (Fig. 8) for candidate slot `slot`; retried on an unusable or content-filtered
    reply, up to picaco.optimizer_attempts. With a reply `schema` the prompt is the same and the instruction is
    read from the tags or the schema's JSON."""
    cfg, s = ctx.config.picaco, ctx.config.sampling
    rng = derive_rng(ctx.config.seed, "mstep-propose", t, slot)
    ranked = stratified_examples(existing, rng)
    demos = rng.sample(list(ctx.composition.demonstrations), min(3, len(ctx.composition.demonstrations)))
    technique = rng.choice(list(TECHNIQUES))
    system, user = render_m_step(ctx.composition.values, demos, ranked, technique, cfg.instruction_length)
    request = ChatRequest.of(ctx.config.models.optimizer_model, system, user, role="optimizer",
                             key_extra=ctx.key_extra, seed=ctx.config.seed,
                             temperature=s.optimizer_temperature, max_tokens=s.optimizer_max_tokens,
                             response_schema=schema)
    answer = await ask(ctx.calls(), request,
                       lambda reply: parse_proposal(reply, length=cfg.instruction_length, schema=schema is not None),
                       cfg.optimizer_attempts, what=f"optimizer reply (t={t}, slot {slot})")
    reason = None if answer.value is not None else f"slot {slot}: {answer.reason}"
    return Proposal(slot=slot, instruction=answer.value, reason=reason, attempts=answer.attempts,
                    filtered=answer.filtered)


async def propose(ctx: RunContext, t: int, existing: list[Candidate]) -> list[Proposal]:
    """Alg. 1 line 13: M2 optimizer slots, each shown instructions of `existing` at four TC_e levels."""
    schema = optimizer_schema(ctx.config)
    return list(await asyncio.gather(*[propose_one(ctx, t, slot, existing, schema)
                                       for slot in range(ctx.config.picaco.m2)]))


@dataclass(frozen=True)
class CandidatePool:
    """The candidates an M-step scores: the M2 best existing ones, then the new distinct proposals."""

    kept: list[Candidate]
    new: list[Candidate]
    skipped: list[str]  # why a slot added no candidate

    @property
    def candidates(self) -> list[Candidate]:
        return self.kept + self.new


def dedupe(t: int, existing: list[Candidate], proposals: list[Proposal], m2: int,
           order=best_first) -> CandidatePool:
    """Keep the M2 best existing candidates (unscored ones rank lowest; `order` ranks them: by TC_e, or
    front_first under `selection: chebyshev`) and add each proposal that is not already among them; a
    skipped or duplicate slot says why."""
    kept = order(existing)[:m2]
    known = {c.instruction for c in kept}
    new, skipped = [], []
    for p in proposals:
        if p.instruction is None:
            skipped.append(p.reason or f"slot {p.slot}: no instruction")
        elif p.instruction in known:
            skipped.append(f"slot {p.slot}: duplicate of an existing candidate")
        else:
            known.add(p.instruction)
            new.append(Candidate(instruction=p.instruction, born=t))
    return CandidatePool(kept=kept, new=new, skipped=skipped)


@dataclass(frozen=True)
class ScoringPools:
    """The fixed side of Eq. (4) within one M-step, embedded once for all candidates."""

    pool_vecs: dict[str, np.ndarray]
    weights: dict[str, np.ndarray]
    noisy: list[tuple[np.ndarray, np.ndarray]]  # per prompt: (p(yhat|x), log q_phi(yhat))
    scores: dict[str, np.ndarray]  # per prompt: the pool's 1-5 judge scores, (pool, K), for per-value estimates


async def scoring_pools(ctx: RunContext, pools: dict[str, list[AlignedEntry]], noisy: NoisyState) -> ScoringPools:
    floor = ctx.config.picaco.q_phi_floor
    filled = [p for p in ctx.prompts if pools.get(p.prompt_id)]
    similarity = ctx.config.picaco.pe_estimator == "similarity"  # exact p_e needs no embeddings of the pool
    flat = await ctx.embed([e.text for p in filled for e in pools[p.prompt_id]]) if filled and similarity else None
    vecs, weights, scores, offset = {}, {}, {}, 0
    for p in filled:
        pool = pools[p.prompt_id]
        if flat is not None:
            vecs[p.prompt_id] = flat[offset:offset + len(pool)]
        weights[p.prompt_id] = np.array([e.weight for e in pool])
        scores[p.prompt_id] = np.array([[e.scores[v] for v in ctx.value_names] for e in pool], dtype=np.float64)
        offset += len(pool)
    noisy_terms = []
    for p in ctx.prompts:
        npool = noisy.pools.get(p.prompt_id, [])
        noisy_terms.append((np.array([e.p for e in npool]), np.asarray(log_q_phi(np.array([e.q_phi for e in npool]), floor))))
    return ScoringPools(vecs, weights, noisy_terms, scores)


@dataclass(frozen=True)
class Scored:
    candidate: Candidate  # with tc, aligned_term and noisy_term of Eq. (4)
    pe_filtered: int  # its p_e samples refused by a content filter (left out of Eq. 6's mean)


@dataclass(frozen=True)
class PeSamples:
    """Eq. (6)'s n samples of one candidate, embedded, per prompt id (prompts whose samples were all missing
    are left out), and how many a content filter refused. They depend on the instruction alone."""

    vectors: dict[str, np.ndarray]
    filtered: int


async def pe_samples(ctx: RunContext, instruction: str) -> PeSamples:
    """Choice: the p_e samples use the Fig. 7 system prompt with the instruction and no demonstrations
    (`PE_DEMONSTRATIONS`): the E-step's random demonstrations are shared by every candidate, so they do not
    tell candidates apart, and leaving them out isolates e (and saves their tokens)."""
    async def draw(prompt: TaskPrompt) -> tuple[ChatResponse, np.ndarray | None]:
        reply = await ctx.chat(instructed_request(ctx, instruction, list(PE_DEMONSTRATIONS), prompt.text),
                               n=ctx.config.picaco.n_pe_samples, start=0)
        texts = [s.text for s in reply.samples if usable(s)]
        # embedded as the reply arrives (a local encoder coalesces the replies that wait into one encode)
        return reply, (await ctx.embed(texts) if texts else None)

    replies = await asyncio.gather(*[draw(p) for p in ctx.prompts])
    vectors = {p.prompt_id: vecs for p, (_, vecs) in zip(ctx.prompts, replies) if vecs is not None}
    return PeSamples(vectors, sum(reply.filtered for reply, _ in replies))


def similarity_pe(samples: PeSamples, fixed: ScoringPools) -> dict[str, np.ndarray]:
    """Eq. (6) per prompt id: p_e of each pooled response, from the candidate's embedded samples."""
    return {pid: p_e(fixed.pool_vecs[pid], vecs) for pid, vecs in samples.vectors.items() if pid in fixed.pool_vecs}


async def score_candidate(ctx: RunContext, candidate: Candidate, fixed: ScoringPools,
                          pools: dict[str, list[AlignedEntry]], samples: PeSamples | None = None) -> Scored:
    """Eq. (4) for one candidate; p_e(y|x) by Eq. (6) from its n samples (`samples`, drawn here when not
    given), or, with `picaco.pe_estimator: logprob`, the target's exact log-prob of each pooled response
    (method/exact_pe.py)."""
    cfg = ctx.config.picaco
    if cfg.pe_estimator == "logprob":
        pes, filtered = await exact_pe(ctx, candidate.instruction, pools), 0
    else:
        samples = samples or await pe_samples(ctx, candidate.instruction)
        pes, filtered = similarity_pe(samples, fixed), samples.filtered
    scored_ids = [pid for pid in fixed.weights if pid in pes]  # the prompts' order, as Eq. (4) sums them
    aligned = [(pes[pid], fixed.weights[pid]) for pid in scored_ids]
    per_value = [(pes[pid], fixed.scores[pid]) for pid in scored_ids]
    tc = tc_objective(aligned, fixed.noisy, cfg.pe_weighting)
    rescored = candidate.model_copy(update={"tc": tc.total, "aligned_term": tc.aligned_term, "noisy_term": tc.noisy_term,
                                            "value_scores": value_estimates(per_value, ctx.value_names)})
    return Scored(rescored, filtered)


async def score(ctx: RunContext, candidates: list[Candidate], pools: dict[str, list[AlignedEntry]],
                noisy: NoisyState, samples: dict[str, PeSamples] | None = None) -> list[Scored]:
    """Eq. (4) for every candidate on the current pools; kept candidates cost no new target calls (their
    p_e samples, or log-probs, are cached). `samples`: p_e samples already drawn, by instruction."""
    fixed = await scoring_pools(ctx, pools, noisy)
    samples = samples or {}
    return list(await asyncio.gather(*[score_candidate(ctx, c, fixed, pools, samples.get(c.instruction))
                                       for c in candidates]))


def select_best(candidates: list[Candidate]) -> Candidate:
    """argmax TC_e; ties go to the older candidate, then to the text, so the choice is deterministic."""
    scored = [c for c in candidates if is_scored(c)]
    if not scored:
        raise PicacoError("no candidate could be scored: every prompt's aligned pool is empty (no response "
                          "has a judge score); check the judge model's replies in the run's calls.jsonl")
    return max(scored, key=lambda c: (c.tc, -c.born, c.instruction))


def select(t: int, pool: CandidatePool, proposals: list[Proposal], scored: list[Scored], previous_best: str,
           m2: int, choose=select_best) -> tuple[Candidate, MStepReport]:
    """Alg. 1 line 14: e^t = argmax TC_e (`choose`: another rule, picaco's extension), and the M-step's report."""
    best = choose([s.candidate for s in scored])
    pe_filtered = sum(s.pe_filtered for s in scored)
    if pe_filtered:
        log.warning("M-step t=%d: %d p_e samples refused by a content filter (left out as missing)", t, pe_filtered)
    return best, MStepReport(proposed=m2, optimizer_attempts=sum(p.attempts for p in proposals),
                             optimizer_filtered=sum(p.filtered for p in proposals), pe_filtered=pe_filtered,
                             new_unique=len(pool.new), skipped=pool.skipped, kept=len(pool.kept),
                             best_changed=best.instruction != previous_best)


def selection_rules(ctx: RunContext):
    """(order of the kept candidates, choice of e^t): the paper's by TC_e, or toward the Pareto front of
    the per-value scores (`picaco.selection: chebyshev`; picaco/method/front.py). A candidate set without
    per-value scores (records of an older picaco) falls back to TC_e."""
    if ctx.config.picaco.selection == "tc":
        return best_first, select_best
    names = ctx.value_names
    return (lambda cands: front_first(cands, names),
            lambda cands: select_balanced(cands, names) or select_best(cands))


def unscorable(ctx: RunContext, estep: EStepReport) -> PicacoError:
    """Why no candidate of iteration t could be scored, and what to check."""
    return PicacoError(
        f"no candidate could be scored: no response of the E-step has a judge score ({estep.missing} of "
        f"{estep.responses} judge replies missing after {ctx.config.picaco.judge_attempts} attempts each, "
        f"{estep.judge_filtered} refused by a content filter; {estep.filtered} target responses refused). Check "
        f"the judge model {ctx.config.models.judge} (models.judge) and its replies in the run's calls.jsonl, "
        f"or raise picaco.judge_attempts")


@dataclass(frozen=True)
class MStepDraft:
    """The part of iteration t's M-step that does not wait for its E-step: the proposals (Alg. 1 line 13
    shows the optimizer e^(t-1)'s candidates only), the candidate set, and, for Eq. (6) by similarity, each
    candidate's embedded p_e samples (they depend on the instruction alone). Drawn while the E-step's calls
    are out, its embedding work fills the time the E-step waits (picaco/method/run.py)."""

    t: int
    proposals: list[Proposal]
    pool: CandidatePool
    samples: dict[str, PeSamples]  # by instruction; empty under pe_estimator: logprob (it needs the pools)


async def draft_m_step(ctx: RunContext, t: int, prev: IterationState) -> MStepDraft:
    """Propose -> dedupe -> draw and embed the candidates' p_e samples, from iteration t-1's state alone."""
    proposals = await propose(ctx, t, prev.candidates)
    order, _ = selection_rules(ctx)
    pool = dedupe(t, prev.candidates, proposals, ctx.config.picaco.m2, order)
    samples: dict[str, PeSamples] = {}
    if ctx.config.picaco.pe_estimator == "similarity":
        drawn = await asyncio.gather(*[pe_samples(ctx, c.instruction) for c in pool.candidates])
        samples = {c.instruction: s for c, s in zip(pool.candidates, drawn)}
    return MStepDraft(t=t, proposals=proposals, pool=pool, samples=samples)


async def m_step(ctx: RunContext, prev: IterationState, estep: EStepState, noisy: NoisyState,
                 draft: MStepDraft | None = None) -> IterationState:
    """Alg. 1 lines 13-14 on the pools of the E-step: the complete iteration t (usage is the caller's).
    `draft`: its proposals and p_e samples, if already drawn (draft_m_step of the same t and state)."""
    if draft is None:
        draft = await draft_m_step(ctx, estep.t, prev)
    elif draft.t != estep.t:
        raise ValueError(f"an M-step draft of iteration {draft.t} given to iteration {estep.t}")
    _, choose = selection_rules(ctx)
    scored = await score(ctx, draft.pool.candidates, estep.pools, noisy, draft.samples)
    if not any(is_scored(s.candidate) for s in scored):
        raise unscorable(ctx, estep.report)
    best, report = select(estep.t, draft.pool, draft.proposals, scored, prev.best.instruction, ctx.config.picaco.m2,
                          choose)
    return IterationState(t=estep.t, best=best, candidates=[s.candidate for s in scored], pools=estep.pools,
                          estep=estep.report, mstep=report)
