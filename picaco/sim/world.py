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
`ValueWorld`, `make_world` (re-exported from the world registry, picaco.sim.worlds), and the exact ground
truth `expected_conformity`, `expected_relevance`, `conformity`, `optimum` (re-exported from
picaco.sim.world_model).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from functools import lru_cache

from picaco.sim.world_config import WorldConfig
from picaco.sim.world_lexicon import Lexicon, tokens, word_count
from picaco.sim.world_model import (
    RESPONSE_QUERY_SLOTS,
    Expression,
    WorldModel,
    conformity,
    expected_conformity,
    expected_relevance,
    instruction_part,
    model_for,
    read_instruction,
)
from picaco.sim.world_optimizer import answer_fig8, answer_opro
from picaco.sim.world_optimum import Optimum, optimum
from picaco.sim.world_prompts import (
    SENT_SPLIT,
    cap,
    parse_relevance_judge,
    parse_value_judge,
    qa_blocks,
    strip_fences,
)

__all__ = [
    "WorldConfig", "ValueWorld", "expected_conformity", "expected_relevance", "conformity", "optimum", "Optimum",
]

MIN_WORDS, MAX_WORDS = 40, 150
_COT_PREFIX = "let's think about how to respond"
_ELAB = re.compile(r"\belaborate on (?:the )?values?\b", re.IGNORECASE)


# ------------------------------------------------------------------------------------- parsed prompts


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
            return answer_fig8(self, rng, last)
        if "generate the instruction <INS>" in last and "higher score" in last:
            return answer_opro(self, rng, last)
        if _ELAB.search(last) and not any(ln.strip() == "# Query:" for ln in last.splitlines()):
            return self._elaborate(rng, last)
        return self._target(rng, system, messages)

    # -- shared readers

    def _parse_system(self, text: str) -> SystemPrompt:
        lines = text.splitlines()
        first_q = next((i for i, ln in enumerate(lines) if ln.strip() == "# Query:"), len(lines))
        demos = tuple(qa_blocks(lines[first_q:]))
        sources, weights = [], []
        for _q, ans in demos:
            for sent in SENT_SPLIT.split(" ".join(ans.split())):
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
        for sent in SENT_SPLIT.split(response.strip()):
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
            query = strip_fences("\n".join(body))
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
                query_sents.append(cap(tpl.replace("{q1}", q1).replace("{q2}", q2)))
        value_sents: list[str] = []
        rng.shuffle(phrases)
        while phrases:
            k = min(len(phrases), rng.choice((1, 2, 2, 3)))
            group, phrases = phrases[:k], phrases[k:]
            tpl = rng.choice(lex.connectors[("one", "two", "three")[k - 1]])
            for slot, ph in zip(("{A}", "{B}", "{C}"), group):
                tpl = tpl.replace(slot, ph)
            value_sents.append(cap(tpl))
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
        query, response, aspects, harm_variant = parse_value_judge(text)
        harm_variant = harm_variant and not self.config.judge_harm_flipped
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
        query, response = parse_relevance_judge(text)
        info = self._query(query)
        if info.words:
            k = self._specific_sentences(response, info)
            score = 1 + min(4, k)
            reason = (f"{k} sentence(s) deal with the particulars of the query." if k
                      else "The response is generic and does not engage with the query.")
        else:
            score, reason = 3, "The query gives little to be specific about."
        return self._emit(rng, {"reason": reason, "score": self._noisy(rng, score)})
