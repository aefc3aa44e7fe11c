"""OPRO (Yang et al., 2024; App. C.3): iterative instruction optimization by an LLM, with PICACO's budget.

Each of T iterations, the optimizer sees a meta-prompt with the best previous instructions and their
scores (ascending, so the best is last; at most `max_in_prompt`, OPRO's 20) and `exemplars` (OPRO's 3)
random demonstrations from D that "exemplify the alignment task", and proposes M2 new instructions (M2
samples of that meta-prompt at the optimizer temperature; an unusable or refused reply is asked again,
picaco/llm/ask.py). Every new instruction is scored on PICACO's query set X: `samples_per_prompt`
responses per prompt under the Fig. 7 prompt (instruction + a bucket of demonstrations), judged by the
scorer q_w on the composition's values; the score is the Pluralistic Conformity term of Eq. (2), the
mean over responses of (1/K) sum_k log q_w(v_k|x,y) with q_w = score/5, mapped linearly from
[log 0.2, 0] to [0, 100].
The seed meta-instruction is scored first (iteration 0). The best-scored instruction is then evaluated
like PICACO's (Fig. 7 with the evaluation buckets). The meta-prompt follows OPRO's instruction-
optimization prompt (templates/opro_*.txt; the adaptation is ours, see docs/evaluation.md).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from picaco.eval.judging import judge_setup, judge_values
from picaco.eval.methods.base import Method
from picaco.eval.methods.picaco import fig7_request
from picaco.eval.texts import render
from picaco.llm.ask import ask
from picaco.llm.request import ChatRequest
from picaco.rng import derive_rng
from picaco.templates import join_names, parse_instruction

LOG_FLOOR = math.log(1 / 5)


def pluralistic_score(score_sets: list[dict[str, int]]) -> float | None:
    """Eq. (2)'s Pluralistic Conformity term per response and value, scaled to 0-100 (None: nothing judged)."""
    if not score_sets:
        return None
    per_response = [sum(math.log(s / 5) for s in scores.values()) / len(scores) for scores in score_sets]
    mean = sum(per_response) / len(per_response)
    return 100.0 * (mean - LOG_FLOOR) / (0.0 - LOG_FLOOR)


def _usage_growth(after: dict[str, dict], before: dict[str, dict]) -> dict[str, dict[str, int]]:
    """What the optimization spent by role: `requests` (= paid calls on a fresh cache, since every OPRO
    request asks one sample of a distinct prompt), `calls` actually paid this time, and tokens."""
    fields = ("requests", "calls", "prompt_tokens", "completion_tokens")
    out = {role: {k: int(u.get(k, 0)) - int(before.get(role, {}).get(k, 0)) for k in fields}
           for role, u in after.items()}
    return {role: u for role, u in out.items() if any(u.values())}


