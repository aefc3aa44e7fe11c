"""The value world's optimizer role (Fig. 8, and OPRO's meta-prompt): an imperfect, seeded rewrite.

It starts from a shown instruction, recombines, elaborates the intended values from what the world
"knows" of them (the lexicon), and sometimes makes things worse; the null optimizer returns the best
shown instruction unchanged. Details: docs/world.md, section 4.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from picaco.sim.world_lexicon import word_count
from picaco.sim.world_prompts import cap, join_names, qa_blocks, sentences

if TYPE_CHECKING:
    from picaco.sim.world import ValueWorld

INS_BLOCK = re.compile(r"A\s+(\w+)\s+instruction could be:\s*<INS>(.*?)</INS>", re.DOTALL | re.IGNORECASE)
_RANK = {"poor": 0, "fair": 1, "okay": 2, "ok": 2, "good": 3}


def answer_fig8(world: ValueWorld, rng: random.Random, text: str) -> str:
    """The Fig. 8 optimizer's reply: a new instruction in <INS> tags, sometimes after a short preface."""
    p = _parse_optimizer(text)
    ranked = sorted(enumerate(p.shown), key=lambda t: (_RANK.get(t[1][0].lower(), 1.5), t[0]))
    new = _rewrite(world, rng, p, [t for _i, (_lab, t) in ranked])
    if world.config.null_optimizer:
        return f"<INS>{new}</INS>"
    pre = rng.choice(("", "", "Here is an improved instruction:\n", "A better instruction:\n"))
    return f"{pre}<INS>{new}</INS>"


def answer_opro(world: ValueWorld, rng: random.Random, text: str) -> str:
    """OPRO's meta-prompt (instructions with 0-100 scores, exemplars): the same imperfect rewrite,
    starting from the instructions ranked by their scores."""
    p = _parse_opro(text)
    return f"<INS>{_rewrite(world, rng, p, [t for _lab, t in p.shown])}</INS>"


def _rewrite(world: ValueWorld, rng: random.Random, p: OptPrompt, ranked_texts: list[str]) -> str:
    """The new instruction, from the instructions shown (best last); the null optimizer returns the
    best one shown unchanged."""
    names = p.values or ["the intended values"]
    seed = f"You should always provide responses that reflect the values of {join_names(names)}."
    if world.config.null_optimizer:
        return ranked_texts[-1] if ranked_texts else seed
    return _Optimizer(world, rng, p, ranked_texts, seed).run()


_OPRO_SCORED = re.compile(r"text:\n(.*?)\nscore:\n\s*([-+]?\d+(?:\.\d+)?)", re.DOTALL)


def _parse_opro(text: str) -> OptPrompt:
    m = re.search(r"reflect the values of (.+?)\.\s*(?:\n|$)", text)
    values = [v.strip() for v in re.split(r",\s*(?:and\s+)?|\s+and\s+", m.group(1)) if v.strip()] if m else []
    scored = sorted(((float(score), body.strip()) for body, score in _OPRO_SCORED.findall(text) if body.strip()),
                    key=lambda x: x[0])
    start = text.find("example conversations")
    end = text.find("Generate an instruction")
    demos = qa_blocks(text[start:end].splitlines()) if start >= 0 and end > start else []
    n = re.search(r"at most\s+(\d+)\s+words", text)
    return OptPrompt(values, demos, "", [(f"score {sc:g}", body) for sc, body in scored],
                      int(n.group(1)) if n else 150)


@dataclass(frozen=True)
class OptPrompt:
    values: list[str]
    demos: list[tuple[str, str]]
    technique: str
    shown: list[tuple[str, str]]
    length: int


def _parse_optimizer(text: str) -> OptPrompt:
    m = re.search(r"reflect the values of (.+?)\.\s*(?:\n|$)", text)
    values = [v.strip() for v in re.split(r",\s*(?:and\s+)?|\s+and\s+", m.group(1)) if v.strip()] if m else []
    start = text.find("# Query:")
    end = text.find("The instruction should be enclosed")
    demos = qa_blocks(text[start:end].splitlines()) if start >= 0 and end > start else []
    t = re.search(r"</INS>\.\s*(.*?),\s*and be sure to cover all of the values", text, re.DOTALL)
    shown = [(lab, body.strip()) for lab, body in INS_BLOCK.findall(text) if body.strip()]
    n = re.search(r"within\s+\**\s*(\d+)\s+words", text)
    return OptPrompt(values, demos, t.group(1).strip() if t else "", shown, int(n.group(1)) if n else 150)


