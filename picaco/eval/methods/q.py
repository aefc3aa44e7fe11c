"""Q: the vanilla query, no meta-instruction (Table 1's base row). The user turn is Fig. 7's wrapped query."""

from __future__ import annotations

from picaco.eval.methods.base import Method
from picaco.templates import render_query


class Q(Method):
    id = "q"

    async def respond(self, query: str, bucket: int, start: int, n: int) -> list[str]:
        return await self.sample(self.ctx.target_request(None, render_query(query)), start, n)
