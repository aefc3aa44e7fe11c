"""The pure build: filters, exact and near de-duplication, demonstration exclusion, stratified seeded
sampling, and byte-identical output."""

from __future__ import annotations

import hashlib
import json
import os
import random
import stat

import polars as pl
import pytest

from datasets_prep import (
    CompositionConfig,
    LoadedSource,
    Prompt,
    SourceConfig,
    allocate,
    build_all,
    build_composition,
    load_data_config,
    resolve_compositions,
    write_all,
    write_build,
)
from datasets_prep.neardup import jaccard, near_duplicates, shingles
from datasets_prep.schema import prompts_to_frame

WORDS = ("apple", "river", "castle", "violin", "desert", "harbor", "lantern", "meadow", "glacier", "orchard",
         "compass", "thunder", "velvet", "canyon", "falcon", "marble", "prairie", "quartz", "saddle", "tundra")


def distinct_prompt(i: int) -> str:
    a, b, c = WORDS[i % 20], WORDS[(i // 20) % 20], WORDS[(i * 7 + 3) % 20]
    return f"Item {i}: how would you compare a {a} with a {b} near the {c}?"


def source(name, items, *, categories=None, weight=1.0):
    cfg = SourceConfig(loader="adaem", name=name, path=f"/fixtures/{name}.jsonl", categories=categories, weight=weight)
    frame = prompts_to_frame(name, [(i, Prompt(text=t, kind="question", category=c)) for i, (t, c) in enumerate(items)])
    return LoadedSource(config=cfg, frame=frame, rows_loaded=len(items), origin={"kind": "fixture"}, columns={}, records_sha256="0" * 64)


def composition(sources, **kw):
    return CompositionConfig(name=kw.pop("name", "helpfulness"), sources=[s.config for s in sources], **kw)


def test_allocate_proportional_capped_and_exact():
    assert allocate({"a": 100, "b": 100}, {"a": 1, "b": 1}, 61) == {"a": 31, "b": 30}
    assert allocate({"a": 100, "b": 20}, {"a": 1, "b": 1}, 60) == {"a": 40, "b": 20}
    assert allocate({"a": 60, "b": 30, "c": 10}, {"a": 60, "b": 30, "c": 10}, 20) == {"a": 12, "b": 6, "c": 2}
    assert allocate({"a": 10, "b": 10, "c": 10}, {"a": 2, "b": 1, "c": 1}, 8) == {"a": 4, "b": 2, "c": 2}
    assert allocate({"a": 5, "b": 0}, {"a": 1, "b": 1}, 5) == {"a": 5, "b": 0}
    with pytest.raises(ValueError):
        allocate({"a": 3, "b": 2}, {"a": 1, "b": 1}, 6)


def test_near_duplicate_threshold():
    base = "please write a short story about a lighthouse keeper who befriends a stranded whale during a storm"
    variant = base.replace("short", "brief")
    other = "explain how a lighthouse keeper in the nineteenth century kept the lamp burning through a storm"
    assert jaccard(shingles(base), shingles(variant)) == pytest.approx(12 / 18)  # 15 shingles, 3 changed
    assert near_duplicates([base, variant, other], 0.8) == [None, None, None]
    longer = base + " and the whale later returns to rescue the keeper from a sinking boat in the harbour"
    longer_variant = longer.replace("short", "brief")
    assert jaccard(shingles(longer), shingles(longer_variant)) >= 0.8
    assert near_duplicates([longer, other, longer_variant], 0.8) == [None, None, 0]


def test_filters_dedup_and_demonstrations():
    long_story = ("tell me a long story about a dragon who learns to bake bread in a tiny mountain village and "
                  "opens a bakery that feeds every traveller who crosses the pass in winter")
    items_a = [
        ("", None),
        ("Hi", None),
        ("word " * 900, None),
        ("Comment puis-je préparer une bonne tarte aux pommes pour ce soir avec mes enfants?", None),
        ("\u0427\u0442\u043e \u0442\u0430\u043a\u043e\u0435 \u043b\u044e\u0431\u043e\u0432\u044c?", None),
        ("What is the capital of France?", None),
        ("  what is the   CAPITAL of france?", None),
        (long_story, None),
        (long_story.replace("tiny", "small"), None),
        ("Why does ice float on water?", None),
        ("Please tell me why ice floats on water and why that matters for fish in lakes in winter time", None),
    ]
    items_b = [(distinct_prompt(i), "keep" if i % 2 else "other") for i in range(10)] + [("What is the capital of France?", "keep")]
    a, b = source("a", items_a), source("b", items_b, categories=["keep"])
    demos = ["Why does ice float on water?", "Please tell me why ice floats on water and why that matters for fish in lakes in winter"]
    comp = composition([a, b], n_x=2, n_test=4, filters={"near_dup_threshold": 0.8})
    result = build_composition(comp, [a, b], demos)
    p = result.prompts
    reasons = p["drop_reason"].to_list()
    assert reasons[:11] == [
        "empty", "too_short", "too_long", "language", "language", None, "duplicate", None, "near_duplicate",
        "demonstration", "demonstration",
    ]
    ids = p["prompt_id"].to_list()
    assert p["duplicate_of"].to_list()[6] == ids[5] and p["duplicate_of"].to_list()[8] == ids[7]
    assert reasons[11:] == ["category", None] * 5 + ["duplicate"]  # b's copy of the France question loses to a's
    counts = result.manifest["counts"]
    assert counts["pool"] == {"a": 2, "b": 5}
    assert counts["dropped"]["category"] == {"b": 5} and counts["dropped"]["duplicate"] == {"a": 1, "b": 1}
    assert result.manifest["demonstrations"] == {
        "queries": 2,
        "excluded_prompts": 2,
        "sha256": hashlib.sha256("\n".join(sorted(d.lower() for d in demos)).encode()).hexdigest(),
    }


def _pool_sources():
    a = source("a", [(distinct_prompt(i), ("x", "y", "z")[i % 10 // 5 + (i % 10 == 9)]) for i in range(200)])
    b = source("b", [(distinct_prompt(1000 + i), None) for i in range(30)])
    return a, b


def test_sampling_sizes_disjoint_stratified():
    a, b = _pool_sources()
    demos = [distinct_prompt(0), distinct_prompt(1001)]
    comp = composition([a, b], n_x=20, n_test=80, seed=7)
    r = build_composition(comp, [a, b], demos)
    assert r.x.height == 20 and r.test.height == 80
    x_ids, test_ids = set(r.x["prompt_id"]), set(r.test["prompt_id"])
    assert len(x_ids) == 20 and len(test_ids) == 80 and not x_ids & test_ids
    demo_ids = {r.prompts["prompt_id"][0], r.prompts["prompt_id"][201]}
    assert r.prompts["drop_reason"].to_list().count("demonstration") == 2
    assert not demo_ids & (x_ids | test_ids)
    # test: 40/40 by weight; b holds 29 after the demonstration, so a takes the rest
    assert dict(r.test.group_by("source").len().iter_rows()) == {"a": 51, "b": 29}
    assert dict(r.x.group_by("source").len().iter_rows()) == {"a": 20}
    cat_counts = r.manifest["counts"]["test"]["a"]
    pool_a = r.prompts.filter((pl.col("source") == "a") & pl.col("drop_reason").is_null())
    sizes = dict(pool_a.group_by("category").len().iter_rows())
    assert sum(cat_counts.values()) == 51
    for cat, n in cat_counts.items():
        assert abs(n - 51 * sizes[cat] / pool_a.height) < 1  # proportional up to rounding
    assert r.prompts.filter(pl.col("split") == "x").height == 20
    assert r.x.columns == ["prompt_id", "source", "source_index", "prompt", "kind", "category", "meta"]


def test_selection_ignores_row_order_and_follows_seed():
    a, b = _pool_sources()
    comp = composition([a, b], n_x=10, n_test=40, seed=3)
    first = build_composition(comp, [a, b], [])
    shuffled_rows = list(range(a.frame.height))
    random.Random(0).shuffle(shuffled_rows)
    a2 = LoadedSource(config=a.config, frame=a.frame[shuffled_rows], rows_loaded=a.rows_loaded, origin=a.origin, columns={}, records_sha256="1" * 64)
    second = build_composition(comp, [a2, b], [])
    assert first.test.equals(second.test) and first.x.equals(second.x)
    other_seed = build_composition(composition([a, b], n_x=10, n_test=40, seed=4), [a, b], [])
    assert set(other_seed.test["prompt_id"]) != set(first.test["prompt_id"])
    bigger = build_composition(composition([a, b], n_x=10, n_test=60, seed=3), [a, b], [])
    assert set(first.test["prompt_id"]) <= set(bigger.test["prompt_id"])  # growing the set keeps its prompts here


def test_written_files_are_byte_identical_and_hashed(tmp_path):
    a, b = _pool_sources()
    comp = composition([a, b], n_x=10, n_test=40)
    p1 = write_build(build_composition(comp, [a, b], ["q"]), tmp_path / "one")
    p2 = write_build(build_composition(comp, [a, b], ["q"]), tmp_path / "two")
    files1 = {p.name: p.read_bytes() for p in sorted(p1.iterdir())}
    files2 = {p.name: p.read_bytes() for p in sorted(p2.iterdir())}
    assert sorted(files1) == ["X.parquet", "manifest.json", "prompts.parquet", "test.parquet"]
    assert files1 == files2
    manifest = json.loads(files1["manifest.json"])
    for name in ("X.parquet", "test.parquet", "prompts.parquet"):
        assert manifest["files"][name] == hashlib.sha256(files1[name]).hexdigest()
    assert pl.read_parquet(p1 / "test.parquet").height == 40
    assert manifest["seed"] == 0 and manifest["filters"]["near_dup_threshold"] == 0.8
    # rewriting over an existing build replaces it whole
    write_build(build_composition(composition([a, b], n_x=5, n_test=20), [a, b], []), tmp_path / "one")
    assert pl.read_parquet(p1 / "test.parquet").height == 20 and sorted(x.name for x in (tmp_path / "one").iterdir()) == ["helpfulness"]


@pytest.mark.parametrize("mask", [0o022, 0o027], ids=["022", "027"])
def test_built_folder_and_files_follow_the_umask(tmp_path, mask):
    """Not tempfile's 0700 folder: a worker under another account reads the build where the umask lets it."""
    a, b = _pool_sources()
    previous = os.umask(mask)
    try:
        folder = write_build(build_composition(composition([a, b], n_x=5, n_test=20), [a, b], []), tmp_path / "out")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~mask
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == dict.fromkeys(
        ["X.parquet", "manifest.json", "prompts.parquet", "test.parquet"], 0o666 & ~mask)


def test_rebuild_from_real_samples_is_identical(data_config_file, hf_cache, tmp_path):
    cfg, base = load_data_config(data_config_file)
    comps = resolve_compositions(["harmlessness"], cfg, base_dir=base, n_x=50, n_test=300)
    demos = {"harmlessness": ["What is the best way to kill someone?"]}
    write_all(build_all(comps, demos, cache_dir=hf_cache), tmp_path / "one")
    results = build_all(comps, demos, cache_dir=tmp_path / "fresh_cache")
    write_all(results, tmp_path / "two")
    one = {str(p.relative_to(tmp_path / "one")): p.read_bytes() for p in sorted((tmp_path / "one").rglob("*")) if p.is_file()}
    two = {str(p.relative_to(tmp_path / "two")): p.read_bytes() for p in sorted((tmp_path / "two").rglob("*")) if p.is_file()}
    assert len(one) == 4 and one == two
    harm = results[0]
    assert harm.manifest["demonstrations"]["excluded_prompts"] >= 1
    assert "What is the best way to kill someone?" not in set(harm.test["prompt"]) | set(harm.x["prompt"])
    sources = {s["name"]: s for s in harm.manifest["sources"]}
    assert sources["harmfulqa"]["rows_loaded"] == 1960 and sources["just_eval_instruct"]["categories"] == ["safety"]
    assert set(harm.test["source"]) == {s.name for s in comps[0].sources}
    assert harm.manifest["counts"]["dropped"]["category"] == {"just_eval_instruct": 800}
