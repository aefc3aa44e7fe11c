"""MODULAR PLURALISM, Overton mode (Feng et al., 2024; App. C.3), realized as the paper did: the community
LMs are the target model under Q+IF with a *single* value's instruction (Table 2 for HH values, Table 4
for Schwartz values), each commenting on the query; their comments are then combined with the query and
summarized by the target model. Response j of a bucket summarizes comment j of every community, so each
judged response rests on its own K comments. The summary prompt is ours (templates/modular_*.txt)."""

from __future__ import annotations

import asyncio

from picaco.eval.methods.base import Method
from picaco.eval.texts import render
from picaco.templates import render_query


class Modular(Method):
    id = "modular"

    async def prepare(self) -> dict:
        return {"communities": [v.name for v in self.ctx.composition.values]}

    async def respond(self, query: str, bucket: int, start: int, n: int) -> list[str]:
        ctx = self.ctx
        community = await asyncio.gather(*[
            ctx.client.chat(ctx.target_request(v.instruction, render_query(query)), n=n, start=start)
            for v in ctx.composition.values])

        async def summarize(j: int) -> str:
            comments = [reply.samples[j].text.strip() for reply in community if reply.samples[j].text.strip()]
            if not comments:
                return ""  # every community was silent: recorded as an empty response
            block = "\n".join(render("modular_comment", number=str(i + 1), comment=c) for i, c in enumerate(comments))
            reply = await ctx.client.chat(ctx.target_request(None, render("modular_summary", comments=block,
                                                                          query=query)), n=1)
            return reply.text

        return list(await asyncio.gather(*[summarize(j) for j in range(n)]))
