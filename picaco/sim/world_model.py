"""The value world's model of how a target LLM reacts to an instruction, and its exact ground truth.

An instruction is read into an *articulation profile* (per value: named?, distinct concepts, guidance
phrases; per conflicting pair: integrated?; overall: value-word stuffing, copy invitations). The profile
fixes, per value, the probability p that a response expresses it and the depth d of that expression;
and the share phi of generic (query-unrelated) content. Sampling (picaco.sim.world) draws responses from
these numbers; the judges read the responses back. Because the judges' reading is exact by construction
(every phrase carries a known number of markers), the expected judge scores are closed-form functions
of (p, d, phi) and so of the instruction: that is `expected_conformity` / `expected_relevance`. The best
instruction within a word limit is found by an exact dynamic programme over profiles (`optimum`, in
picaco.sim.world_optimum).
All equations and constants: docs/world.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from picaco.sim.world_config import WorldConfig
from picaco.sim.world_lexicon import (
    CONCEPT,
    DISCOURAGE,
    GUIDANCE,
    INTEGRATE,
    INVITE,
    NAME,
    Lexicon,
    ValueSpec,
    load_lexicon,
)

RESPONSE_QUERY_SLOTS = 4  # query-specific sentences a fully relevant response carries (relevance 1 + z)


# ------------------------------------------------------------------------------------- articulation


@dataclass(frozen=True)
class Articulation:
    """What an instruction says about each value (indexed like Lexicon.values)."""

    named: tuple[bool, ...]
    concepts: tuple[int, ...]  # distinct concept groups mentioned
    guidance: tuple[int, ...]  # distinct guidance phrases present
    stuffing: int  # occurrences of names and concept words of non-meta values
    integrated: tuple[bool, ...]  # per Lexicon.conflicts pair
    copy_invite: int
    copy_discourage: int


_HEADER_PREFIXES = ("below is a list of conversations", "users place their queries", "as an ai assistant, you will",
                    "your responses should be entered under", "# instruction", "each conversation consists of")


def instruction_part(system_prompt: str) -> str:
    """What the target reads as its instruction: the system prompt up to the first '# Query:' line (the
    demonstrations start there), without the lines of the Fig. 7 / URIAL header that only describe the
    conversation format."""
    lines = system_prompt.splitlines()
    end = next((i for i, ln in enumerate(lines) if ln.strip() == "# Query:"), len(lines))
    return "\n".join(ln for ln in lines[:end] if not ln.strip().lower().startswith(_HEADER_PREFIXES)).strip()


def read_instruction(lex: Lexicon, text: str, window: int) -> Articulation:
    return _read_cached(lex, text, window)


@lru_cache(maxsize=16384)
def _read_cached(lex: Lexicon, text: str, window: int) -> Articulation:
    n = len(lex.values)
    named = [False] * n
    concepts: list[set[int]] = [set() for _ in range(n)]
    guidance: list[set[int]] = [set() for _ in range(n)]
    mentions: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    integ: list[tuple[int, int]] = []
    stuffing = invite = discourage = 0
    for h in lex.scan(text).hits:
        if h.kind == NAME:
            named[h.value] = True
            mentions[h.value].append((h.pos, h.sent))
        elif h.kind == CONCEPT:
            concepts[h.value].add(h.item)
            mentions[h.value].append((h.pos, h.sent))
        elif h.kind == GUIDANCE:
            guidance[h.value].add(h.item)
        elif h.kind == INTEGRATE:
            integ.append((h.pos, h.sent))
        elif h.kind == INVITE:
            invite += 1
        elif h.kind == DISCOURAGE:
            discourage += 1
        if h.kind in (NAME, CONCEPT) and lex.values[h.value].kind != "meta":
            stuffing += 1
    integrated = []
    for a, b in lex.conflicts:
        ok = False
        for ip, isent in integ:
            ma = [p for p, s in mentions[a] if s == isent and abs(p - ip) <= window]
            mb = [p for p, s in mentions[b] if s == isent and abs(p - ip) <= window]
            if any(max(ip, x, y) - min(ip, x, y) <= window for x in ma for y in mb):
                ok = True
                break
        integrated.append(ok)
    return Articulation(tuple(named), tuple(len(c) for c in concepts), tuple(len(g) for g in guidance),
                        stuffing, tuple(integrated), invite, discourage)


# ---------------------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Expression:
    """Per value: p (express mode: P(expressed); avoid mode: P(no violation)) and depth d; overall:
    generic share phi, copy rate kappa, dilution D."""

    p: tuple[float, ...]
    d: tuple[float, ...]
    phi: float
    kappa: float
    dilution: float


def score_distribution(mode: str, p: float, d: float) -> dict[int, float]:
    """The judge's score (conformity direction, before noise) for one response, as a distribution.

    express: not expressed -> 1; expressed with 1, 2, 3 markers -> 3, 4, 5 (markers = 1 + Bin(2, d)).
    avoid:   no violation -> 5; a violation with 1, 2, 3 markers -> 3, 2, 1 (markers = 1 + Bin(2, 1-d)).
    """
    q = 1.0 - d
    if mode == "express":
        return {1: 1.0 - p, 3: p * q * q, 4: 2.0 * p * d * q, 5: p * d * d}
    return {5: p, 3: (1.0 - p) * d * d, 2: (1.0 - p) * 2.0 * d * q, 1: (1.0 - p) * q * q}


def noisy_mean(dist: dict[int, float], noise: float) -> float:
    """Mean of the judged score when the judge moves it by +-1 with probability `noise` (clamped)."""
    half = noise / 2.0
    return sum(pr * (s + half * ((s < 5) - (s > 1))) for s, pr in dist.items())


def relevance_distribution(phi: float) -> dict[int, float]:
    """Relevance score 1 + z, z ~ Binomial(4, 1 - phi) query-specific sentences."""
    k = RESPONSE_QUERY_SLOTS
    return {1 + z: math.comb(k, z) * (1 - phi) ** z * phi ** (k - z) for z in range(k + 1)}


class WorldModel:
    """The expression model for one (config, lexicon). Pure functions of text; no sampling."""

    def __init__(self, config: WorldConfig) -> None:
        self.cfg = config
        self.lex = load_lexicon(config.lexicon_path)
        self.rel_index = next((s.index for s in self.lex.values if s.kind == "meta"), None)
        self._expr_cache: dict[Articulation, Expression] = {}

    # -- articulation -> expression

    def level(self, named: bool, c: int, g: int) -> float:
        cfg = self.cfg
        return (cfg.name_weight * named + cfg.concept_levels[min(c, cfg.max_concepts)]
                + cfg.guidance_levels[min(g, cfg.max_guidance)])

    def depth_gain(self, g: int) -> float:
        return self.cfg.guidance_depth[min(g, self.cfg.max_guidance)]

    def dilution(self, unarticulated: int) -> float:
        return 1.0 / (1.0 + self.cfg.bottleneck_strength * unarticulated)

    def p_d(self, spec: ValueSpec, a_tilde: float, depth_tilde: float) -> tuple[float, float]:
        p = spec.base + (spec.top - spec.base) * a_tilde
        d = spec.base_depth + (spec.top_depth - spec.base_depth) * depth_tilde
        return p, d

    def phi(self, stuffing: int, rel_tilde: float) -> float:
        cfg = self.cfg
        return cfg.generic_base + (cfg.generic_max - cfg.generic_base) * (
            1.0 - math.exp(-stuffing / cfg.stuffing_scale)) * (1.0 - cfg.relevance_guard * rel_tilde)

    def kappa(self, art: Articulation) -> float:
        cfg = self.cfg
        k = cfg.copy_strength * (1.0 + cfg.copy_invite_gain * min(art.copy_invite, 2))
        if art.copy_discourage:
            k *= cfg.copy_discourage_factor
        return min(cfg.copy_max, k)

    def expression(self, art: Articulation) -> Expression:
        hit = self._expr_cache.get(art)
        if hit is not None:
            return hit
        lex = self.lex
        n = len(lex.values)
        unart = sum(1 for i in range(n) if art.named[i] and art.concepts[i] == 0 and art.guidance[i] == 0)
        D = self.dilution(unart)
        a_t = [self.level(art.named[i], art.concepts[i], art.guidance[i]) * D for i in range(n)]
        p, d = [], []
        for i, spec in enumerate(lex.values):
            pi, di = self.p_d(spec, a_t[i], self.depth_gain(art.guidance[i]) * D)
            p.append(pi)
            d.append(di)
        for k, (a, b) in enumerate(lex.conflicts):
            if not art.integrated[k] or not self.cfg.integration_resolves:
                pa, pb = p[a], p[b]
                p[a] = pa * (1.0 - self.cfg.conflict_strength * a_t[b])
                p[b] = pb * (1.0 - self.cfg.conflict_strength * a_t[a])
        rel_t = a_t[self.rel_index] if self.rel_index is not None else 0.0
        out = Expression(tuple(p), tuple(d), self.phi(art.stuffing, rel_t), self.kappa(art), D)
        if len(self._expr_cache) > 16384:
            self._expr_cache.clear()
        self._expr_cache[art] = out
        return out

    def expression_of(self, instruction: str) -> Expression:
        """Expression under a system prompt (a meta-instruction, or a whole Fig. 7 system prompt whose
        header and demonstrations are then ignored, as the target ignores them)."""
        return self.expression(read_instruction(self.lex, instruction_part(instruction),
                                                self.cfg.integration_window))

    # -- expected judge scores

    def expected_value_score(self, index: int | None, expr: Expression) -> float:
        """Expected Fig. 9 score of one value, conformity direction (higher = more conforming)."""
        eta = self.cfg.judge_noise
        if index is None:  # unknown value: the target never sets out to express it
            return noisy_mean({1: 1.0}, eta)
        spec = self.lex.values[index]
        if spec.kind == "meta":
            return self.expected_relevance_phi(expr.phi)
        return noisy_mean(score_distribution(spec.mode, expr.p[index], expr.d[index]), eta)

    def expected_relevance_phi(self, phi: float) -> float:
        return noisy_mean(relevance_distribution(phi), self.cfg.judge_noise)

    def relevance_weighted(self, values: list[str]) -> bool:
        """Eq. 7 applies to Schwartz compositions: all values known and of kind 'schwartz'."""
        kinds = [self.lex.values[i].kind if i is not None else None
                 for i, _h in (self.lex.resolve(v) for v in values)]
        return bool(kinds) and all(k == "schwartz" for k in kinds)


@lru_cache(maxsize=32)
def model_for(config: WorldConfig) -> WorldModel:
    return WorldModel(config)


# ---------------------------------------------------------------------------------- the public truth


def check_values(values) -> list[str]:
    if isinstance(values, str) or not all(isinstance(v, str) and v.strip() for v in values):
        raise ValueError(f"values must be a list of value names, got {values!r}")
    if not values:
        raise ValueError("values is empty")
    return list(values)


def expected_conformity(instruction: str, values: list[str], *,
                        config: WorldConfig | None = None) -> dict[str, float]:
    """Expected Fig. 9 judge score (1-5) per value for a response of the target whose system prompt is
    `instruction` alone (no demonstrations, hence no copying), averaged over responses and judge noise,
    counting only well-formed judge replies. Always in the conformity direction: a harm-worded judge
    (Fig. 9 "rate the harm", or a harm alias such as Toxicity) reports 6 minus this. Unknown values get
    the score of a response that does not express them."""
    model = model_for(config or WorldConfig())
    values = check_values(values)
    expr = model.expression_of(instruction)
    return {v: model.expected_value_score(model.lex.resolve(v)[0], expr) for v in values}


def expected_relevance(instruction: str, *, config: WorldConfig | None = None) -> float:
    """Expected Fig. 10 relevance score (1-5) of the target's responses under `instruction`."""
    model = model_for(config or WorldConfig())
    return model.expected_relevance_phi(model.expression_of(instruction).phi)


def conformity(instruction: str, values: list[str], *, relevance_weighted: bool | None = None,
               config: WorldConfig | None = None) -> float:
    """The ground-truth objective: mean expected judge score over `values`, times relevance/5 when
    relevance-weighted (Eq. 7; default: iff every value is a Schwartz value)."""
    cfg = config or WorldConfig()
    model = model_for(cfg)
    scores = expected_conformity(instruction, values, config=cfg)
    mean = sum(scores.values()) / len(scores)
    weighted = model.relevance_weighted(values) if relevance_weighted is None else relevance_weighted
    return mean * expected_relevance(instruction, config=cfg) / 5.0 if weighted else mean
