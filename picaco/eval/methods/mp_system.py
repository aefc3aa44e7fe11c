"""MP+System 1 and MP+System 2 (Kamruzzaman and Kim, 2024; App. C.3): a machine persona with a
System 1 (fast, intuitive) or System 2 (slow, deliberate) prompt, with the seed meta-instruction appended
("to steer LLMs toward the intended values"). The persona and System 1/2 wording is ours
(templates/mp_system{1,2}.txt, see docs/evaluation.md): the paper does not print it."""

from __future__ import annotations

from picaco.eval.methods.base import Method
from picaco.eval.texts import render
from picaco.templates import render_query


class _MPSystem(Method):
    template: str

    async def respond(self, query: str, bucket: int, start: int, n: int) -> list[str]:
        system = render(self.template, meta_instruction=self.ctx.composition.seed_instruction)
        return await self.sample(self.ctx.target_request(system, render_query(query)), start, n)


class MPSystem1(_MPSystem):
    id = "mp_system1"
    template = "mp_system1"


class MPSystem2(_MPSystem):
    id = "mp_system2"
    template = "mp_system2"
