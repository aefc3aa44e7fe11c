"""Bad input gives one clear line naming the source/file/field, fast, and leaves no output behind."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import time

import pytest

from datasets_prep import (
    DataError,
    EmptySourceError,
    EncodingError,
    MissingColumnError,
    NotEnoughPromptsError,
    SourceConfig,
    SourceUnavailableError,
    build_all,
    load_data_config,
    load_source,
    loading,
    resolve_compositions,
    write_all,
)


def _one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and text.strip() == text and len(text) < 600
    return text


def test_missing_column_names_source_file_and_column(tmp_path, hf_cache):
    path = tmp_path / "dna.jsonl"
    path.write_text(json.dumps({"prompt": "What is a bad question?", "risk_area": "Malicious Uses"}) + "\n", encoding="utf-8")
    with pytest.raises(MissingColumnError) as exc:
        load_source(SourceConfig(loader="do_not_answer", path=path), cache_dir=hf_cache)
    msg = _one_line(exc.value)
    assert msg.startswith("do_not_answer: ") and str(path) in msg and "'question'" in msg and "prompt, risk_area" in msg


def test_explicitly_mapped_optional_column_must_exist(tmp_path, hf_cache):
    path = tmp_path / "adaem.csv"
    path.write_text("question\nIs it fine to ask?\n", encoding="utf-8")
    with pytest.raises(MissingColumnError, match=r"adaem: .*adaem.csv has no column 'value' \(needed for category\)"):
        load_source(SourceConfig(loader="adaem", path=path, columns={"category": "value"}), cache_dir=hf_cache)


@pytest.mark.parametrize("content", [b"", b"  \n\n"])
def test_empty_file(tmp_path, hf_cache, content):
    path = tmp_path / "beavertails.jsonl"
    path.write_bytes(content)
    with pytest.raises(EmptySourceError) as exc:
        load_source(SourceConfig(loader="beavertails", path=path), cache_dir=hf_cache)
    assert _one_line(exc.value).startswith(f"beavertails: {path} is empty")


def test_empty_json_list_has_no_rows(tmp_path, hf_cache):
    path = tmp_path / "honeset.json"
    path.write_text("[]", encoding="utf-8")
    with pytest.raises(EmptySourceError, match=r"honeset: .*honeset.json as json has no rows"):
        load_source(SourceConfig(loader="honeset", path=path), cache_dir=hf_cache)


def test_not_utf8(tmp_path, hf_cache):
    path = tmp_path / "nyt.csv"
    path.write_bytes("question\nIs caf\u00e9 culture good?\n".encode("latin-1"))
    with pytest.raises(EncodingError) as exc:
        load_source(SourceConfig(loader="nyt_dilemma", path=path), cache_dir=hf_cache)
    msg = _one_line(exc.value)
    assert str(path) in msg and "not UTF-8" in msg and "0xe9" in msg


def test_not_utf8_inside_gzip(tmp_path, hf_cache):
    path = tmp_path / "hh.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"chosen": "\\n\\nHuman: caf\xe9?\\n\\nAssistant: x"}\n'))
    with pytest.raises(EncodingError, match="hh_rlhf: .*hh.jsonl.gz is not UTF-8"):
        load_source(SourceConfig(loader="hh_rlhf", path=path), cache_dir=hf_cache)


def test_malformed_json_lines_names_the_line_and_logs_nothing(tmp_path, hf_cache, capfd, caplog):
    path = tmp_path / "adaem.jsonl"
    rows = [json.dumps({"question": f"Is question {i} a fair one to ask?"}) for i in range(20)]
    rows[9] = '{"question": "broken" "topic": "x"}'
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        load_source(SourceConfig(loader="adaem", path=path), cache_dir=hf_cache)
    assert _one_line(exc.value) == f"adaem: {path} line 10: not valid JSON (Expecting ',' delimiter at column 23)"
    # the datasets builder logs its failure before raising it; picaco's line is the only report
    assert "Failed to" not in capfd.readouterr().err
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_malformed_json_list_names_line_and_column(tmp_path, hf_cache):
    path = tmp_path / "adaem.json"
    path.write_text('[\n  {"question": "Is this fine?"},\n  {"question": oops}\n]\n', encoding="utf-8")
    with pytest.raises(DataError) as exc:
        load_source(SourceConfig(loader="adaem", path=path), cache_dir=hf_cache)
    assert _one_line(exc.value) == f"adaem: {path} line 3 column 16: not valid JSON (Expecting value)"


def test_file_rewritten_with_its_old_mtime_is_read_again(tmp_path, hf_cache):
    """`cp -p`, `rsync -a` and `touch -r` keep the mtime, which is all `datasets` keys local files on."""
    path = tmp_path / "adaem.jsonl"
    path.write_text(json.dumps({"question": "Is the old row still here?"}) + "\n", encoding="utf-8")
    cfg = SourceConfig(loader="adaem", path=path)
    old = load_source(cfg, cache_dir=hf_cache)
    stat = path.stat()
    path.write_text(json.dumps({"question": "Is the new row read instead?"}) + "\n", encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    new = load_source(cfg, cache_dir=hf_cache)
    assert old.frame["prompt"].to_list() == ["Is the old row still here?"]
    assert new.frame["prompt"].to_list() == ["Is the new row read instead?"]
    assert new.origin["files"][0]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_bad_record_names_row(tmp_path, hf_cache):
    path = tmp_path / "hh.jsonl"
    rows = [{"chosen": "\n\nHuman: ok?\n\nAssistant: yes"}, {"chosen": "Assistant: no human turn here"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DataError, match=r"hh_rlhf: .*hh.jsonl row 1: transcript does not open with a .*Human:' turn$"):
        load_source(SourceConfig(loader="hh_rlhf", path=path), cache_dir=hf_cache)


def test_unreadable_file_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / "adaem.jsonl"
    path.write_text('{"question": "Is this readable?"}\n', encoding="utf-8")

    def denied(self):  # tests run as root here, where chmod 000 still reads
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(type(path), "read_bytes", denied)
    with pytest.raises(DataError) as exc:
        load_source(SourceConfig(loader="adaem", path=path))
    assert _one_line(exc.value) == f"adaem: cannot read {path}: Permission denied"


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match=r"adaem: .*nope.csv does not exist"):
        load_source(SourceConfig(loader="adaem", path=tmp_path / "nope.csv"))


def test_hub_id_offline_fails_fast_with_local_file_hint(hf_cache):
    comp = resolve_compositions(["harmlessness"])[0]
    t0 = time.perf_counter()
    with pytest.raises(SourceUnavailableError) as exc:
        load_source(comp.sources[0], cache_dir=hf_cache)
    assert time.perf_counter() - t0 < 5
    msg = _one_line(exc.value)
    assert "PKU-Alignment/BeaverTails" in msg and "HF_DATASETS_OFFLINE" in msg and "pass a local file" in msg


def test_hub_unreachable_without_offline_switch_fails_fast(monkeypatch):
    import datasets.config

    for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused at once
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    loading.probe.cache_clear()
    called = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: called.append(a))
    comp = resolve_compositions(["helpfulness"])[0]
    t0 = time.perf_counter()
    with pytest.raises(SourceUnavailableError, match=r"hh_rlhf/helpful-base: cannot reach hub dataset 'Anthropic/hh-rlhf' \(127.0.0.1:9 unreachable"):
        load_source(comp.sources[2])
    assert time.perf_counter() - t0 < 5 and called == []
    loading.probe.cache_clear()


def test_local_only_source_without_path():
    comp = resolve_compositions(["confucianism"])[0]
    with pytest.raises(SourceUnavailableError) as exc:
        load_source(comp.sources[0])
    assert "nyt_dilemma: NYT-Dilemma is not downloadable" in _one_line(exc.value) and "'question' column" in str(exc.value)


def test_too_many_prompts_is_clear_and_writes_nothing(data_config_file, hf_cache, tmp_path):
    cfg, base = load_data_config(data_config_file)
    comps = resolve_compositions(["helpfulness", "confucianism"], cfg, base_dir=base, n_x=50, n_test=800)
    out = tmp_path / "out"
    with pytest.raises(NotEnoughPromptsError) as exc:
        write_all(build_all(comps, {}, cache_dir=hf_cache), out)
    msg = _one_line(exc.value)
    assert msg.startswith("composition confucianism asks for 850 prompts (X 50 + test 800) but its sources hold")
    assert re.search(r"hold \d+ after filters and de-duplication \(nyt_dilemma \d+, valuelex 40, adaem \d+\)", msg)
    assert not out.exists()


def test_failed_rebuild_keeps_previous_output(data_config_file, hf_cache, tmp_path):
    cfg, base = load_data_config(data_config_file)
    out = tmp_path / "out"
    ok = resolve_compositions(["confucianism"], cfg, base_dir=base, n_x=5, n_test=20)
    write_all(build_all(ok, {}, cache_dir=hf_cache), out)
    before = {p.name: p.read_bytes() for p in (out / "confucianism").iterdir()}
    too_big = resolve_compositions(["confucianism"], cfg, base_dir=base, n_x=5, n_test=5000)
    with pytest.raises(NotEnoughPromptsError):
        write_all(build_all(too_big, {}, cache_dir=hf_cache), out)
    assert {p.name: p.read_bytes() for p in (out / "confucianism").iterdir()} == before
    assert sorted(p.name for p in out.iterdir()) == ["confucianism"]  # no temporary folders left


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("compositions: {stoicism: {n_x: 3}}", "unknown composition 'stoicism'"),
        ("sources: {beavertail: {path: x.jsonl}}", "sources.beavertail matches no source of any composition"),
        ("sources: {adaem: {path: a.csv, columns: {question: q}}}", "unknown field(s) question in columns; adaem has text, category, topic"),
        ("sources: {adaem: {path: a.csv, colums: {text: q}}}", "colums: Extra inputs are not permitted"),
        ("sources: {valuelex: {path: a.csv, options: {template: plain}}}", "options.template: Value error, template must contain '{text}'"),
        ("n_test: -1", "n_test: Input should be greater than or equal to 0"),
        ("[1, 2]", "top level must be a mapping"),
    ],
)
def test_config_errors(tmp_path, yaml_text, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    with pytest.raises(DataError) as exc:
        cfg, base = load_data_config(path)
        resolve_compositions(None, cfg, base_dir=base)
    assert message in _one_line(exc.value)
