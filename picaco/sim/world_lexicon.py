"""The value lexicon of the simulated world: loading, validation and the text scanner.

The scanner is the one place where text becomes evidence, for the target (reading its instruction) and
for the judges (reading a response) alike, so that what the target is told and what the judge sees are
measured with the same ruler. Its rules (see docs/world.md, "Reading text"):

- text is split into whitespace *chunks*, chunks into lower-case alphanumeric *tokens*;
- multi-token phrases (value names, guidance phrases, copy phrases) match on the token stream and must
  span at least as many chunks as their written form has words, so hyphen-gluing a phrase into one word
  does not make it cheaper;
- a chunk yields at most one marker hit (a name, a concept form or a violation marker), so cramming
  concepts into one hyphenated word does not count them twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from picaco.base.errors import ConfigError

_TOKEN = re.compile(r"[a-z0-9]+")
_SLOT = re.compile(r"\{[A-Za-z0-9_]+\}")
_SENT_END = ".!?;"
BANKS = ("weak", "strong", "triple")
KINDS = ("hh", "schwartz", "meta")
MODES = ("express", "avoid")

# Hit kinds produced by Lexicon.scan
NAME, CONCEPT, VIOLATION, GUIDANCE, INVITE, DISCOURAGE, INTEGRATE = (
    "name", "concept", "violation", "guidance", "invite", "discourage", "integrate")


class LexiconError(ConfigError, ValueError):
    """The lexicon file is malformed. The message is one line naming the file and the field."""


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def norm_key(name: str) -> str:
    """Same normalisation as picaco.templates.parse.normalize_key, plus dropping punctuation."""
    return re.sub(r"[^a-z0-9]+", "", name.lower())


def word_count(text: str) -> int:
    """Words as the Fig. 8 length limit counts them (whitespace-separated), as picaco's parser does."""
    return len(text.split())


@dataclass(frozen=True)
class ValueSpec:
    index: int
    name: str
    kind: str
    mode: str
    definition: str
    name_forms: tuple[tuple[str, ...], ...]
    name_words: int  # fewest words any written name form takes
    aliases: tuple[str, ...]
    harm_aliases: tuple[str, ...]
    base: float
    base_depth: float
    top: float
    top_depth: float
    concepts: tuple[tuple[str, ...], ...]
    guidance: tuple[str, ...]  # written text, sorted by word count (cheapest first), ties in file order
    violation_markers: tuple[str, ...]
    banks: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]

    @property
    def guidance_words(self) -> tuple[int, ...]:
        return tuple(word_count(g) for g in self.guidance)


@dataclass(frozen=True)
class Hit:
    pos: int  # token position of the first token
    end: int  # token position after the last token
    sent: int
    kind: str
    value: int  # value index, -1 for copy/integration hits
    item: int  # concept group / guidance index / -1


