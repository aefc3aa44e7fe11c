"""flows/_common.py: a flow's config from a file or an inline dict, and Prefect artifact keys."""

from __future__ import annotations

import pytest
import yaml
from tiny_run import small_run_config

from flows._common import artifact_key, resolve_config
from picaco.base.errors import ConfigError


def test_artifact_keys_are_lowercase_letters_digits_and_dashes():
    assert artifact_key("My Run_1", "iteration", 3) == "my-run-1-iteration-3"
    assert artifact_key("--x--", "Ä!") == "x"
    assert len(artifact_key("a" * 300)) == 100


def test_a_config_from_a_file_or_a_dict_with_a_run_name_override(tmp_path):
    raw = small_run_config(tmp_path)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    from_file = resolve_config(str(path), None, "renamed")
    from_dict = resolve_config(None, raw, "renamed")
    assert from_file == from_dict and from_file.run_name == "renamed"
    # an empty override (what a UI form sends for a blank field) leaves the config's value
    assert resolve_config(None, raw, "").run_name == "r" and resolve_config(None, raw, None).run_name == "r"
    assert raw["run_name"] == "r"  # the caller's dict is not changed


def test_exactly_one_source_and_bad_fields_are_one_line(tmp_path):
    raw = small_run_config(tmp_path)
    with pytest.raises(ValueError, match="exactly one"):
        resolve_config(None, None, None)
    with pytest.raises(ValueError, match="exactly one"):
        resolve_config("x.yaml", raw, None)
    with pytest.raises(ConfigError, match=r"^config: field 'picaco.iterations': .*got many"):
        resolve_config(None, {**raw, "picaco": {**raw["picaco"], "iterations": "many"}}, None)