class _Optimizer:
    """One imperfect rewrite: start from a shown instruction (usually the best), then recombine,
    elaborate values from what the model knows of them, and sometimes make things worse."""

    def __init__(self, world: ValueWorld, rng: random.Random, p: OptPrompt, ranked: list[str], seed: str):
        self.w, self.rng, self.p, self.ranked, self.seed = world, rng, p, ranked, seed
        self.lex = world.lex
        tech = p.technique.lower()
        self.pr = {"guidance": 0.5, "integ": 0.3, "rel": 0.25, "lift": 0.12, "invite": 0.04, "delete": 0.3,
                   "namelist": 0.1, "vague": 0.2, "cross": 0.4}
        self.numbered = "numbered" in tech
        if "guidance" in tech or "concrete example" in tech:
            self.pr["guidance"] = 0.8
        if "balance" in tech:
            self.pr["integ"] = 0.8
        if "checklist" in tech or "concise" in tech:
            self.pr["delete"], self.pr["vague"] = 0.6, 0.05
        if "query first" in tech or "specific query" in tech:
            self.pr["rel"] = 0.8
        if "persona" in tech:
            self.pr["guidance"], self.pr["vague"] = 0.25, 0.5
        if "example" in tech:
            self.pr["lift"] = 0.35

    def run(self) -> str:
        rng, lex = self.rng, self.lex
        if self.ranked:
            r = rng.random()
            parent = self.ranked[-1] if r < 0.55 or len(self.ranked) == 1 else (
                self.ranked[-2] if r < 0.8 else rng.choice(self.ranked))
        else:
            parent = self.seed
        sents = sentences(parent)
        others = [s for t in self.ranked if t != parent for s in sentences(t)]
        if others and rng.random() < self.pr["cross"]:
            for s in rng.sample(others, min(len(others), rng.randint(1, 2))):
                sents.insert(rng.randint(0, len(sents)), s)
        intended = [i for i in (lex.resolve(v)[0] for v in self.p.values) if i is not None]
        for i in intended:
            if lex.values[i].kind == "meta" or rng.random() >= self.w.config.optimizer_elaboration:
                continue
            line = self._elaborate(i, sents)
            if line:
                sents.insert(rng.randint(0, len(sents)), line)
        for a, b in lex.conflicts:
            if a in intended and b in intended and rng.random() < self.pr["integ"]:
                tpl = rng.choice(lex.optimizer["integrate"])
                sents.append(tpl.replace("{A}", lex.values[a].name).replace("{B}", lex.values[b].name))
        if rng.random() < self.pr["rel"] and self.w.model.rel_index is not None:
            rspec = lex.values[self.w.model.rel_index]
            sents.append(cap(rng.choice(rspec.guidance)) + "." if rng.random() < 0.6
                         else lex.optimizer["relevance_line"])
        if self.p.demos and rng.random() < self.pr["lift"]:
            ans = rng.choice(self.p.demos)[1].split()
            if len(ans) > 8:
                k = rng.randint(5, 9)
                s0 = rng.randrange(0, len(ans) - k)
                frag = " ".join(ans[s0:s0 + k]).strip(".,;:\"'")
                sents.append(lex.optimizer["demo_lift"].replace("{F}", frag))
        if rng.random() < self.pr["invite"]:
            sents.append(cap(rng.choice(lex.copy_invite)) + ".")
        if len(sents) > 1 and rng.random() < self.pr["delete"]:
            for _ in range(rng.randint(1, 2)):
                if len(sents) > 1:
                    sents.pop(rng.randrange(len(sents)))
        if self.p.values and rng.random() < self.pr["namelist"]:
            sents.insert(0, lex.optimizer["name_list"].replace("{L}", join_names(self.p.values)))
        if rng.random() < self.pr["vague"]:
            sents.insert(rng.randint(0, len(sents)), rng.choice(lex.optimizer["vague"]))
        sents = list(dict.fromkeys(s for s in sents if s.strip()))
        limit = max(1, self.p.length)
        while len(sents) > 1 and word_count(" ".join(sents)) > limit:
            sents.pop(rng.randrange(len(sents)))
        if self.numbered:
            sents = [f"{k}. {s}" for k, s in enumerate(sents, 1)]
        text = ("\n" if self.numbered else " ").join(sents)
        if word_count(text) > limit:
            text = " ".join(text.split()[:limit])
        return text

    def _elaborate(self, i: int, sents: list[str]) -> str | None:
        rng, lex = self.rng, self.lex
        spec = lex.values[i]
        if rng.random() < self.pr["guidance"]:
            have = " ".join(sents).lower()
            fresh = [g for g in spec.guidance if g not in have]
            return cap(rng.choice(fresh)) + "." if fresh else None
        present = {h.item for h in lex.scan(" ".join(sents)).hits if h.kind == "concept" and h.value == i}
        unnamed = [g for k, g in enumerate(spec.concepts) if k not in present]
        if not unnamed:
            return None
        picks = rng.sample(unnamed, min(len(unnamed), rng.randint(1, 3)))
        words = [rng.choice(g) for g in picks]
        return lex.optimizer["concept_line"].replace("{Name}", spec.name).replace("{C}", join_names(words))
