"""PICACO: the optimized meta-instruction used exactly as in the E-step (Fig. 7): header +
meta-instruction + the bucket's three demonstrations as the system prompt, the wrapped query as the user
turn (App. C.2). The instruction comes from a finished run's result.json, from a run config the
evaluation optimizes, or from the config itself (resolved before the evaluation starts)."""

from __future__ import annotations

from picaco.eval.methods.base import Method
from picaco.templates import render_e_step


def fig7_request(ctx, instruction: str, demos, query: str):
    system, user = render_e_step(instruction, list(demos), query)
    return ctx.target_request(system, user)


class Picaco(Method):
    id = "picaco"
    uses_demonstrations = True

    @property
    def instruction(self) -> str:
        if not self.ctx.picaco_instruction:
            raise RuntimeError("PICACO's instruction was not resolved before the evaluation")
        return self.ctx.picaco_instruction

    async def prepare(self) -> dict:
        return {"instruction": self.instruction}

    async def respond(self, query: str, bucket: int, start: int, n: int) -> list[str]:
        return await self.sample(fig7_request(self.ctx, self.instruction, self.bucket_demos(bucket, query), query), start, n)