class Opro(Method):
    id = "opro"
    uses_demonstrations = True

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.best: str | None = None

    async def _score(self, instruction: str) -> tuple[float | None, int, int]:
        ctx, cfg = self.ctx, self.ctx.config
        prompts = ctx.optimization_prompts
        r = cfg.opro.samples_per_prompt
        replies = await asyncio.gather(*[
            ctx.client.chat(fig7_request(ctx, instruction, self.bucket_demos(i % len(self._buckets)), p.text), n=r)
            for i, p in enumerate(prompts)])
        items = [(p.text, s.text) for p, reply in zip(prompts, replies) for s in reply.samples if s.text.strip()]
        setup = judge_setup(ctx.composition, "composition", "off")
        judgements = await judge_values(ctx.client, setup, items, model=cfg.models.scorer_model,
                                        attempts=cfg.protocol.judge_attempts, sampling=cfg.sampling, seed=cfg.seed)
        scored = [j.scores for j in judgements if j.scores is not None]
        return pluralistic_score(scored), len(items), len(items) - len(scored)

    def _meta_prompt(self, t: int, history: list[dict]) -> str:
        cfg, comp = self.ctx.config, self.ctx.composition
        scored = sorted((h for h in history if h["score"] is not None), key=lambda h: (h["score"], -h["iteration"]))
        shown = scored[-cfg.opro.max_in_prompt:]
        scored_block = "\n\n".join(render("opro_scored", instruction=h["instruction"], score=str(round(h["score"])))
                                   for h in shown)
        rng = derive_rng(cfg.seed, "opro-exemplars", comp.digest, t)
        demos = rng.sample(list(comp.demonstrations), min(cfg.opro.exemplars, len(comp.demonstrations)))
        exemplars = "\n\n".join(render("opro_exemplar", query=d.query, answer=d.answer) for d in demos)
        return render("opro_meta", scored_instructions=scored_block, exemplars=exemplars,
                      intended_values=join_names(comp.value_names), length=str(cfg.opro.instruction_length))

    async def _propose(self, request: ChatRequest, slot: int) -> tuple[str | None, str | None]:
        cfg = self.ctx.config.opro
        # each slot has its own samples: slot s asks samples s*A .. s*A+A-1 of the iteration's request
        answer = await ask(self.ctx.client, request,
                           lambda reply: parse_instruction(reply, length=cfg.instruction_length),
                           cfg.optimizer_attempts, start=slot * cfg.optimizer_attempts,
                           what=f"OPRO optimizer reply (slot {slot})")
        return answer.value, None if answer.value is not None else f"slot {slot}: {answer.reason}"

    async def prepare(self) -> dict:
        ctx, cfg = self.ctx, self.ctx.config
        if not ctx.optimization_prompts:
            raise RuntimeError("OPRO needs the optimization query set (PICACO's X); none was resolved")
        T, M2 = ctx.opro_budget
        usage_before = ctx.client.usage_by_role()
        seed_instruction = ctx.composition.seed_instruction
        score, n, missing = await self._score(seed_instruction)
        history: list[dict[str, Any]] = [{"iteration": 0, "instruction": seed_instruction, "score": score, "responses": n, "missing": missing}]
        skipped: list[str] = []
        for t in range(1, T + 1):
            if not any(h["score"] is not None for h in history):
                raise RuntimeError("OPRO: no instruction could be scored (every judge reply missing)")
            request = ChatRequest.of(cfg.models.optimizer_model, None, self._meta_prompt(t, history), role="optimizer",
                                     key_extra={**ctx.key_extra, "opro_iteration": str(t)}, seed=cfg.seed,
                                     temperature=cfg.sampling.optimizer_temperature,
                                     max_tokens=cfg.sampling.optimizer_max_tokens)
            proposals = await asyncio.gather(*[self._propose(request, s) for s in range(M2)])
            known = {h["instruction"] for h in history}
            new = []
            for slot, (ins, reason) in enumerate(proposals):
                if ins is None:
                    skipped.append(f"t={t} {reason}")
                elif ins in known:
                    skipped.append(f"t={t} slot {slot}: duplicate of an earlier instruction")
                else:
                    known.add(ins)
                    new.append(ins)
            scores = await asyncio.gather(*[self._score(ins) for ins in new])
            history += [{"iteration": t, "instruction": ins, "score": sc, "responses": n, "missing": m}
                        for ins, (sc, n, m) in zip(new, scores)]
        scored = [h for h in history if h["score"] is not None]
        if not scored:
            raise RuntimeError("OPRO: no instruction could be scored (every judge reply missing)")
        best = max(scored, key=lambda h: (h["score"], -h["iteration"]))  # ties: the earlier one
        self.best = best["instruction"]
        return {"instruction": self.best, "score": best["score"], "born": best["iteration"], "iterations": T,
                "per_iteration": M2, "optimization_prompts": len(ctx.optimization_prompts),
                "candidates": len(history), "skipped": skipped, "history": history,
                "optimization_usage": _usage_growth(ctx.client.usage_by_role(), usage_before)}

    async def respond(self, query: str, bucket: int, start: int, n: int) -> list[str]:
        if self.best is None:
            raise RuntimeError("OPRO: prepare() must run before respond()")
        return await self.sample(fig7_request(self.ctx, self.best, self.bucket_demos(bucket, query), query), start, n)