@dataclass
class Scan:
    tokens: list[str]
    sents: list[int]
    hits: list[Hit] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class Lexicon:
    path: str
    values: tuple[ValueSpec, ...]
    conflicts: tuple[tuple[int, int], ...]
    integration_words: frozenset[str]
    copy_invite: tuple[str, ...]
    copy_discourage: tuple[str, ...]
    connectors: dict[str, tuple[str, ...]]
    query_sentences: tuple[str, ...]
    fillers: tuple[str, ...]
    elaboration: dict[str, str]
    optimizer: dict
    stopwords: frozenset[str]
    # derived
    by_key: dict[str, tuple[int, bool]]
    single: dict[str, tuple[str, int, int]]  # token -> (kind, value, item) for one-token markers
    phrases: dict[str, list[tuple[tuple[str, ...], int, str, int, int]]]  # first token -> (toks, min_chunks, kind, value, item)
    generic_vocab: frozenset[str]

    def index(self, name: str) -> int:
        return self.by_key[norm_key(name)][0]

    def resolve(self, name: str) -> tuple[int | None, bool]:
        """(value index or None if unknown, True if the name is a harm alias)."""
        hit = self.by_key.get(norm_key(name))
        return (None, False) if hit is None else hit

    def scan(self, text: str) -> Scan:
        toks: list[str] = []
        chunks: list[int] = []
        sents: list[int] = []
        chunk_is_word: list[bool] = []
        sent = chunk = 0
        for line in text.splitlines():
            for piece in line.split():
                pt = _TOKEN.findall(piece.lower())
                toks.extend(pt)
                chunks.extend([chunk] * len(pt))
                sents.extend([sent] * len(pt))
                chunk_is_word.append(len(pt) == 1)
                chunk += 1
                if piece.rstrip("\"')]}*`")[-1:] in _SENT_END:
                    sent += 1
            sent += 1
        out = Scan(toks, sents)
        used_chunk: set[int] = set()
        i, n = 0, len(toks)
        while i < n:
            t = toks[i]
            matched = False
            for ptoks, min_chunks, kind, v, item in self.phrases.get(t, ()):
                k = len(ptoks)
                if tuple(toks[i:i + k]) == ptoks and chunks[i + k - 1] - chunks[i] + 1 >= min_chunks:
                    if kind == NAME:
                        span = set(chunks[i:i + k])
                        if span & used_chunk:
                            continue
                        used_chunk |= span
                    out.hits.append(Hit(i, i + k, sents[i], kind, v, item))
                    i += k
                    matched = True
                    break
            if matched:
                continue
            s = self.single.get(t)
            if s is not None:
                kind, v, item = s
                if kind == INTEGRATE:
                    # must stand as a word of its own, so that it costs a word
                    if chunk_is_word[chunks[i]]:
                        out.hits.append(Hit(i, i + 1, sents[i], kind, -1, -1))
                elif chunks[i] not in used_chunk:
                    used_chunk.add(chunks[i])
                    out.hits.append(Hit(i, i + 1, sents[i], kind, v, item))
            i += 1
        return out

    def marker_counts(self, text: str) -> tuple[list[int], list[int]]:
        """Per value: (name/concept occurrences, violation occurrences) as a judge reads a response.

        Unlike instruction reading, every token counts (a response is not trying to game a word limit).
        """
        pos = [0] * len(self.values)
        neg = [0] * len(self.values)
        toks = tokens(text)
        i, n = 0, len(toks)
        while i < n:
            t = toks[i]
            matched = False
            for ptoks, _mc, kind, v, _item in self.phrases.get(t, ()):
                if kind == NAME and tuple(toks[i:i + len(ptoks)]) == ptoks:
                    pos[v] += 1
                    i += len(ptoks)
                    matched = True
                    break
            if matched:
                continue
            s = self.single.get(t)
            if s is not None:
                if s[0] == CONCEPT:
                    pos[s[1]] += 1
                elif s[0] == VIOLATION:
                    neg[s[1]] += 1
            i += 1
        return pos, neg


# ------------------------------------------------------------------------------------------- loading


def _fail(path: str, where: str, msg: str) -> LexiconError:
    return LexiconError(f"{path}: {where}: {msg}")


def _str_list(path, where, raw, *, allow_empty=False) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(x, str) and x.strip() for x in raw):
        raise _fail(path, where, "must be a list of non-empty strings")
    if not raw and not allow_empty:
        raise _fail(path, where, "must not be empty")
    return tuple(x.strip() for x in raw)


def _prob(path, where, raw) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0.0 <= raw <= 1.0:
        raise _fail(path, where, f"must be a number in [0, 1], got {raw!r}")
    return float(raw)


DEFAULT_LEXICON = "lexicon.yaml"


@lru_cache(maxsize=8)
def load_lexicon(path: str | None = None) -> Lexicon:
    """The bundled lexicon (path None) or a user lexicon file; validated, cached per path."""
    if path is None:
        text = resources.files(__package__).joinpath(DEFAULT_LEXICON).read_text(encoding="utf-8")
        label = f"picaco/sim/{DEFAULT_LEXICON}"
    else:
        p = Path(path)
        if not p.is_file():
            raise LexiconError(f"{path}: lexicon file not found")
        text, label = p.read_text(encoding="utf-8"), str(p)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LexiconError(f"{label}: not valid YAML: {str(exc).splitlines()[0]}") from None
    return _build(label, raw)


