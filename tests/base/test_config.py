"""The base layer's config records: where the cache lives by default."""

from __future__ import annotations

from pathlib import Path

from picaco.base.config import ClientConfig


def test_cache_dir_comes_from_picaco_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("PICACO_CACHE_DIR", str(tmp_path / "shared-cache"))
    assert ClientConfig().cache_dir == tmp_path / "shared-cache"
    monkeypatch.delenv("PICACO_CACHE_DIR")
    assert ClientConfig().cache_dir == Path("artifacts/cache")


def test_a_config_that_names_its_cache_dir_keeps_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PICACO_CACHE_DIR", str(tmp_path / "env"))
    assert ClientConfig(cache_dir=tmp_path / "mine").cache_dir == tmp_path / "mine"
