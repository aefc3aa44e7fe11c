"""CICL-inspired baseline (Sanz-Guerrero and Von Der Wense, 2025; App. C.3): negative and positive
demonstrations in the prompt. Corrective ICL shows the model its own flawed outputs next to the
corrections; here the negative for a demonstration query is the target's own raw answer (no
meta-instruction, the behaviour to be corrected) and the positive is D's answer. System prompt: our
header, the seed meta-instruction, then the bucket's three (query, poor answer, better answer) triples;
user turn: the wrapped query. Wording and layout are ours (templates/cicl_*.txt, docs/evaluation.md)."""

from __future__ import annotations

import asyncio

from picaco.eval.methods.base import Method
from picaco.eval.texts import render
from picaco.templates import render_query


class CICL(Method):
    id = "cicl"
    uses_demonstrations = True

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self._negatives: dict[str, str] = {}

    async def prepare(self) -> dict:
        queries = list(dict.fromkeys(d.query for d in self.usable_demos()))
        replies = await asyncio.gather(*[
            self.ctx.client.chat(self.ctx.target_request(None, render_query(q)), n=1) for q in queries])
        for q, reply in zip(queries, replies):
            if not reply.text.strip():
                raise RuntimeError("CICL: the target gave an empty raw answer to a demonstration query "
                                   "(no negative demonstration)")
            self._negatives[q] = reply.text.strip()
        return {"negatives": len(self._negatives)}

    def system(self, bucket: int, query: str) -> str:
        if not self._negatives:
            raise RuntimeError("CICL: prepare() must run before respond()")
        block = "\n".join(render("cicl_demo", query=d.query, negative=self._negatives[d.query], answer=d.answer)
                          for d in self.bucket_demos(bucket, query))
        return render("cicl_system", meta_instruction=self.ctx.composition.seed_instruction, demonstrations=block)

    async def respond(self, query: str, bucket: int, start: int, n: int) -> list[str]:
        return await self.sample(self.ctx.target_request(self.system(bucket, query), render_query(query)), start, n)