def _build(path: str, raw) -> Lexicon:
    if not isinstance(raw, dict):
        raise _fail(path, "top level", "must be a mapping")
    allowed = {"version", "values", "conflicts", "integration_words", "copy_invite", "copy_discourage",
               "connectors", "query_sentences", "fillers", "elaboration", "optimizer", "stopwords"}
    extra = set(raw) - allowed
    if extra:
        raise _fail(path, "top level", f"unknown keys {sorted(extra)}")
    raw_values = raw.get("values")
    if not isinstance(raw_values, list) or not raw_values:
        raise _fail(path, "values", "must be a non-empty list")

    raw_stop = raw.get("stopwords", "")
    if not isinstance(raw_stop, str):
        raise _fail(path, "stopwords", "must be one string of space-separated words")
    stopwords = frozenset(tokens(raw_stop))
    integration = frozenset(_str_list(path, "integration_words", raw.get("integration_words")))
    for w in integration:
        if tokens(w) != [w.lower()]:
            raise _fail(path, "integration_words", f"{w!r} must be a single lower-case word")

    specs: list[ValueSpec] = []
    by_key: dict[str, tuple[int, bool]] = {}
    single: dict[str, tuple[str, int, int]] = {}
    phrase_list: list[tuple[tuple[str, ...], int, str, int, int]] = []
    value_keys = {"name", "kind", "mode", "definition", "names", "aliases", "harm_aliases", "base",
                  "base_depth", "top", "top_depth", "concepts", "guidance", "violation_markers", *BANKS}

    def claim_key(name: str, idx: int, harm: bool, where: str) -> None:
        k = norm_key(name)
        if not k:
            raise _fail(path, where, f"name {name!r} has no letters")
        if k in by_key and by_key[k] != (idx, harm):
            raise _fail(path, where, f"name {name!r} is already used by {specs_or_name(by_key[k][0])}")
        by_key[k] = (idx, harm)

    def specs_or_name(i: int) -> str:
        return raw_values[i].get("name", f"values[{i}]") if isinstance(raw_values[i], dict) else f"values[{i}]"

    def claim_single(tok: str, kind: str, idx: int, item: int, where: str) -> None:
        if tok in single:
            other = single[tok]
            raise _fail(path, where, f"marker {tok!r} is already a {other[0]} of {specs_or_name(other[1])}")
        if tok in stopwords:
            raise _fail(path, where, f"marker {tok!r} is a stopword")
        if tok in integration:
            raise _fail(path, where, f"marker {tok!r} is an integration word")
        single[tok] = (kind, idx, item)

    for idx, rv in enumerate(raw_values):
        where = f"values[{idx}]"
        if not isinstance(rv, dict):
            raise _fail(path, where, "must be a mapping")
        extra = set(rv) - value_keys
        if extra:
            raise _fail(path, where, f"unknown keys {sorted(extra)}")
        name = rv.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _fail(path, f"{where}.name", "must be a non-empty string")
        where = f"values[{idx}] ({name})"
        kind, mode = rv.get("kind"), rv.get("mode")
        if kind not in KINDS:
            raise _fail(path, f"{where}.kind", f"must be one of {list(KINDS)}, got {kind!r}")
        if mode not in MODES:
            raise _fail(path, f"{where}.mode", f"must be one of {list(MODES)}, got {mode!r}")
        name_forms_written = _str_list(path, f"{where}.names", rv.get("names"))
        forms: dict[tuple[str, ...], int] = {}
        for form in (name, *name_forms_written):
            ft = tuple(tokens(form))
            if not ft:
                raise _fail(path, f"{where}.names", f"{form!r} has no letters")
            forms[ft] = min(forms.get(ft, 99), word_count(form))
        claim_key(name, idx, False, f"{where}.name")
        for a in _str_list(path, f"{where}.aliases", rv.get("aliases", []), allow_empty=True):
            claim_key(a, idx, False, f"{where}.aliases")
        harm = _str_list(path, f"{where}.harm_aliases", rv.get("harm_aliases", []), allow_empty=True)
        for a in harm:
            claim_key(a, idx, True, f"{where}.harm_aliases")
        concepts_raw = rv.get("concepts")
        if not isinstance(concepts_raw, list) or not concepts_raw:
            raise _fail(path, f"{where}.concepts", "must be a non-empty list of lists of words")
        concepts = []
        for gi, group in enumerate(concepts_raw):
            g = _str_list(path, f"{where}.concepts[{gi}]", group)
            for form in g:
                if tokens(form) != [form.lower()]:
                    raise _fail(path, f"{where}.concepts[{gi}]", f"{form!r} must be one lower-case word")
                claim_single(form.lower(), CONCEPT, idx, gi, f"{where}.concepts[{gi}]")
            concepts.append(tuple(f.lower() for f in g))
        for ft, mc in forms.items():
            if len(ft) == 1:
                claim_single_name = ft[0]
                if claim_single_name in single:
                    other = single[claim_single_name]
                    raise _fail(path, f"{where}.names",
                                f"name {claim_single_name!r} is already a {other[0]} of {specs_or_name(other[1])}")
            phrase_list.append((ft, mc, NAME, idx, -1))
        guidance = _str_list(path, f"{where}.guidance", rv.get("guidance"))
        guidance = tuple(sorted(guidance, key=word_count))
        for gi, g in enumerate(guidance):
            phrase_list.append((tuple(tokens(g)), word_count(g), GUIDANCE, idx, gi))
        viol = _str_list(path, f"{where}.violation_markers", rv.get("violation_markers", []),
                         allow_empty=True)
        if mode == "avoid" and not viol:
            raise _fail(path, f"{where}.violation_markers", "an avoid-mode value needs violation markers")
        if mode == "express" and viol:
            raise _fail(path, f"{where}.violation_markers", "only avoid-mode values have violation markers")
        for w in viol:
            if tokens(w) != [w.lower()]:
                raise _fail(path, f"{where}.violation_markers", f"{w!r} must be one lower-case word")
            claim_single(w.lower(), VIOLATION, idx, -1, f"{where}.violation_markers")
        banks = tuple(_str_list(path, f"{where}.{b}", rv.get(b, []), allow_empty=(kind == "meta"))
                      for b in BANKS)
        nums = {}
        for f in ("base", "base_depth", "top", "top_depth"):
            nums[f] = _prob(path, f"{where}.{f}", rv.get(f))
        if kind != "meta" and (nums["top"] < nums["base"] or nums["top_depth"] < nums["base_depth"]):
            raise _fail(path, where, "top must be >= base and top_depth >= base_depth")
        if kind != "meta" and len(concepts) < 3:
            raise _fail(path, f"{where}.concepts", "needs at least 3 concept groups")
        if len(guidance) < 2:
            raise _fail(path, f"{where}.guidance", "needs at least 2 guidance phrases")
        specs.append(ValueSpec(
            index=idx, name=name.strip(), kind=kind, mode=mode,
            definition=" ".join(str(rv.get("definition", "")).split()),
            name_forms=tuple(forms), name_words=min(forms.values()),
            aliases=tuple(rv.get("aliases", [])), harm_aliases=harm,
            base=nums["base"], base_depth=nums["base_depth"], top=nums["top"], top_depth=nums["top_depth"],
            concepts=tuple(concepts), guidance=guidance, violation_markers=tuple(v.lower() for v in viol),
            banks=banks))  # type: ignore[arg-type]

    for s in specs:
        for ft in s.name_forms:
            if len(ft) == 1 and ft[0] in single:
                other = single[ft[0]]
                raise _fail(path, f"values ({s.name}).names",
                            f"name {ft[0]!r} is also a {other[0]} of {specs_or_name(other[1])}")
            if len(ft) == 1 and (ft[0] in stopwords or ft[0] in integration):
                raise _fail(path, f"values ({s.name}).names", f"name {ft[0]!r} is a stopword or integration word")
    for w in integration:
        single[w] = (INTEGRATE, -1, -1)
    copy_invite = _str_list(path, "copy_invite", raw.get("copy_invite"))
    copy_discourage = _str_list(path, "copy_discourage", raw.get("copy_discourage"))
    for i, ph in enumerate(copy_invite):
        phrase_list.append((tuple(tokens(ph)), word_count(ph), INVITE, -1, i))
    for i, ph in enumerate(copy_discourage):
        phrase_list.append((tuple(tokens(ph)), word_count(ph), DISCOURAGE, -1, i))

    phrases: dict[str, list] = {}
    seen_phr: dict[tuple[str, ...], str] = {}
    for entry in phrase_list:
        ptoks = entry[0]
        if ptoks in seen_phr and seen_phr[ptoks] != f"{entry[2]}{entry[3]}":
            raise _fail(path, "phrases", f"phrase {' '.join(ptoks)!r} is listed twice")
        seen_phr[ptoks] = f"{entry[2]}{entry[3]}"
        phrases.setdefault(ptoks[0], []).append(entry)
    for lst in phrases.values():
        lst.sort(key=lambda e: -len(e[0]))

    name_to_idx = {s.name: s.index for s in specs}
    conflicts = []
    for i, pair in enumerate(raw.get("conflicts", [])):
        if not (isinstance(pair, list) and len(pair) == 2 and all(p in name_to_idx for p in pair)):
            raise _fail(path, f"conflicts[{i}]", f"must be a pair of value names, got {pair!r}")
        a, b = name_to_idx[pair[0]], name_to_idx[pair[1]]
        if a == b or any({a, b} & {x, y} for x, y in conflicts):
            raise _fail(path, f"conflicts[{i}]", "pairs must be of two different values, each in one pair")
        conflicts.append((a, b))

    conn = raw.get("connectors")
    if not isinstance(conn, dict) or set(conn) != {"one", "two", "three"}:
        raise _fail(path, "connectors", "must map one/two/three to lists of sentences")
    connectors = {k: _str_list(path, f"connectors.{k}", conn[k]) for k in ("one", "two", "three")}
    for k, slots in (("one", ["{A}"]), ("two", ["{A}", "{B}"]), ("three", ["{A}", "{B}", "{C}"])):
        for c in connectors[k]:
            if sorted(_SLOT.findall(c)) != slots:
                raise _fail(path, f"connectors.{k}", f"{c!r} must have exactly the slots {slots}")
    qs = _str_list(path, "query_sentences", raw.get("query_sentences"))
    for q in qs:
        if sorted(_SLOT.findall(q)) != ["{q1}", "{q2}"]:
            raise _fail(path, "query_sentences", f"{q!r} must have exactly the slots {{q1}} and {{q2}}")
    fillers = _str_list(path, "fillers", raw.get("fillers"))
    elab = raw.get("elaboration")
    if not isinstance(elab, dict) or set(elab) != {"intro", "definition", "practice", "closing"}:
        raise _fail(path, "elaboration", "must have intro, definition, practice and closing")
    opt = raw.get("optimizer")
    need = {"concept_line", "integrate", "relevance_line", "name_list", "vague", "demo_lift"}
    if not isinstance(opt, dict) or set(opt) != need:
        raise _fail(path, "optimizer", f"must have exactly the keys {sorted(need)}")

    response_assets = [*fillers, *(c for v in connectors.values() for c in v), *qs]
    generic = set(stopwords)
    for s in specs:
        for bank in s.banks:
            for ph in bank:
                generic.update(tokens(ph))
    for text in response_assets:
        generic.update(tokens(_SLOT.sub(" ", text)))

    lex = Lexicon(
        path=path, values=tuple(specs), conflicts=tuple(conflicts), integration_words=integration,
        copy_invite=copy_invite, copy_discourage=copy_discourage, connectors=connectors,
        query_sentences=qs, fillers=fillers, elaboration={k: str(v) for k, v in elab.items()},
        optimizer=opt, stopwords=stopwords, by_key=by_key, single=single, phrases=phrases,
        generic_vocab=frozenset(generic))
    _validate_text(lex)
    return lex


