"""The value world's best instruction within a word limit: an exact dynamic programme over articulation profiles.

The objective (picaco.sim.world_model.conformity) depends on an instruction only through its articulation
profile, so `optimum` searches profiles, not texts, and renders the best one as terse sentences that
realise it at exactly its minimal word cost. See docs/world.md, "How the optimum is computed".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

from picaco.sim.world_config import WorldConfig
from picaco.sim.world_lexicon import ValueSpec, word_count
from picaco.sim.world_model import WorldModel, check_values, model_for, noisy_mean, score_distribution


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
    values = check_values(values)
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

    best: tuple[float, Any] = (-math.inf, None)
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
