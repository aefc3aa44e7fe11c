"""URIAL (Lin et al., 2024; App. C.3): URIAL's meta-instruction and stylistic demonstrations.

HH compositions use URIAL's official meta-instruction, read from its prompt file (`urial.prompt`, a path
or URL: the file is not shipped with picaco); Schwartz compositions use the paper's modified
meta-instruction (picaco.templates.urial_schwartz_instruction). "To ensure fair comparisons" the paper
uses bucketed sampling with K=3 demonstrations from D per bucket; `urial.demonstrations: file` uses
URIAL's own three instead. The demonstrations are laid out as in URIAL's file ('# Query:' and
'# Answer:' with the text in triple backticks), after the meta-instruction, in the system prompt; the
user turn is the query in the same layout.
"""

from __future__ import annotations

from picaco.eval.methods.base import Method
from picaco.eval.texts import render
from picaco.templates import urial_schwartz_instruction
from picaco.values import Demonstration


def urial_meta_instruction(ctx) -> str:
    comp = ctx.composition
    if comp.kind == "schwartz":
        return urial_schwartz_instruction(comp.values)
    if ctx.urial_prompt is None:
        raise RuntimeError("URIAL's prompt file was not loaded before the evaluation")
    return ctx.urial_prompt.instruction


def urial_system(meta_instruction: str, demos) -> str:
    block = "\n\n".join(render("urial_demo", query=d.query, answer=d.answer) for d in demos)
    return render("urial_system", meta_instruction=meta_instruction, demonstrations=block)


def urial_user(query: str) -> str:
    return render("urial_user", query=query)


class Urial(Method):
    id = "urial"
    uses_demonstrations = True

    def source_demos(self, bucket: int, query: str | None = None) -> list:
        if self.ctx.config.urial.demonstrations == "file":
            if self.ctx.urial_prompt is None:
                raise RuntimeError("URIAL's prompt file was not loaded before the evaluation")
            return [Demonstration(q, a) for q, a in self.ctx.urial_prompt.demonstrations]
        return self.bucket_demos(bucket, query)

    def demos(self, bucket: int, query: str) -> list:
        return self.source_demos(bucket, query)

    async def prepare(self) -> dict:
        return {"meta_instruction": urial_meta_instruction(self.ctx),
                "demonstrations": self.ctx.config.urial.demonstrations}

    async def respond(self, query: str, bucket: int, start: int, n: int) -> list[str]:
        system = urial_system(urial_meta_instruction(self.ctx), self.demos(bucket, query))
        return await self.sample(self.ctx.target_request(system, urial_user(query)), start, n)