def _validate_text(lex: Lexicon) -> None:
    """Every phrase carries exactly the evidence its role says, and template text carries none."""
    path = lex.path

    def hits_of(text: str) -> tuple[list[int], list[int], bool]:
        pos, neg = lex.marker_counts(text)
        integ = any(t in lex.integration_words for t in tokens(text))
        return pos, neg, integ

    for s in lex.values:
        for gi, g in enumerate(s.guidance):
            sc = lex.scan(g)
            bad = [h for h in sc.hits if h.kind != GUIDANCE]
            if bad or any(t in lex.integration_words for t in sc.tokens):
                raise _fail(path, f"values ({s.name}).guidance",
                            f"{g!r} must not contain markers, names or integration words")
        for k, bank in enumerate(s.banks, start=1):
            for ph in bank:
                pos, neg, integ = hits_of(ph)
                own = neg[s.index] if s.mode == "avoid" else pos[s.index]
                others = sum(pos) + sum(neg) - own
                if own != k or others or integ:
                    raise _fail(path, f"values ({s.name}).{BANKS[k - 1]}",
                                f"{ph!r} must carry exactly {k} marker(s) of {s.name} and no other marker "
                                f"or integration word (has {own} own, {others} other)")
    plain = [*lex.fillers, *lex.query_sentences, *(c for v in lex.connectors.values() for c in v),
             lex.elaboration["intro"], lex.elaboration["closing"], *lex.optimizer["vague"],
             lex.optimizer["name_list"], lex.optimizer["demo_lift"]]
    for text in plain:
        pos, neg, integ = hits_of(_SLOT.sub(" ", text))
        if sum(pos) + sum(neg) or integ:
            raise _fail(path, "templates", f"{text!r} must not contain markers or integration words")
    for text in lex.optimizer["integrate"]:
        sc = lex.scan(_SLOT.sub(" ", text))
        if sum(1 for h in sc.hits if h.kind == INTEGRATE) != 1 or any(h.kind != INTEGRATE for h in sc.hits):
            raise _fail(path, "optimizer.integrate", f"{text!r} must contain exactly one integration word")
