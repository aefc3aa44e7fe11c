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

from picaco.sim.lexicon_file import BANKS, SLOT, LexiconError, LexiconFile, parse_lexicon_file

_TOKEN = re.compile(r"[a-z0-9]+")
_SENT_END = ".!?;"

# Hit kinds produced by Lexicon.scan
NAME, CONCEPT, VIOLATION, GUIDANCE, INVITE, DISCOURAGE, INTEGRATE = (
    "name", "concept", "violation", "guidance", "invite", "discourage", "integrate")


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
    banks: tuple[tuple[str, ...], ...]  # one per BANKS

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
                    break
            else:  # no phrase starts here: the token alone
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
            for ptoks, _mc, kind, v, _item in self.phrases.get(t, ()):
                if kind == NAME and tuple(toks[i:i + len(ptoks)]) == ptoks:
                    pos[v] += 1
                    i += len(ptoks)
                    break
            else:  # no name phrase starts here: the token alone
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
    lex = _build(label, parse_lexicon_file(label, raw))
    _validate_text(lex)
    return lex


def _build(path: str, f: LexiconFile) -> Lexicon:
    """The scanner's tables from a well-formed file, checking what ties its entries together: every marker
    and name belongs to exactly one value and is neither a stopword nor an integration word, no phrase is
    listed twice, conflicts pair two known values."""
    stopwords = frozenset(tokens(f.stopwords))
    integration = frozenset(f.integration_words)
    by_key: dict[str, tuple[int, bool]] = {}
    single: dict[str, tuple[str, int, int]] = {}
    phrase_list: list[tuple[tuple[str, ...], int, str, int, int]] = []

    def where(idx: int) -> str:
        return f"values[{idx}] ({f.values[idx].name})"

    def claim_key(name: str, idx: int, harm: bool, place: str) -> None:
        k = norm_key(name)
        if not k:
            raise _fail(path, place, f"name {name!r} has no letters")
        if k in by_key and by_key[k] != (idx, harm):
            raise _fail(path, place, f"name {name!r} is already used by {f.values[by_key[k][0]].name}")
        by_key[k] = (idx, harm)

    def claim_single(tok: str, kind: str, idx: int, item: int, place: str) -> None:
        if tok in single:
            other = single[tok]
            raise _fail(path, place, f"marker {tok!r} is already a {other[0]} of {f.values[other[1]].name}")
        if tok in stopwords or tok in integration:
            raise _fail(path, place, f"marker {tok!r} is a stopword or integration word")
        single[tok] = (kind, idx, item)

    specs: list[ValueSpec] = []
    for idx, v in enumerate(f.values):
        forms: dict[tuple[str, ...], int] = {}
        for form in (v.name, *v.names):
            ft = tuple(tokens(form))
            if not ft:
                raise _fail(path, f"{where(idx)}.names", f"{form!r} has no letters")
            forms[ft] = min(forms.get(ft, 99), word_count(form))
        claim_key(v.name, idx, False, f"{where(idx)}.name")
        for a in v.aliases:
            claim_key(a, idx, False, f"{where(idx)}.aliases")
        for a in v.harm_aliases:
            claim_key(a, idx, True, f"{where(idx)}.harm_aliases")
        for gi, group in enumerate(v.concepts):
            for form in group:
                claim_single(form, CONCEPT, idx, gi, f"{where(idx)}.concepts[{gi}]")
        for w in v.violation_markers:
            claim_single(w, VIOLATION, idx, -1, f"{where(idx)}.violation_markers")
        phrase_list += [(ft, mc, NAME, idx, -1) for ft, mc in forms.items()]
        guidance = tuple(sorted(v.guidance, key=word_count))
        phrase_list += [(tuple(tokens(g)), word_count(g), GUIDANCE, idx, gi) for gi, g in enumerate(guidance)]
        specs.append(ValueSpec(
            index=idx, name=v.name, kind=v.kind, mode=v.mode, definition=" ".join(v.definition.split()),
            name_forms=tuple(forms), name_words=min(forms.values()), aliases=tuple(v.aliases),
            harm_aliases=tuple(v.harm_aliases), base=v.base, base_depth=v.base_depth, top=v.top,
            top_depth=v.top_depth, concepts=tuple(tuple(g) for g in v.concepts), guidance=guidance,
            violation_markers=tuple(v.violation_markers), banks=tuple(tuple(getattr(v, b)) for b in BANKS)))

    # names are checked once every marker is known: a one-word name must not be another value's marker
    for s in specs:
        for ft in s.name_forms:
            if len(ft) == 1 and ft[0] in single:
                other = single[ft[0]]
                raise _fail(path, f"{where(s.index)}.names",
                            f"name {ft[0]!r} is also a {other[0]} of {f.values[other[1]].name}")
            if len(ft) == 1 and (ft[0] in stopwords or ft[0] in integration):
                raise _fail(path, f"{where(s.index)}.names", f"name {ft[0]!r} is a stopword or integration word")
    for w in integration:
        single[w] = (INTEGRATE, -1, -1)
    for kind, texts in ((INVITE, f.copy_invite), (DISCOURAGE, f.copy_discourage)):
        phrase_list += [(tuple(tokens(ph)), word_count(ph), kind, -1, i) for i, ph in enumerate(texts)]

    phrases: dict[str, list] = {}
    owner: dict[tuple[str, ...], tuple[str, int]] = {}
    for entry in phrase_list:
        ptoks = entry[0]
        if owner.setdefault(ptoks, (entry[2], entry[3])) != (entry[2], entry[3]):
            raise _fail(path, "phrases", f"phrase {' '.join(ptoks)!r} is listed twice")
        phrases.setdefault(ptoks[0], []).append(entry)
    for lst in phrases.values():
        lst.sort(key=lambda e: -len(e[0]))

    name_to_idx = {s.name: s.index for s in specs}
    conflicts: list[tuple[int, int]] = []
    for i, pair in enumerate(f.conflicts):
        if not all(p in name_to_idx for p in pair):
            raise _fail(path, f"conflicts[{i}]", f"must be a pair of value names, got {list(pair)!r}")
        ia, ib = name_to_idx[pair[0]], name_to_idx[pair[1]]
        if ia == ib or any({ia, ib} & {x, y} for x, y in conflicts):
            raise _fail(path, f"conflicts[{i}]", "pairs must be of two different values, each in one pair")
        conflicts.append((ia, ib))

    connectors = {k: tuple(getattr(f.connectors, k)) for k in ("one", "two", "three")}
    # words of the world's own response templates: the relevance judge does not count them as query words
    generic = set(stopwords)
    for s in specs:
        for bank in s.banks:
            for ph in bank:
                generic.update(tokens(ph))
    for text in (*f.fillers, *(c for v in connectors.values() for c in v), *f.query_sentences):
        generic.update(tokens(SLOT.sub(" ", text)))

    return Lexicon(
        path=path, values=tuple(specs), conflicts=tuple(conflicts), integration_words=integration,
        copy_invite=tuple(f.copy_invite), copy_discourage=tuple(f.copy_discourage), connectors=connectors,
        query_sentences=tuple(f.query_sentences), fillers=tuple(f.fillers), elaboration=f.elaboration.model_dump(),
        optimizer=f.optimizer.model_dump(), stopwords=stopwords, by_key=by_key, single=single, phrases=phrases,
        generic_vocab=frozenset(generic))


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
                raise _fail(path, f"values[{s.index}] ({s.name}).guidance",
                            f"{g!r} must not contain markers, names or integration words")
        for k, bank in enumerate(s.banks, start=1):
            for ph in bank:
                pos, neg, integ = hits_of(ph)
                own = neg[s.index] if s.mode == "avoid" else pos[s.index]
                others = sum(pos) + sum(neg) - own
                if own != k or others or integ:
                    raise _fail(path, f"values[{s.index}] ({s.name}).{BANKS[k - 1]}",
                                f"{ph!r} must carry exactly {k} marker(s) of {s.name} and no other marker "
                                f"or integration word (has {own} own, {others} other)")
    plain = [*lex.fillers, *lex.query_sentences, *(c for v in lex.connectors.values() for c in v),
             lex.elaboration["intro"], lex.elaboration["closing"], *lex.optimizer["vague"],
             lex.optimizer["name_list"], lex.optimizer["demo_lift"]]
    for text in plain:
        pos, neg, integ = hits_of(SLOT.sub(" ", text))
        if sum(pos) + sum(neg) or integ:
            raise _fail(path, "templates", f"{text!r} must not contain markers or integration words")
    for text in lex.optimizer["integrate"]:
        sc = lex.scan(SLOT.sub(" ", text))
        if sum(1 for h in sc.hits if h.kind == INTEGRATE) != 1 or any(h.kind != INTEGRATE for h in sc.hits):
            raise _fail(path, "optimizer.integrate", f"{text!r} must contain exactly one integration word")
