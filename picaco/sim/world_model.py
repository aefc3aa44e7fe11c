"""The value world's model of how a target LLM reacts to an instruction, and its exact ground truth.

An instruction is read into an *articulation profile* (per value: named?, distinct concepts, guidance
phrases; per conflicting pair: integrated?; overall: value-word stuffing, copy invitations). The profile
fixes, per value, the probability p that a response expresses it and the depth d of that expression;
and the share phi of generic (query-unrelated) content. Sampling (picaco.sim.world) draws responses from
these numbers; the judges read the responses back. Because the judges' reading is exact by construction
(every phrase carries a known number of markers), the expected judge scores are closed-form functions
of (p, d, phi) and so of the instruction: that is `expected_conformity` / `expected_relevance`. The best
instruction within a word limit is found by an exact dynamic programme over profiles (`optimum`).
All equations and constants: docs/world.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from itertools import product

import numpy as np

from picaco.sim.world_config import WorldConfig
from picaco.sim.world_lexicon import (
    CONCEPT, DISCOURAGE, GUIDANCE, INTEGRATE, INVITE, NAME, Lexicon, ValueSpec, load_lexicon, word_count,
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
            if not art.integrated[k]:
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


def _check_values(values) -> list[str]:
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
    values = _check_values(values)
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


# -------------------------------------------------------------------------------------------- optimum


@dataclass(frozen=True)
class _Opt:
    cost: int
    du: int
    ds: int
    profile: tuple  # ((value index, named, c, g), ...) plus integration flag for pairs
    integ: bool = False


class Optimum:
    """The best objective value within a word limit, and an instruction that attains it.

    Unpacks as (value, instruction); `profile` gives the articulation per value."""

    def __init__(self, value: float, instruction: str, profile: dict[str, dict]) -> None:
        self.value = value
        self.instruction = instruction
        self.profile = profile

    def __iter__(self):
        return iter((self.value, self.instruction))

    def __repr__(self) -> str:
        return f"Optimum(value={self.value:.4f}, words={word_count(self.instruction)}, instruction={self.instruction!r})"


def _value_options(model: WorldModel, spec: ValueSpec) -> list[tuple[bool, int, int, int]]:
    """(named, concepts, guidance, cost in words) for every articulation of one value."""
    cfg = model.cfg
    gw = spec.guidance_words
    out = []
    for named in (False, True):
        for c in range(min(cfg.max_concepts, len(spec.concepts)) + 1):
            for g in range(min(cfg.max_guidance, len(spec.guidance)) + 1):
                out.append((named, c, g, named * spec.name_words + c + sum(gw[:g])))
    return out


def _head(spec: ValueSpec, named: bool, c: int) -> str:
    """'Name (c1, c2)' / 'Name' / 'c1, c2' -- each concept one word, the name its fewest words."""
    name = spec.name if word_count(spec.name) == spec.name_words else _short_name(spec)
    conc = ", ".join(g[0] for g in spec.concepts[:c])
    if named and c:
        return f"{name} ({conc})"
    if named:
        return name
    return conc


def _short_name(spec: ValueSpec) -> str:
    for form in spec.name_forms:
        if len(form) == spec.name_words:
            return " ".join(w.capitalize() for w in form)
    return spec.name


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


def _fragment(spec: ValueSpec, named: bool, c: int, g: int) -> list[str]:
    out = []
    head = _head(spec, named, c)
    if head:
        out.append(_cap(head) + ".")
    out.extend(_cap(x) + "." for x in spec.guidance[:g])
    return out


def optimum(values: list[str], length_limit_words: int, *, relevance_weighted: bool | None = None,
            config: WorldConfig | None = None) -> Optimum:
    """The maximum of `conformity(instruction, values)` over instructions of at most
    `length_limit_words` words (whitespace-separated), computed exactly by dynamic programming over
    articulation profiles; the returned instruction attains it.

    Exactness: the objective depends on an instruction only through its profile, and the instruction
    built here realises each profile with the fewest words any text can (names their shortest form,
    concepts one word each, the shortest guidance phrases, one word per integration), so no text within
    the limit scores higher (docs/world.md, "Ground truth")."""
    cfg = config or WorldConfig()
    model = model_for(cfg)
    lex = model.lex
    values = _check_values(values)
    if isinstance(length_limit_words, bool) or not isinstance(length_limit_words, int) or length_limit_words < 0:
        raise ValueError(f"length_limit_words must be a non-negative int, got {length_limit_words!r}")
    L = length_limit_words
    weighted = model.relevance_weighted(values) if relevance_weighted is None else bool(relevance_weighted)
    resolved = [lex.resolve(v)[0] for v in values]
    known = [i for i in resolved if i is not None]
    if len(set(known)) != len(known):
        raise ValueError(f"values name the same value twice: {values}")
    eta = cfg.judge_noise
    K = len(values)
    const = sum(noisy_mean({1: 1.0}, eta) for i in resolved if i is None)
    rel_in_values = model.rel_index is not None and model.rel_index in known
    use_s = weighted or rel_in_values
    partner = {a: b for a, b in lex.conflicts} | {b: a for a, b in lex.conflicts}

    # units: singles and conflicting pairs among the intended (non-meta) values
    units: list[list[_Opt]] = []
    done: set[int] = set()
    for i in known:
        if i in done or i == model.rel_index:
            continue
        spec = lex.values[i]
        j = partner.get(i)
        if j is not None and j in known:
            done |= {i, j}
            opts = []
            for (na, ca, ga, wa), (nb, cb, gb, wb) in product(_value_options(model, spec),
                                                              _value_options(model, lex.values[j])):
                for integ in (False, True):
                    if integ and not ((na or ca) and (nb or cb)):
                        continue
                    du = int(na and not ca and not ga) + int(nb and not cb and not gb)
                    ds = (int(na) + ca + int(nb) + cb) if use_s else 0
                    opts.append(_Opt(wa + wb + integ, du, ds, ((i, na, ca, ga), (j, nb, cb, gb)), integ))
            units.append(opts)
        else:
            done.add(i)
            units.append([_Opt(w, int(n and not c and not g), (int(n) + c) if use_s else 0, ((i, n, c, g),))
                          for n, c, g, w in _value_options(model, spec)])
    if model.rel_index is not None and (weighted or rel_in_values):
        rspec = lex.values[model.rel_index]
        rel_opts = [(n, c, g, w) for n, c, g, w in _value_options(model, rspec)]
    else:
        rel_opts = [(False, 0, 0, 0)]

    umax = sum(max(o.du for o in u) for u in units) + 1
    smax = sum(max(o.ds for o in u) for u in units)

    def unit_value(opt: _Opt, D: float) -> float:
        total = 0.0
        a_t = {}
        pd = {}
        for (vi, n, c, g) in opt.profile:
            spec = lex.values[vi]
            a_t[vi] = model.level(n, c, g) * D
            pd[vi] = list(model.p_d(spec, a_t[vi], model.depth_gain(g) * D))
        if len(opt.profile) == 2 and not opt.integ:
            (va, *_), (vb, *_) = opt.profile
            pa, pb = pd[va][0], pd[vb][0]
            pd[va][0] = pa * (1.0 - cfg.conflict_strength * a_t[vb])
            pd[vb][0] = pb * (1.0 - cfg.conflict_strength * a_t[va])
        for vi, (p, d) in pd.items():
            total += noisy_mean(score_distribution(lex.values[vi].mode, p, d), eta)
        return total

    best = (-math.inf, None)
    for U in range(umax + 1):
        D = model.dilution(U)
        ub = U  # only states with at most U bare names can end with exactly U
        dp = np.full((L + 1, ub + 1, smax + 1), -np.inf)
        dp[0, 0, 0] = 0.0
        choices = []
        for unit in units:
            # keep, per (cost, du, ds), only the best option at this D
            keyed: dict[tuple[int, int, int], tuple[float, int]] = {}
            for k, opt in enumerate(unit):
                if opt.cost > L or opt.du > ub:
                    continue
                val = unit_value(opt, D)
                key = (opt.cost, opt.du, opt.ds)
                if key not in keyed or val > keyed[key][0]:
                    keyed[key] = (val, k)
            new = np.full_like(dp, -np.inf)
            arg = np.full(dp.shape, -1, dtype=np.int32)
            for (cost, du, ds), (val, k) in keyed.items():
                src = dp[: L + 1 - cost, : ub + 1 - du, : smax + 1 - ds] + val
                dst = new[cost:, du:, ds:]
                better = src > dst
                dst[better] = src[better]
                arg[cost:, du:, ds:][better] = k
            dp = new
            choices.append(arg)
        for (rn, rc, rg, rw) in rel_opts:
            r_du = int(rn and not rc and not rg)
            uu = U - r_du
            if uu < 0 or uu > ub or rw > L:
                continue
            sub = dp[: L - rw + 1, uu, :]  # (b, s)
            col_best = sub.max(axis=0)
            col_arg = sub.argmax(axis=0)
            rel_t = model.level(rn, rc, rg) * D if model.rel_index is not None else 0.0
            for s in range(smax + 1):
                if not np.isfinite(col_best[s]):
                    continue
                rel = model.expected_relevance_phi(model.phi(s, rel_t))
                mean = (col_best[s] + const + (rel if rel_in_values else 0.0)) / K
                total = mean * rel / 5.0 if weighted else mean
                if total > best[0] + 1e-12:
                    best = (total, (U, (rn, rc, rg), int(col_arg[s]), uu, s, choices))
    value, state = best
    U, rel_choice, b, u, s, choices = state
    picks = []
    for unit, arg in zip(reversed(units), reversed(choices)):
        k = int(arg[b, u, s])
        opt = unit[k]
        picks.append(opt)
        b, u, s = b - opt.cost, u - opt.du, s - opt.ds
    picks.reverse()

    sentences: list[str] = []
    profile: dict[str, dict] = {}
    for opt in picks:
        if len(opt.profile) == 2 and opt.integ:
            (va, na, ca, ga), (vb, nb, cb, gb) = opt.profile
            sa, sb = lex.values[va], lex.values[vb]
            sentences.append(f"Balance {_head(sa, na, ca)}, {_head(sb, nb, cb)}.")
            sentences.extend(_cap(x) + "." for x in sa.guidance[:ga])
            sentences.extend(_cap(x) + "." for x in sb.guidance[:gb])
        else:
            for (vi, n, c, g) in opt.profile:
                sentences.extend(_fragment(lex.values[vi], n, c, g))
        for (vi, n, c, g) in opt.profile:
            profile[lex.values[vi].name] = {"named": bool(n), "concepts": c, "guidance": g,
                                            "integrated": bool(opt.integ)}
    rn, rc, rg = rel_choice
    if model.rel_index is not None and (rn or rc or rg):
        sentences.extend(_fragment(lex.values[model.rel_index], rn, rc, rg))
        profile[lex.values[model.rel_index].name] = {"named": bool(rn), "concepts": rc, "guidance": rg,
                                                      "integrated": False}
    instruction = " ".join(sentences)
    return Optimum(float(value), instruction, profile)
