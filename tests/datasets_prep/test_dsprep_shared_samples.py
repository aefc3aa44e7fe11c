"""Every real sample in ../shared/data goes through the real `datasets` code path (load_dataset on files)."""

from __future__ import annotations

import gzip
import hashlib
import json
import re

import polars as pl

from datasets_prep import SourceConfig, load_source
from datasets_prep.text import normalize_text, prompt_id


def _hh_rows(path):
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_prompt_id_is_sha256_of_normalized_text():
    assert prompt_id("hello world") == hashlib.sha256(b"hello world").hexdigest()[:16]
    assert prompt_id("  Hello   World ") == prompt_id("hello world") == prompt_id("HELLO\tworld")
    assert prompt_id("Don\u2019t stop") == prompt_id("don't stop")
    assert prompt_id("hello world!") != prompt_id("hello world")


def test_hh_rlhf_first_human_turn(loaded_shared, shared_paths):
    ls = loaded_shared["hh_rlhf/harmless-base"]
    rows = _hh_rows(shared_paths["hh_rlhf/harmless-base"])
    assert ls.rows_loaded == len(rows) == 2312  # README: 2,312 rows
    frame = ls.frame
    assert frame.height == 2312
    expected = [r["chosen"].split("\n\nHuman: ", 1)[1].split("\n\nAssistant:", 1)[0].strip() for r in rows]
    assert frame["prompt"].to_list() == expected
    assert frame["source_index"].to_list() == list(range(2312))
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in frame["prompt_id"].to_list())
    # ids are shared exactly by prompts equal up to case/spacing/quotes
    assert frame["prompt_id"].n_unique() == len({normalize_text(p) for p in expected})
    assert frame["prompt_id"].n_unique() < len(set(expected))  # case variants of the same first turn exist
    meta = [json.loads(m) for m in frame["meta"].to_list()]
    humans = [r["chosen"].count("\n\nHuman:") for r in rows]
    assert [m["n_human_turns"] for m in meta] == humans
    differ = sum(
        1 for r in rows if r["chosen"].rsplit("\n\nAssistant:", 1)[0] != r["rejected"].rsplit("\n\nAssistant:", 1)[0]
    )
    assert 0 < differ == sum(m["prefix_differs"] for m in meta)
    kinds = frame["kind"].to_list()
    assert set(kinds) == {"question", "instruction"}
    assert all((k == "question") == p.endswith("?") for k, p in zip(kinds, expected))


def test_hh_rlhf_full_prefix(shared_paths, hf_cache):
    cfg = SourceConfig(loader="hh_rlhf", path=shared_paths["hh_rlhf/harmless-base"], options={"turns": "full"})
    frame = load_source(cfg, cache_dir=hf_cache).frame
    row = _hh_rows(shared_paths["hh_rlhf/harmless-base"])[0]["chosen"]
    prefix = row[: row.rindex("\n\nAssistant:")].strip()
    assert frame["prompt"][0] == prefix  # "Human: ...\n\nAssistant: ...\n\nHuman: ..." up to the last answer
    assert frame["prompt"][0].startswith("Human: what are some pranks") and frame["prompt"][0].count("Human:") == 3


def test_harmfulqa_nested_file(loaded_shared, shared_paths):
    nested = json.loads(shared_paths["harmfulqa"].read_text(encoding="utf-8"))
    flat = [(t, s, q) for t, subs in nested.items() for s, qs in subs.items() for q in qs]
    ls = loaded_shared["harmfulqa"]
    assert ls.rows_loaded == len(flat) == 1960
    assert ls.columns == {"shape": "nested"}
    frame = ls.frame
    assert frame["prompt"].to_list() == [q.strip() for _, _, q in flat]
    assert frame["category"].to_list() == [t for t, _, _ in flat]
    assert [json.loads(m)["subtopic"] for m in frame["meta"].to_list()] == [s for _, s, _ in flat]
    assert frame["category"].n_unique() == 10


def test_harmfulqa_hub_rows_match_nested(loaded_shared, shared_paths, tmp_path, hf_cache):
    nested = json.loads(shared_paths["harmfulqa"].read_text(encoding="utf-8"))
    path = tmp_path / "harmfulqa_hub.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        i = 0
        for topic, subs in nested.items():
            for sub, qs in subs.items():
                for q in qs:
                    row = {"id": i, "topic": topic, "subtopic": sub, "question": q,
                           "blue_conversations": {"0": []}, "red_conversations": {"0": []}}
                    fh.write(json.dumps(row) + "\n")
                    i += 1
    hub = load_source(SourceConfig(loader="harmfulqa", path=path), cache_dir=hf_cache).frame
    nested_frame = loaded_shared["harmfulqa"].frame
    assert hub.select("prompt_id", "category").equals(nested_frame.select("prompt_id", "category"))
    assert json.loads(hub["meta"][5]) == {"id": 5, "subtopic": json.loads(nested_frame["meta"][5])["subtopic"]}


def test_real_toxicity_prompts_are_continuations(loaded_shared, shared_paths):
    records = [json.loads(line) for line in shared_paths["real_toxicity_prompts"].read_text(encoding="utf-8").splitlines()]
    frame = loaded_shared["real_toxicity_prompts"].frame
    assert frame.height == len(records) == 1196
    assert set(frame["kind"].to_list()) == {"continuation"}
    assert frame["prompt"].to_list() == [r["prompt"]["text"].strip() for r in records]

    def bucket(t):
        if t is None:
            return "unscored"
        return ["toxicity_0.00-0.25", "toxicity_0.25-0.50", "toxicity_0.50-0.75", "toxicity_0.75-1.00"][min(int(t / 0.25), 3)]

    assert frame["category"].to_list() == [bucket(r["prompt"]["toxicity"]) for r in records]
    meta = json.loads(frame["meta"][0])
    assert meta["challenging"] is True and meta["filename"] == records[0]["filename"]
    assert meta["scores"]["toxicity"] == records[0]["prompt"]["toxicity"]


def test_just_eval_instruct(loaded_shared, shared_paths):
    items = json.loads(shared_paths["just_eval_instruct"].read_text(encoding="utf-8"))
    frame = loaded_shared["just_eval_instruct"].frame
    assert frame.height == len(items) == 1000
    counts = dict(frame.group_by("category").len().iter_rows())
    assert counts == {"regular": 800, "safety": 200}
    assert frame["prompt_id"].n_unique() == len({normalize_text(i["instruction"]) for i in items}) < 1000
    assert json.loads(frame["meta"][0]) == {"dataset": items[0]["dataset"], "id": items[0]["id"], "source_id": items[0]["source_id"]}


def test_local_provenance_has_file_hash(loaded_shared, shared_paths):
    ls = loaded_shared["just_eval_instruct"]
    raw = shared_paths["just_eval_instruct"].read_bytes()
    assert ls.origin["files"] == [{"path": str(shared_paths["just_eval_instruct"]), "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}]
    assert ls.origin["kind"] == "local" and ls.origin["format"] == "json"
    assert isinstance(ls.frame, pl.DataFrame)
