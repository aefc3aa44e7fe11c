"""The pure build of one composition: filters, de-duplication, demonstration exclusion, seeded stratified
sampling into a test set and the task prompts X, and the manifest. No I/O except `write_build`.

Order of the filters (each dropped row keeps the first reason that applies, see `drop_reason`):
category (the source's `categories:` list) -> empty -> too_short (`min_chars`, `min_words`) -> too_long
(`max_chars`) -> language -> duplicate (same prompt_id as an earlier row) -> near_duplicate (see
`neardup`) -> demonstration (equal to, or a near-duplicate of, a demonstration query). Earlier rows win:
sources in their configured order, rows in file order.

Sampling: the test set is drawn first from the pool, then X from what is left, so the two never overlap.
Each draw splits its size over sources in proportion to their `weight` (a source that has fewer prompts
than its share gives the rest to the others), then within a source over its categories in proportion to
their sizes (largest remainder). Inside a stratum the prompts with the smallest
sha256(seed, composition, split, prompt_id) are taken, so the choice does not depend on row order, and
asking for a larger set keeps the smaller one's prompts where the allocation allows.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import polars as pl

from picaco.io import current_umask

from .config import CompositionConfig, SourceConfig
from .errors import DataError, NotEnoughPromptsError
from .loading import LoadedSource
from .neardup import BANDS, NUM_PERM, matches_any, near_duplicates, shingles
from .schema import PROMPT_SCHEMA
from .text import looks_english, normalize_text

FORMAT_VERSION = 1
DROP_REASONS = (
    "category",
    "empty",
    "too_short",
    "too_long",
    "language",
    "duplicate",
    "near_duplicate",
    "demonstration",
)
SAMPLE_COLUMNS = ["prompt_id", "source", "source_index", "prompt", "kind", "category", "meta"]
NO_CATEGORY = "(none)"
OUTPUT_FILES = ("X.parquet", "test.parquet", "prompts.parquet", "manifest.json")


@dataclass
class BuildResult:
    config: CompositionConfig
    prompts: pl.DataFrame  # every mapped row with drop_reason, duplicate_of and split
    x: pl.DataFrame
    test: pl.DataFrame
    manifest: dict[str, Any]


# ---------------------------------------------------------------------------------------------------
# Allocation and sampling


def allocate(capacity: Mapping[str, int], weights: Mapping[str, float | int], total: int) -> dict[str, int]:
    """Split `total` over keys in proportion to `weights`, never above `capacity`; exact (Fraction) math,
    largest remainder for the integer part, ties broken by key order."""
    if total > sum(capacity.values()):
        raise ValueError(f"cannot allocate {total} from {sum(capacity.values())}")
    order = {k: i for i, k in enumerate(capacity)}
    alloc = {k: 0 for k in capacity}
    active = [k for k in capacity if capacity[k] > 0 and weights[k] > 0]
    remaining = total
    while active and remaining > 0:
        wsum = sum(Fraction(weights[k]) for k in active)
        capped = [k for k in active if remaining * Fraction(weights[k]) / wsum >= capacity[k]]
        if not capped:
            ideal = {k: remaining * Fraction(weights[k]) / wsum for k in active}
            base = {k: int(ideal[k]) for k in active}
            left = remaining - sum(base.values())
            for k in sorted(active, key=lambda k: (-(ideal[k] - base[k]), order[k]))[:left]:
                base[k] += 1
            alloc.update(base)
            remaining = 0
            break
        for k in capped:
            alloc[k] = capacity[k]
            remaining -= capacity[k]
            active.remove(k)
    if remaining > 0:
        raise ValueError(f"cannot allocate {total}: positive-weight keys hold too few")
    return alloc


def _rank(seed: int, composition: str, split: str, pid: str) -> str:
    return hashlib.sha256(f"{seed}\x1f{composition}\x1f{split}\x1f{pid}".encode()).hexdigest()


def stratified_sample(
    rows: Sequence[int],
    n: int,
    *,
    source_of: Sequence[str],
    category_of: Sequence[str],
    id_of: Sequence[str],
    source_order: Sequence[str],
    weights: Mapping[str, float],
    seed: int,
    composition: str,
    split: str,
) -> list[int]:
    by_source: dict[str, list[int]] = {s: [] for s in source_order}
    for r in rows:
        by_source[source_of[r]].append(r)
    quotas = allocate({s: len(v) for s, v in by_source.items()}, {s: weights[s] for s in source_order}, n)
    chosen: list[int] = []
    for s in source_order:
        if quotas[s] == 0:
            continue
        by_cat: dict[str, list[int]] = {}
        for r in by_source[s]:
            by_cat.setdefault(category_of[r], []).append(r)
        cats = sorted(by_cat)
        sizes = {c: len(by_cat[c]) for c in cats}
        cat_quota = allocate(sizes, sizes, quotas[s])
        for c in cats:
            ranked = sorted(by_cat[c], key=lambda r: _rank(seed, composition, split, id_of[r]))
            chosen.extend(ranked[: cat_quota[c]])
    return chosen


# ---------------------------------------------------------------------------------------------------


def _source_configs(config: CompositionConfig, loaded: Sequence[LoadedSource] | Mapping[str, LoadedSource]) -> list[tuple[SourceConfig, LoadedSource]]:
    by_name = {ls.config.name: ls for ls in (loaded.values() if isinstance(loaded, Mapping) else loaded)}
    pairs = []
    for cfg in config.sources:
        if cfg.name not in by_name:
            raise DataError(f"composition {config.name}: source {cfg.name!r} was not loaded")
        pairs.append((cfg, by_name[cfg.name]))
    return pairs


def _counts(values: Sequence[tuple[str, str]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for s, c in values:
        out.setdefault(s, {}).setdefault(c, 0)
        out[s][c] += 1
    return {s: dict(sorted(v.items())) for s, v in out.items()}


def build_composition(
    config: CompositionConfig,
    loaded: Sequence[LoadedSource] | Mapping[str, LoadedSource],
    exclude_queries: Sequence[str],
) -> BuildResult:
    """Filter, de-duplicate, exclude the demonstration queries and sample X and the test set."""
    pairs = _source_configs(config, loaded)
    f = config.filters
    table = pl.concat([ls.frame for _, ls in pairs], how="vertical") if pairs else pl.DataFrame(schema=PROMPT_SCHEMA)
    source_order = [cfg.name for cfg, _ in pairs]
    allowed = {cfg.name: (set(cfg.categories) if cfg.categories is not None else None) for cfg, _ in pairs}

    ids = table["prompt_id"].to_list()
    srcs = table["source"].to_list()
    texts = table["prompt"].to_list()
    cats_raw = table["category"].to_list()
    cats = [c if c is not None else NO_CATEGORY for c in cats_raw]
    n = table.height
    reason: list[str | None] = [None] * n
    dup_of: list[str | None] = [None] * n

    for i in range(n):
        text = texts[i]
        if (only := allowed[srcs[i]]) is not None and cats_raw[i] not in only:
            reason[i] = "category"
        elif not text.strip():
            reason[i] = "empty"
        elif len(text) < f.min_chars or len(text.split()) < f.min_words:
            reason[i] = "too_short"
        elif len(text) > f.max_chars:
            reason[i] = "too_long"
        elif f.language == "en" and not looks_english(text, min_ascii_letter_share=f.min_ascii_letter_share):
            reason[i] = "language"

    first_by_id: dict[str, int] = {}
    for i in range(n):
        if reason[i] is None:
            if ids[i] in first_by_id:
                reason[i], dup_of[i] = "duplicate", ids[i]
            else:
                first_by_id[ids[i]] = i

    if f.near_dup_threshold is not None:
        alive = [i for i in range(n) if reason[i] is None]
        for i, match in zip(alive, near_duplicates([texts[i] for i in alive], f.near_dup_threshold, f.shingle_size)):
            if match is not None:
                reason[i], dup_of[i] = "near_duplicate", ids[alive[match]]

    demo_norm = {normalize_text(q) for q in exclude_queries}
    demo_sh = [shingles(q, f.shingle_size) for q in exclude_queries]
    for i in range(n):
        if reason[i] is None and (
            normalize_text(texts[i]) in demo_norm
            or (f.near_dup_threshold is not None and matches_any(texts[i], demo_sh, f.near_dup_threshold, f.shingle_size))
        ):
            reason[i] = "demonstration"

    pool = [i for i in range(n) if reason[i] is None]
    need = config.n_x + config.n_test
    if len(pool) < need:
        per = {s: 0 for s in source_order}
        for i in pool:
            per[srcs[i]] += 1
        detail = ", ".join(f"{s} {c}" for s, c in per.items())
        raise NotEnoughPromptsError(
            f"composition {config.name} asks for {need} prompts (X {config.n_x} + test {config.n_test}) but its "
            f"sources hold {len(pool)} after filters and de-duplication ({detail}); lower --n-test/--n-x or add sources"
        )

    common: dict[str, Any] = dict(
        source_of=srcs,
        category_of=cats,
        id_of=ids,
        source_order=source_order,
        weights={cfg.name: cfg.weight for cfg, _ in pairs},
        seed=config.seed,
        composition=config.name,
    )
    test_rows = stratified_sample(pool, config.n_test, split="test", **common)
    taken = set(test_rows)
    x_rows = stratified_sample([i for i in pool if i not in taken], config.n_x, split="x", **common)

    split: list[str | None] = [None] * n
    for i in test_rows:
        split[i] = "test"
    for i in x_rows:
        split[i] = "x"
    position = {s: k for k, s in enumerate(source_order)}
    full = table.with_columns(
        pl.Series("drop_reason", reason, dtype=pl.Utf8),
        pl.Series("duplicate_of", dup_of, dtype=pl.Utf8),
        pl.Series("split", split, dtype=pl.Utf8),
    )

    def subset(rows: list[int]) -> pl.DataFrame:
        ordered = sorted(rows, key=lambda i: (position[srcs[i]], ids[i]))
        return table[ordered].select(SAMPLE_COLUMNS) if ordered else pl.DataFrame(schema={c: PROMPT_SCHEMA[c] for c in SAMPLE_COLUMNS})

    x, test = subset(x_rows), subset(test_rows)
    manifest = _manifest(config, pairs, exclude_queries, srcs, cats, reason, pool, x_rows, test_rows)
    return BuildResult(config=config, prompts=full, x=x, test=test, manifest=manifest)


def _manifest(
    config: CompositionConfig,
    pairs: list[tuple[SourceConfig, LoadedSource]],
    exclude_queries: Sequence[str],
    srcs: list[str],
    cats: list[str],
    reason: list[str | None],
    pool: list[int],
    x_rows: list[int],
    test_rows: list[int],
) -> dict[str, Any]:
    import datasets
    import pyarrow

    dropped: dict[str, dict[str, int]] = {}
    for s, r in zip(srcs, reason):
        if r is not None:
            dropped.setdefault(r, {}).setdefault(s, 0)
            dropped[r][s] += 1
    demo_digest = hashlib.sha256("\n".join(sorted(normalize_text(q) for q in exclude_queries)).encode()).hexdigest()
    sources = []
    for cfg, ls in pairs:
        entry = ls.provenance()
        entry["categories"] = cfg.categories
        entry["weight"] = cfg.weight
        sources.append(entry)
    return {
        "format_version": FORMAT_VERSION,
        "composition": config.name,
        "seed": config.seed,
        "n_x": config.n_x,
        "n_test": config.n_test,
        "filters": config.filters.model_dump(),
        "filter_order": list(DROP_REASONS),
        "near_duplicate": {
            "method": "Jaccard similarity of word n-gram shingles (normalized tokens), MinHash LSH candidates verified exactly",
            "threshold": config.filters.near_dup_threshold,
            "shingle_size": config.filters.shingle_size,
            "num_perm": NUM_PERM,
            "bands": BANDS,
        },
        "sampling": {
            "method": "test first, then X from the rest; sizes split over sources by weight, then over categories by size; lowest sha256(seed, composition, split, prompt_id) per stratum",
            "weights": {cfg.name: cfg.weight for cfg, _ in pairs},
        },
        "sources": sources,
        "demonstrations": {
            "queries": len(exclude_queries),
            "sha256": demo_digest,
            "excluded_prompts": sum(1 for r in reason if r == "demonstration"),
        },
        "counts": {
            "prompts": {cfg.name: ls.frame.height for cfg, ls in pairs},
            "dropped": {r: dict(dropped[r]) for r in DROP_REASONS if r in dropped},
            "pool": {cfg.name: sum(1 for i in pool if srcs[i] == cfg.name) for cfg, _ in pairs},
            "x": _counts([(srcs[i], cats[i]) for i in sorted(x_rows)]),
            "test": _counts([(srcs[i], cats[i]) for i in sorted(test_rows)]),
            "x_total": len(x_rows),
            "test_total": len(test_rows),
        },
        "software": {"datasets": datasets.__version__, "polars": pl.__version__, "pyarrow": pyarrow.__version__},
    }


# ---------------------------------------------------------------------------------------------------
# Writing


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    """Parquet with fixed settings and no statistics, so equal frames give equal bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = frame.to_arrow()
    table = table.cast(pa.schema([pa.field(f.name, pa.string() if pa.types.is_large_string(f.type) or pa.types.is_string_view(f.type) else f.type) for f in table.schema]))
    buf = io.BytesIO()
    pq.write_table(
        table,
        buf,
        compression="zstd",
        compression_level=3,
        use_dictionary=False,
        write_statistics=False,
        write_page_index=False,
        row_group_size=1 << 20,
        version="2.6",
    )
    return buf.getvalue()


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def write_build(result: BuildResult, out_root: str | Path) -> Path:
    """Write X.parquet, test.parquet, prompts.parquet and manifest.json under out_root/<composition>/.

    The files go to a temporary folder beside the target, which then replaces the target, so a failed
    write leaves the previous build (or nothing) in place.
    """
    out_root = Path(out_root)
    blobs = {
        "X.parquet": parquet_bytes(result.x),
        "test.parquet": parquet_bytes(result.test),
        "prompts.parquet": parquet_bytes(result.prompts),
    }
    manifest = dict(result.manifest)
    manifest["files"] = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(blobs.items())}
    blobs["manifest.json"] = manifest_bytes(manifest)
    try:
        return _swap_in(blobs, out_root, result.config.name)
    except OSError as err:  # a file in the way, no permission, a full disk: one line, not a traceback
        raise DataError(f"cannot write {out_root / result.config.name}: {err.strerror or err}") from None


def _swap_in(blobs: dict[str, bytes], out_root: Path, name: str) -> Path:
    out_root.mkdir(parents=True, exist_ok=True)
    target = out_root / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=out_root))
    old: Path | None = None
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # it becomes the output folder: not mkdtemp's 0700
        for file_name, data in blobs.items():
            (tmp / file_name).write_bytes(data)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=out_root))
            os.replace(target, old / "previous")
        os.replace(tmp, target)
    except BaseException:
        if old is not None and not target.exists():
            os.replace(old / "previous", target)
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old)
    return target
