"""Q+IF+CoT (App. C.3), two turns. System: the seed meta-instruction. Turn 1: the query marked with
"# Query" and "Let's think about how to respond in a way that considers [INTENDED VALUES]." The model's
reply is appended to the chat history, then turn 2: "Based on the above, what is your response to the
query marked with "# Query"?". The turn-2 reply is the response that is judged."""

from __future__ import annotations

import asyncio

from picaco.eval.methods.base import Method
from picaco.llm.request import Message
from picaco.templates import render_cot_turns


class QIFCoT(Method):
    id = "q_if_cot"

    async def respond(self, query: str, bucket: int, start: int, n: int) -> list[str]:
        comp = self.ctx.composition
        system, turn1, turn2 = render_cot_turns(comp.seed_instruction, comp.values, query)
        first = [Message(role="system", content=system), Message(role="user", content=turn1)]
        thoughts = await self.ctx.client.chat(self.ctx.target_messages(first), n=n, start=start)

        async def second(sample) -> str:
            if not sample.text.strip():
                return ""  # nothing to build on: recorded as an empty response
            history = first + [Message(role="assistant", content=sample.text), Message(role="user", content=turn2)]
            # each thought gets its own follow-up; its index keeps equal thoughts from sharing one draw
            reply = await self.ctx.client.chat(self.ctx.target_messages(history), n=1, start=sample.index)
            return reply.text

        return list(await asyncio.gather(*[second(s) for s in thoughts.samples]))
