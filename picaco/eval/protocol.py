"""The evaluation protocol of App. C.2 for one method: sample, judge, record.

For each test query: `buckets` buckets x `samples_per_bucket` repetitions (3 x 3 = 9 responses), the
way the E-step samples (Fig. 7; buckets of random demonstrations shared by all queries). Every non-empty
response is scored by the value judge (Fig. 9) and, for Schwartz compositions, the relevance judge
(Fig. 10). Empty responses are recorded and counted, not judged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from picaco.base.prompts import TaskPrompt
from picaco.eval.judging import JudgeSetup, judge_relevance, judge_values
from picaco.eval.methods.base import EvalContext, Method
from picaco.eval.metrics import ResponseRecord
from picaco.method.estimators import Judgement

Progress = Callable[[int, int], None]  # (done, total) over the method's (query, bucket) jobs


async def sample_responses(method: Method, prompts: list[TaskPrompt], progress: Progress | None = None
                           ) -> list[ResponseRecord]:
    p = method.ctx.config.protocol
    r = p.samples_per_bucket
    jobs = [(i, b) for i in range(len(prompts)) for b in range(p.buckets)]
    done = 0

    async def one(i: int, b: int) -> list[str]:
        nonlocal done
        texts = await method.respond(prompts[i].text, b, b * r, r)
        if len(texts) != r:
            raise RuntimeError(f"{method.id}: asked for {r} responses, got {len(texts)}")
        done += 1
        if progress is not None:
            progress(done, len(jobs))
        return texts

    replies = await asyncio.gather(*[one(i, b) for i, b in jobs])
    return [ResponseRecord(prompt_id=prompts[i].prompt_id, bucket=b, sample=b * r + k, text=text,
                           status="judged" if text.strip() else "empty")
            for (i, b), texts in zip(jobs, replies) for k, text in enumerate(texts)]


async def judge_records(ctx: EvalContext, setup: JudgeSetup, prompts: list[TaskPrompt],
                        records: list[ResponseRecord]) -> list[ResponseRecord]:
    cfg = ctx.config
    text_of = {p.prompt_id: p.text for p in prompts}
    todo = [k for k, rec in enumerate(records) if rec.status != "empty"]
    items = [(text_of[records[k].prompt_id], records[k].text) for k in todo]
    kw: dict[str, Any] = dict(model=cfg.models.judge, attempts=cfg.protocol.judge_attempts, sampling=cfg.sampling, seed=cfg.seed)
    values_job = judge_values(ctx.client, setup, items, **kw)
    relevance_judgements: list[Judgement] | list[None]
    if setup.relevance:
        value_judgements, relevance_judgements = await asyncio.gather(values_job, judge_relevance(ctx.client, items, **kw))
    else:
        value_judgements, relevance_judgements = await values_job, [None] * len(items)
    out = [rec.model_copy(update={"relevance_status": "empty" if setup.relevance else "off"}) if rec.status == "empty"
           else rec for rec in records]
    for k, vj, rj in zip(todo, value_judgements, relevance_judgements):
        update = {"scores": vj.scores, "status": "judged" if vj.scores is not None else "missing",
                  "judge_attempts": vj.attempts}
        if rj is not None:
            update.update(relevance=rj.scores["Relevance"] if rj.scores is not None else None,
                          relevance_status="judged" if rj.scores is not None else "missing",
                          relevance_attempts=rj.attempts)
        out[k] = out[k].model_copy(update=update)
    return out
