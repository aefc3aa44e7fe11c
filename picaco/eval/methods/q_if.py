"""Q+IF (Ganguli et al., 2023; App. C.3): the seed meta-instruction of Table 2 (HH: the values'
instructions concatenated) or Table 3 (Schwartz) as the system prompt, the wrapped query as the user turn."""

from __future__ import annotations

from picaco.eval.methods.base import Method
from picaco.templates import render_query


class QIF(Method):
    id = "q_if"

    async def respond(self, query: str, bucket: int, start: int, n: int) -> list[str]:
        system = self.ctx.composition.seed_instruction
        return await self.sample(self.ctx.target_request(system, render_query(query)), start, n)
