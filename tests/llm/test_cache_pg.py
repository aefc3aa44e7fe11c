"""The Postgres cache backend against a real Postgres (one per session, see conftest): a run and its
cached rerun, moving a cache from diskcache to Postgres, and bad input (URL, password, server gone,
newer schema)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from picaco.base.errors import CacheError, ConfigError
from picaco.cli import app
from picaco.config import parse_run_config
from picaco.llm.cache import encode_sample, open_cache
from picaco.llm.cache_pg import PostgresCache, redact_url
from picaco.method.run import optimize

pytestmark = pytest.mark.slow


def tiny(tmp_path, runs: str) -> dict:
    return {"run_name": "tiny", "composition": "confucianism", "prompts": {"demo_family": "schwartz"},
            "runs_dir": str(tmp_path / runs), "models": {"embedding": "sim/embed"},
            "client": {"cache_dir": str(tmp_path / "cache"),
                       "providers": {"sim": {"kind": "sim", "options": {"world": "values"}}}},
            "picaco": {"n_prompts": 3, "m1": 2, "m2": 2, "iterations": 1, "noisy_samples": 3, "n_pe_samples": 2,
                       "buckets": 2, "samples_per_bucket": 2}}


def calls_of(cfg) -> int:
    from picaco.llm.calllog import paid_calls, read_call_log

    return paid_calls(read_call_log(cfg.run_dir / "calls.jsonl"))


def test_a_run_on_postgres_is_replayed_by_a_fresh_run_with_no_call(tmp_path, pg_url, monkeypatch):
    monkeypatch.setenv("PICACO_CACHE_URL", pg_url)
    first = parse_run_config(tiny(tmp_path, "runs-a"))
    result = optimize(first)
    assert calls_of(first) > 0
    assert not (tmp_path / "cache").exists(), "with a URL set, nothing goes to the diskcache directory"
    second = parse_run_config(tiny(tmp_path, "runs-b"))  # a new run directory: only the cache can answer
    again = optimize(second)
    assert calls_of(second) == 0
    assert again.best_instruction == result.best_instruction
    stats = json.loads(CliRunner().invoke(app, ["cache", "stats", "--json"]).stdout)
    assert stats["backend"] == "postgres" and stats["entries"] > 0
    assert stats["by_role"]["target"]["hits"] > 0 and stats["by_role"]["target"]["misses"] > 0
    assert pg_url.split(":")[2].split("@")[0] not in json.dumps(stats), "the password is never printed"


def test_export_from_diskcache_and_import_into_postgres_replays_with_no_call(tmp_path, pg_url, monkeypatch):
    monkeypatch.delenv("PICACO_CACHE_URL", raising=False)
    laptop = parse_run_config(tiny(tmp_path, "runs-laptop"))
    optimize(laptop)
    runner = CliRunner()
    out = tmp_path / "cache.jsonl"
    done = runner.invoke(app, ["cache", "export", "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert done.exit_code == 0, done.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["kind"] for r in rows} == {"sample", "embedding"}
    done = runner.invoke(app, ["cache", "import", str(out), "--url", pg_url])
    assert done.exit_code == 0 and f"imported {len(rows)} rows" in done.output, done.output
    # importing again changes nothing: rows are never overwritten
    assert runner.invoke(app, ["cache", "import", str(out), "--url", pg_url]).exit_code == 0
    pg = PostgresCache(pg_url)
    try:
        assert len(pg) == len(rows)
        assert sorted(pg.export_rows(), key=lambda r: r["key"]) == sorted(rows, key=lambda r: r["key"])
    finally:
        pg.close()
    monkeypatch.setenv("PICACO_CACHE_URL", pg_url)
    team = parse_run_config(tiny(tmp_path, "runs-team"))
    optimize(team)
    assert calls_of(team) == 0


def test_rows_are_never_overwritten_except_in_refresh_mode(pg_url):
    a, b = PostgresCache(pg_url), PostgresCache(pg_url)
    try:
        a.put_sample("k", {"text": "first"})
        b.put_sample("k", {"text": "second"})  # a second worker that paid for the same sample
        assert a.get_sample("k")["text"] == "first"
        refresh = PostgresCache(pg_url, mode="refresh")
        refresh.put_sample("k", {"text": "fresh"})
        refresh.close()
        assert b.get_sample("k")["text"] == "fresh"
        vec = np.arange(5, dtype=np.float32)
        a.put_embedding("e", vec)
        assert np.array_equal(b.get_embedding("e"), vec)
        a.add_stats("target", hits=2, misses=1)
        b.add_stats("target", hits=3)
        assert a.stats()["by_role"]["target"]["hits"] == 5
        assert a.clear() == 2 and len(b) == 0 and b.stats()["by_role"] == {}
    finally:
        a.close()
        b.close()


def test_a_batch_of_one_event_loop_turn_is_one_transaction(pg_url):
    cache = PostgresCache(pg_url)

    async def main():
        await asyncio.gather(*(cache.write_rows([(f"k{i}", encode_sample({"text": str(i)}))]) for i in range(50)))

    try:
        asyncio.run(main())
        assert len(cache) == 50 and cache.get_sample("k7") == {"text": "7"}
    finally:
        cache.close()


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


def test_a_wrong_password_or_url_is_one_line_without_the_password(local_postgres, monkeypatch):
    wrong = local_postgres.url.replace(local_postgres.password, "Wr0ngSecret")
    with pytest.raises(CacheError) as err:
        open_cache("unused", url=wrong)
    assert "Wr0ngSecret" not in str(err.value) and "password authentication failed" in str(err.value)
    assert "***" in str(err.value) and one_line(str(err.value))
    done = CliRunner().invoke(app, ["cache", "stats", "--url", wrong])
    assert done.exit_code == 2 and one_line(done.output) and "Wr0ngSecret" not in done.output
    closed = f"postgresql://picaco:Wr0ngSecret@127.0.0.1:{local_postgres.port + 1}/postgres"
    with pytest.raises(CacheError, match="cannot connect") as err:
        PostgresCache(closed, connect_timeout_s=2)
    assert "Wr0ngSecret" not in str(err.value) and one_line(str(err.value))
    with pytest.raises(CacheError, match="not a postgresql:// URL"):
        PostgresCache("mysql://u:Wr0ngSecret@localhost/db")
    assert redact_url("postgresql://u:p%40ss@h:5/db") == "postgresql://u:***@h:5/db"


def test_a_password_in_the_run_config_is_refused_without_printing_it(tmp_path):
    raw = tiny(tmp_path, "runs")
    raw["client"]["cache_url"] = "postgresql://picaco:Wr0ngSecret@127.0.0.1/db"
    with pytest.raises(ConfigError, match="must not carry a password") as err:
        parse_run_config(raw)
    assert "Wr0ngSecret" not in str(err.value)
    raw["client"]["cache_url"] = "postgresql://picaco@127.0.0.1/db"
    assert parse_run_config(raw).client.cache_url.endswith("/db")


def test_tables_of_a_newer_schema_are_refused(pg_url):
    import psycopg

    PostgresCache(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE picaco_cache_schema SET version = 99")
    with pytest.raises(CacheError, match=r"newer picaco \(cache schema version 99; this one reads up to 1\)"):
        PostgresCache(pg_url)


def test_postgres_going_away_is_one_line_leaves_whole_batches_and_resumes():
    from picaco.llm.pg_local import LocalPostgres

    with LocalPostgres() as pg:
        cache = PostgresCache(pg.url)
        asyncio.run(cache.write_rows([(f"a{i}", encode_sample({"text": "kept"})) for i in range(3)]))
        pg.stop()
        batch = [(f"b{i}", encode_sample({"text": "lost"})) for i in range(3)]
        with pytest.raises(CacheError) as err:
            asyncio.run(cache.write_rows(batch))
        assert one_line(str(err.value)) and pg.password not in str(err.value)
        assert str(err.value).startswith(f"cannot write to the cache at postgresql://picaco:***@127.0.0.1:{pg.port}")
        with pytest.raises(CacheError):  # the run stops: every later write fails the same way
            asyncio.run(cache.write_rows(batch))
        with pytest.raises(CacheError, match="cannot read from"):  # a read is not a miss: it would pay again
            cache.get_sample("a0")
        cache.close()
        pg.start()
        again = PostgresCache(pg.url)
        try:
            assert len(again) == 3 and again.get_sample("a1") == {"text": "kept"} and again.get_sample("b0") is None
            asyncio.run(again.write_rows(batch))  # resumed: the lost batch is written now
            assert len(again) == 6
        finally:
            again.close()


def test_a_run_whose_postgres_goes_away_stops_in_one_line_and_resumes_once_it_is_back(tmp_path, monkeypatch):
    from picaco.llm.pg_local import LocalPostgres
    from picaco.method.run import RunStore

    with LocalPostgres() as pg:
        monkeypatch.setenv("PICACO_CACHE_URL", pg.url)
        cfg = parse_run_config(tiny(tmp_path, "runs"))

        def stop_at_the_m_step(kind, **_):
            if kind == "m_step":
                pg.stop()

        with pytest.raises(CacheError) as err:
            optimize(cfg, on_event=stop_at_the_m_step)
        assert one_line(str(err.value)) and pg.password not in str(err.value)
        assert RunStore(cfg.run_dir).last_complete_iteration() == 0, "no iteration was recorded half-done"
        pg.start()
        optimize(cfg)  # the same command, once the server is back
        assert RunStore(cfg.run_dir).last_complete_iteration() == 1
        fresh = parse_run_config(tiny(tmp_path, "runs-fresh"))
        optimize(fresh)
        assert calls_of(fresh) == 0, "every answer paid for before and after the outage is in the cache"


def test_a_malformed_import_line_is_one_line_naming_it(tmp_path, monkeypatch):
    monkeypatch.delenv("PICACO_CACHE_URL", raising=False)
    bad = tmp_path / "bad.jsonl"
    good = {"kind": "sample", "key": "k1", "value": {"text": "ok"}}
    for content, expected in ((json.dumps(good) + "\n{not json\n", "bad.jsonl:2: not a JSON line"),
                              (json.dumps({"kind": "embedding", "key": "k2", "value": "@@"}), "must be base64"),
                              (json.dumps({"kind": "table", "key": "k3"}), "not a cache row")):
        bad.write_text(content)
        done = CliRunner().invoke(app, ["cache", "import", str(bad), "--cache-dir", str(tmp_path / "c")])
        assert done.exit_code == 2 and expected in done.output and one_line(done.output), done.output


def test_a_claimed_sample_is_paid_once_and_a_dead_workers_claim_lapses(pg_url):
    a, b = PostgresCache(pg_url), PostgresCache(pg_url)
    try:
        assert a.claim(["k1", "k2"]) == {"k1", "k2"}
        assert b.claim(["k1", "k2", "k3"]) == {"k3"}, "keys another worker holds are not taken"
        assert a.claim(["k1"]) == {"k1"}, "a worker may renew its own claim"

        async def second_worker() -> dict:
            await b.wait_for(["k1"])  # returns once the first worker wrote k1
            return b.get_sample("k1")

        async def both():
            waiter = asyncio.create_task(second_worker())
            await asyncio.sleep(0.2)
            assert not waiter.done(), "the second worker waits while the claim is alive"
            await a.write_rows([("k1", encode_sample({"text": "paid once"}))])
            return await waiter

        assert asyncio.run(both()) == {"text": "paid once"}
        assert b.claim(["k1"]) == set(), "a stored sample is never claimed"
        # a worker that died holding k2: its claim lapses after the ttl and another takes it
        assert a.claim(["k2"], ttl_s=0.3) == {"k2"} and b.claim(["k2"]) == set()
        asyncio.run(b.wait_for(["k2"]))
        assert b.claim(["k2"]) == {"k2"}
    finally:
        a.close()
        b.close()
