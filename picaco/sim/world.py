"""The simulated value world: an offline stand-in for the target LLM, the judges and the optimizer.

The world reads only the prompt text it is sent. It recognises the paper's prompts by their wording:

- Fig. 9 value judge ("Please act as an impartial judge"): JSON scores read from the response's markers;
- Fig. 10 relevance judge ("Rate the relevance of the response"): a score read from how many sentences
  of the response carry the query's own words;
- Fig. 8 optimizer (system "You are an expert in LLM instructions", or "<INS>" examples and "A better
  instruction"): a new instruction recombined from the ones shown, the demonstrations and what the model
  "knows" about each value, within the word limit;
- a request to elaborate on values ("Please elaborate on the values of ..."): value talk;
- anything else: the target. Its system prompt (Fig. 7 header + meta-instruction + demonstrations, a
  URIAL prompt, a plain instruction, a persona, or none at all) is read into an articulation profile
  (picaco.sim.world_model) that sets what its responses express.

The model, its equations, constants and ground truth are described in docs/world.md. Entry points:
`make_world(name_or_config)`, `ValueWorld`, and the exact ground truth `expected_conformity`,
`expected_relevance`, `conformity`, `optimum` (re-exported from picaco.sim.world_model).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from pydantic import ValidationError

from picaco.base.errors import ConfigError
from picaco.sim.world_config import WorldConfig
from picaco.sim.world_lexicon import Lexicon, tokens, word_count
from picaco.sim.world_model import (
    RESPONSE_QUERY_SLOTS, Expression, Optimum, WorldModel, conformity, expected_conformity,
    expected_relevance, instruction_part, model_for, optimum, read_instruction,
)

__all__ = [
    "WorldConfig", "ValueWorld", "make_world", "expected_conformity", "expected_relevance", "conformity",
    "optimum", "Optimum", "WORLD_NAMES",
]

WORLD_NAMES = ("values", "values-null", "echo")

MIN_WORDS, MAX_WORDS = 40, 150
_COT_PREFIX = "let's think about how to respond"
_ELAB = re.compile(r"\belaborate on (?:the )?values?\b", re.IGNORECASE)
_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+")
_INS_BLOCK = re.compile(r"A\s+(\w+)\s+instruction could be:\s*<INS>(.*?)</INS>", re.DOTALL | re.IGNORECASE)
_RANK = {"poor": 0, "fair": 1, "okay": 2, "ok": 2, "good": 3}


# ------------------------------------------------------------------------------------- prompt parsing


def _strip_fences(text: str) -> str:
    lines = [ln for ln in text.splitlines() if not ln.strip().startswith("```")]
    return "\n".join(lines).strip()


def _qa_blocks(lines: list[str]) -> list[tuple[str, str]]:
    """'# Query:' / '# Answer:' blocks (each marker on a line of its own) -> [(query, answer)]."""
    out: list[tuple[str, str]] = []
    q: list[str] | None = None
    a: list[str] | None = None
    for ln in lines:
        s = ln.strip()
        if s == "# Query:":
            if q is not None and a is not None:
                out.append((_strip_fences("\n".join(q)), _strip_fences("\n".join(a))))
            q, a = [], None
        elif s == "# Answer:" and q is not None and a is None:
            a = []
        elif a is not None:
            a.append(ln)
        elif q is not None:
            q.append(ln)
    if q is not None and a is not None:
        out.append((_strip_fences("\n".join(q)), _strip_fences("\n".join(a))))
    return [(x, y) for x, y in out if y]


@dataclass(frozen=True)
class SystemPrompt:
    instruction: str
    demos: tuple[tuple[str, str], ...]
    copy_sources: tuple[str, ...]  # demonstration answer sentences, in order
    copy_weights: tuple[float, ...]  # value-laden sentences are quoted more often


@dataclass(frozen=True)
class QueryInfo:
    words: tuple[str, ...]  # query-specific words (what a response can reuse; what the judge looks for)


class ValueWorld:
    """The 'values' world. Thread-safe; deterministic given the seed the engine passes."""

    def __init__(self, config: WorldConfig | None = None) -> None:
        self.config = config or WorldConfig()
        self.model: WorldModel = model_for(self.config)
        self.lex: Lexicon = self.model.lex
        self._system = lru_cache(maxsize=4096)(self._parse_system)
        self._query = lru_cache(maxsize=65536)(self._query_info)
        self._nonmeta = tuple(s for s in self.lex.values if s.kind != "meta")
        self._name_tokens = frozenset(t for s in self.lex.values for f in s.name_forms for t in f)

    # -- the World protocol

    def respond(self, model: str, messages: list[dict[str, str]], *, seed: int, temperature: float,
                max_tokens: int | None) -> str:
        rng = random.Random(seed)
        system = "\n".join(m["content"] for m in messages if m.get("role") == "system")
        users = [m["content"] for m in messages if m.get("role") == "user"]
        last = users[-1] if users else ""
        if "Please act as an impartial judge" in last:
            return self._value_judge(rng, last)
        if "Rate the relevance of the response" in last:
            return self._relevance_judge(rng, last)
        if system.lstrip().startswith("You are an expert in LLM instructions") or (
                "<INS>" in last and re.search(r"\bbetter instruction\b", last, re.IGNORECASE)):
            return self._optimizer(rng, last)
        if "generate the instruction <INS>" in last and "higher score" in last:
            return self._opro_optimizer(rng, last)
        if _ELAB.search(last) and not any(ln.strip() == "# Query:" for ln in last.splitlines()):
            return self._elaborate(rng, last)
        return self._target(rng, system, messages)

    # -- shared readers

    def _parse_system(self, text: str) -> SystemPrompt:
        lines = text.splitlines()
        first_q = next((i for i, ln in enumerate(lines) if ln.strip() == "# Query:"), len(lines))
        demos = tuple(_qa_blocks(lines[first_q:]))
        sources, weights = [], []
        for _q, ans in demos:
            for sent in _SENT_SPLIT.split(" ".join(ans.split())):
                if len(sent.split()) >= 4:
                    pos, _neg = self.lex.marker_counts(sent)
                    sources.append(sent)
                    weights.append(1.0 + sum(pos))
        return SystemPrompt(instruction_part(text), demos, tuple(sources), tuple(weights))

    def _query_info(self, query: str) -> QueryInfo:
        seen: dict[str, None] = {}
        lex = self.lex
        for t in tokens(query[:4000]):
            if (len(t) >= 3 and not t.isdigit() and t not in lex.generic_vocab and t not in lex.single
                    and t not in self._name_tokens):
                seen.setdefault(t, None)
        return QueryInfo(tuple(seen))

    def _specific_sentences(self, response: str, info: QueryInfo) -> int:
        """Sentences carrying at least min(2, |query words|) distinct query-specific words."""
        need = min(2, len(info.words))
        qset = set(info.words)
        count = 0
        for sent in _SENT_SPLIT.split(response.strip()):
            if len(qset.intersection(tokens(sent))) >= need:
                count += 1
        return count

    # -- target

    def _split_messages(self, messages: list[dict[str, str]]) -> tuple[str, str]:
        """(query, extra context) from the conversation: the query is the '# Query:' section of the latest
        user message that has one (else the last user message); everything else that is not the system
        prompt (CoT prompts, earlier assistant turns) is extra context the target also reads."""
        convo = [m for m in messages if m.get("role") in ("user", "assistant")]
        qi = next((k for k in range(len(convo) - 1, -1, -1) if convo[k]["role"] == "user"
                   and any(ln.strip() == "# Query:" for ln in convo[k]["content"].splitlines())), None)
        extra: list[str] = []
        if qi is None:
            qi = next((k for k in range(len(convo) - 1, -1, -1) if convo[k]["role"] == "user"), None)
            query = convo[qi]["content"] if qi is not None else ""
        else:
            lines = convo[qi]["content"].splitlines()
            start = max(k for k, ln in enumerate(lines) if ln.strip() == "# Query:")
            body: list[str] = []
            in_query = True
            for ln in lines[start + 1:]:
                s = ln.strip()
                if s == "# Answer:":
                    in_query = False
                elif s.lower().startswith(_COT_PREFIX) or not in_query:
                    extra.append(ln)
                else:
                    body.append(ln)
            query = _strip_fences("\n".join(body))
        for k, m in enumerate(convo):
            if k != qi:
                extra.append(m["content"])
        return query, "\n".join(x for x in extra if x.strip())

    def _target(self, rng: random.Random, system: str, messages: list[dict[str, str]]) -> str:
        sp = self._system(system)
        query, extra = self._split_messages(messages)
        context = sp.instruction if not extra else f"{sp.instruction}\n{extra}"
        art = read_instruction(self.lex, context, self.config.integration_window)
        expr = self.model.expression(art)
        return self._compose(rng, expr, self._query(query), sp)

    def _compose(self, rng: random.Random, expr: Expression, info: QueryInfo, sp: SystemPrompt | None) -> str:
        lex = self.lex
        phrases: list[str] = []
        violations: list[str] = []
        for spec in self._nonmeta:
            i = spec.index
            r = rng.random()
            d = expr.d[i]
            if spec.mode == "express":
                if r < expr.p[i]:
                    level = 1 + (rng.random() < d) + (rng.random() < d)
                    phrases.append(rng.choice(spec.banks[level - 1]))
            elif r >= expr.p[i]:
                level = 1 + (rng.random() >= d) + (rng.random() >= d)
                violations.append(rng.choice(spec.banks[level - 1]))
        z = sum(rng.random() >= expr.phi for _ in range(RESPONSE_QUERY_SLOTS))
        copies: list[str] = []
        if sp is not None and sp.copy_sources:
            n_copy = sum(rng.random() < expr.kappa for _ in range(2))
            for _ in range(n_copy):
                frag = rng.choices(sp.copy_sources, weights=sp.copy_weights)[0]
                words = frag.split()
                if len(words) > 18:
                    frag = " ".join(words[:18]).rstrip(",;:") + "."
                copies.append(frag)
            z = max(0, z - len(copies))
        query_sents: list[str] = []
        if info.words and z:
            for tpl in rng.sample(lex.query_sentences, min(z, len(lex.query_sentences))):
                pool = info.words[:12]
                q1, q2 = rng.sample(pool, 2) if len(pool) >= 2 else (pool[0], pool[0])
                query_sents.append(_cap(tpl.replace("{q1}", q1).replace("{q2}", q2)))
        value_sents: list[str] = []
        rng.shuffle(phrases)
        while phrases:
            k = min(len(phrases), rng.choice((1, 2, 2, 3)))
            group, phrases = phrases[:k], phrases[k:]
            tpl = rng.choice(lex.connectors[("one", "two", "three")[k - 1]])
            for slot, ph in zip(("{A}", "{B}", "{C}"), group):
                tpl = tpl.replace(slot, ph)
            value_sents.append(_cap(tpl))
        n_fill = (RESPONSE_QUERY_SLOTS - len(query_sents)) // 2
        fillers = rng.sample(lex.fillers, min(n_fill, len(lex.fillers)))
        sents = value_sents + violations + copies + fillers
        rng.shuffle(sents)
        for s in query_sents[1:]:  # spread through the answer, after the opening one
            sents.insert(rng.randint(0, len(sents)), s)
        sents = query_sents[:1] + sents
        text = " ".join(sents)
        spare = [f for f in lex.fillers if f not in fillers]
        rng.shuffle(spare)
        while word_count(text) < MIN_WORDS and spare:
            sents.append(spare.pop())
            text = " ".join(sents)
        while word_count(text) > MAX_WORDS and any(f in sents for f in fillers):
            sents.remove(next(f for f in fillers if f in sents))
            text = " ".join(sents)
        return text

    # -- elaboration (the S of Schwartz compositions, App. C.1)

    def _elaborate(self, rng: random.Random, text: str) -> str:
        lex = self.lex
        el = lex.elaboration
        found: list[int] = []
        for h in lex.scan(text).hits:
            if h.kind == "name" and h.value not in found and lex.values[h.value].kind != "meta":
                found.append(h.value)
        unknown = []
        for ln in text.splitlines():
            m = re.match(r"^\s*-\s*([^:]{1,60}):\s*(.+)$", ln)
            if m and lex.resolve(m.group(1))[0] is None:
                unknown.append((m.group(1).strip(), m.group(2).strip()))
        out = [el["intro"]]
        for i in found:
            spec = lex.values[i]
            groups = rng.sample(spec.concepts, 3)
            c = [rng.choice(g) for g in groups]
            out.append(el["definition"].replace("{Name}", spec.name).replace("{c1}", c[0])
                       .replace("{c2}", c[1]).replace("{c3}", c[2]))
            bank = spec.banks[1] if spec.mode == "express" else ()
            if bank:
                out.append(el["practice"].replace("{P}", rng.choice(bank)))
        for name, definition in unknown:
            out.append(f"{name} means {definition.rstrip('.')}.")
        out.append(el["closing"])
        return " ".join(out)

    # -- judges

    def _noisy(self, rng: random.Random, score: int) -> int:
        r = rng.random()
        eta = self.config.judge_noise
        if r < eta / 2:
            return min(5, score + 1)
        if r < eta:
            return max(1, score - 1)
        return score

    def _malformed(self, rng: random.Random, good: str) -> str:
        kind = rng.randrange(3)
        if kind == 0:  # cut off mid-reply
            return good[: rng.randint(1, max(1, len(good) * 2 // 3))]
        if kind == 1:
            return "I'm sorry, but I can't provide a rating for this response."
        return re.sub(r'"score": \d', '"score": "N/A"', good, count=1) if '"score": ' in good else good[:5]

    def _emit(self, rng: random.Random, obj: dict) -> str:
        good = json.dumps(obj, indent=2)
        if rng.random() < self.config.malformed_rate:
            return self._malformed(rng, good)
        if rng.random() < self.config.fence_rate:
            return f"```json\n{good}\n```"
        return good

    def _value_judge(self, rng: random.Random, text: str) -> str:
        query, response, aspects, harm_variant = _parse_value_judge(text)
        lex = self.lex
        pos, neg = lex.marker_counts(response)
        info = self._query(query)
        resp_tokens = None
        out: dict[str, dict] = {}
        for name, definition in aspects:
            idx, harm_alias = lex.resolve(name)
            harm = harm_variant or harm_alias
            if idx is None:
                if resp_tokens is None:
                    resp_tokens = tokens(response)
                marks = {t for t in tokens(f"{name} {definition}")
                         if len(t) >= 5 and t not in lex.stopwords}
                e = min(3, sum(1 for t in resp_tokens if t in marks))
                score = (1, 3, 4, 5)[e]
                reason = (f"The response touches on {name} ({e} related terms)." if e
                          else f"The response shows no sign of {name}.")
            elif lex.values[idx].kind == "meta":
                k = self._specific_sentences(response, info) if info.words else 2
                score = 1 + min(4, k)
                reason = f"{k} sentence(s) address the specifics of the instruction."
            elif lex.values[idx].mode == "express":
                e = min(3, pos[idx])
                score = (1, 3, 4, 5)[e]
                reason = (f"The response clearly reflects {name} ({e} signals)." if e
                          else f"The response does not reflect {name}.")
            else:
                e = min(3, neg[idx])
                score = (5, 3, 2, 1)[e]
                reason = (f"The response has a lapse in {name} ({e} problem words)." if e
                          else f"No lapse in {name} found.")
            score = self._noisy(rng, score)
            if harm:
                score = 6 - score
            out[name] = {"reason": reason, "score": score}
        return self._emit(rng, out)

    def _relevance_judge(self, rng: random.Random, text: str) -> str:
        query, response = _parse_relevance_judge(text)
        info = self._query(query)
        if info.words:
            k = self._specific_sentences(response, info)
            score = 1 + min(4, k)
            reason = (f"{k} sentence(s) deal with the particulars of the query." if k
                      else "The response is generic and does not engage with the query.")
        else:
            score, reason = 3, "The query gives little to be specific about."
        return self._emit(rng, {"reason": reason, "score": self._noisy(rng, score)})

    # -- optimizer (Fig. 8)

    def _optimizer(self, rng: random.Random, text: str) -> str:
        p = _parse_optimizer(text)
        ranked = sorted(enumerate(p.shown), key=lambda t: (_RANK.get(t[1][0].lower(), 1.5), t[0]))
        new = self._rewrite(rng, p, [t for _i, (_lab, t) in ranked])
        if self.config.null_optimizer:
            return f"<INS>{new}</INS>"
        pre = rng.choice(("", "", "Here is an improved instruction:\n", "A better instruction:\n"))
        return f"{pre}<INS>{new}</INS>"

    def _opro_optimizer(self, rng: random.Random, text: str) -> str:
        """OPRO's meta-prompt (instructions with 0-100 scores, exemplars): the same imperfect rewrite,
        starting from the instructions ranked by their scores."""
        p = _parse_opro(text)
        return f"<INS>{self._rewrite(rng, p, [t for _lab, t in p.shown])}</INS>"

    def _rewrite(self, rng: random.Random, p: "_OptPrompt", ranked_texts: list[str]) -> str:
        """The new instruction, from the instructions shown (best last); the null optimizer returns the
        best one shown unchanged."""
        names = p.values or ["the intended values"]
        seed = f"You should always provide responses that reflect the values of {_join(names)}."
        if self.config.null_optimizer:
            return ranked_texts[-1] if ranked_texts else seed
        return _Optimizer(self, rng, p, ranked_texts, seed).run()


# ----------------------------------------------------------------------------------- the optimizer role


_OPRO_SCORED = re.compile(r"text:\n(.*?)\nscore:\n\s*([-+]?\d+(?:\.\d+)?)", re.DOTALL)


def _parse_opro(text: str) -> "_OptPrompt":
    m = re.search(r"reflect the values of (.+?)\.\s*(?:\n|$)", text)
    values = [v.strip() for v in re.split(r",\s*(?:and\s+)?|\s+and\s+", m.group(1)) if v.strip()] if m else []
    scored = sorted(((float(score), body.strip()) for body, score in _OPRO_SCORED.findall(text) if body.strip()),
                    key=lambda x: x[0])
    start = text.find("example conversations")
    end = text.find("Generate an instruction")
    demos = _qa_blocks(text[start:end].splitlines()) if start >= 0 and end > start else []
    n = re.search(r"at most\s+(\d+)\s+words", text)
    return _OptPrompt(values, demos, "", [(f"score {sc:g}", body) for sc, body in scored],
                      int(n.group(1)) if n else 150)


@dataclass(frozen=True)
class _OptPrompt:
    values: list[str]
    demos: list[tuple[str, str]]
    technique: str
    shown: list[tuple[str, str]]
    length: int


def _parse_optimizer(text: str) -> _OptPrompt:
    m = re.search(r"reflect the values of (.+?)\.\s*(?:\n|$)", text)
    values = [v.strip() for v in re.split(r",\s*(?:and\s+)?|\s+and\s+", m.group(1)) if v.strip()] if m else []
    start = text.find("# Query:")
    end = text.find("The instruction should be enclosed")
    demos = _qa_blocks(text[start:end].splitlines()) if start >= 0 and end > start else []
    t = re.search(r"</INS>\.\s*(.*?),\s*and be sure to cover all of the values", text, re.DOTALL)
    shown = [(lab, body.strip()) for lab, body in _INS_BLOCK.findall(text) if body.strip()]
    n = re.search(r"within\s+\**\s*(\d+)\s+words", text)
    return _OptPrompt(values, demos, t.group(1).strip() if t else "", shown, int(n.group(1)) if n else 150)


class _Optimizer:
    """One imperfect rewrite: start from a shown instruction (usually the best), then recombine,
    elaborate values from what the model knows of them, and sometimes make things worse."""

    def __init__(self, world: ValueWorld, rng: random.Random, p: _OptPrompt, ranked: list[str], seed: str):
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
        sents = _sentences(parent)
        others = [s for t in self.ranked if t != parent for s in _sentences(t)]
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
            sents.append(_cap(rng.choice(rspec.guidance)) + "." if rng.random() < 0.6
                         else lex.optimizer["relevance_line"])
        if self.p.demos and rng.random() < self.pr["lift"]:
            ans = rng.choice(self.p.demos)[1].split()
            if len(ans) > 8:
                k = rng.randint(5, 9)
                s0 = rng.randrange(0, len(ans) - k)
                frag = " ".join(ans[s0:s0 + k]).strip(".,;:\"'")
                sents.append(lex.optimizer["demo_lift"].replace("{F}", frag))
        if rng.random() < self.pr["invite"]:
            sents.append(_cap(rng.choice(lex.copy_invite)) + ".")
        if len(sents) > 1 and rng.random() < self.pr["delete"]:
            for _ in range(rng.randint(1, 2)):
                if len(sents) > 1:
                    sents.pop(rng.randrange(len(sents)))
        if self.p.values and rng.random() < self.pr["namelist"]:
            sents.insert(0, lex.optimizer["name_list"].replace("{L}", _join(self.p.values)))
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
            return _cap(rng.choice(fresh)) + "." if fresh else None
        present = {h.item for h in lex.scan(" ".join(sents)).hits if h.kind == "concept" and h.value == i}
        fresh = [g for k, g in enumerate(spec.concepts) if k not in present]
        if not fresh:
            return None
        picks = rng.sample(fresh, min(len(fresh), rng.randint(1, 3)))
        words = [rng.choice(g) for g in picks]
        return lex.optimizer["concept_line"].replace("{Name}", spec.name).replace("{C}", _join(words))


# ---------------------------------------------------------------------------------------------- helpers


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


def _join(items: list[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    return ", ".join(items[:-1]) + f", and {items[-1]}"


_ENUM = re.compile(r"^(?:\s*(?:\d+[.)]|[-*\u2022])(?=\s|$))+\s*")


def _sentences(text: str) -> list[str]:
    """Sentences of an instruction, without list numbering or bullets."""
    out = []
    for line in text.splitlines():
        for s in _SENT_SPLIT.split(line):
            s = _ENUM.sub("", s).strip()
            if s and any(ch.isalpha() for ch in s):
                out.append(s)
    return out


def _between(text: str, start: str, end: str | None, *, last_end: bool = False) -> str:
    i = text.find(start)
    if i < 0:
        return ""
    i += len(start)
    if end is None:
        return text[i:]
    j = text.rfind(end) if last_end else text.find(end, i)
    return text[i:j] if j >= i else text[i:]


def _parse_value_judge(text: str) -> tuple[str, str, list[tuple[str, str]], bool]:
    query = _between(text, "## Instruction:", "## Output:").strip()
    eval_at = text.rfind("## Evaluation")
    out_at = text.find("## Output:")
    response = text[out_at + len("## Output:"): eval_at].strip() if 0 <= out_at < eval_at else ""
    aspects_block = _between(text[eval_at:] if eval_at >= 0 else text, "### Aspects", "### Format")
    aspects = []
    for ln in aspects_block.splitlines():
        m = re.match(r"^\s*-\s*([^:]{1,60}):\s*(.*)$", ln)
        if m:
            aspects.append((m.group(1).strip(), m.group(2).strip()))
    harm = bool(re.search(r"rate the harm\b", text, re.IGNORECASE))
    return query, response, aspects, harm


def _parse_relevance_judge(text: str) -> tuple[str, str]:
    q_at = text.find("# Query:")
    r_at = text.find("# Response:", q_at + 1 if q_at >= 0 else 0)
    tail = text.rfind("Output your score")
    query = text[q_at + len("# Query:"): r_at].strip() if 0 <= q_at < r_at else ""
    end = tail if tail > r_at else len(text)
    response = text[r_at + len("# Response:"): end].strip() if r_at >= 0 else ""
    return query, response


# ---------------------------------------------------------------------------------------------- factory


def make_world(name_or_config: str | WorldConfig | Mapping | None = "values"):
    """'values' (this world), 'values-null' (its null optimizer), 'echo' (the engine's plain world), a
    WorldConfig, or a mapping of WorldConfig fields."""
    if name_or_config is None or name_or_config == "values":
        return ValueWorld(WorldConfig())
    if isinstance(name_or_config, WorldConfig):
        return ValueWorld(name_or_config)
    if isinstance(name_or_config, Mapping):
        try:
            return ValueWorld(WorldConfig(**name_or_config))
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(x) for x in err.get("loc", ())) or "world"
            raise ConfigError(f"world config: {loc}: {err.get('msg')}") from None
    if name_or_config == "values-null":
        return ValueWorld(WorldConfig(null_optimizer=True))
    if name_or_config == "echo":
        from picaco.sim.engine import EchoWorld

        return EchoWorld()
    raise ConfigError(f"unknown sim world {name_or_config!r}: choose one of {', '.join(WORLD_NAMES)}")

