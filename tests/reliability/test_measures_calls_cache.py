"""The campaign's figures for the call layer and the cache, each at its goal (bench/reliability.py prints
the same measures)."""

from __future__ import annotations

from cases_cache import pickle_executed
from cases_calls import cached_rerun_without_key_calls, content_filtered_run_completed, secret_found


def test_a_planted_pickle_never_runs(tmp_path):
    assert pickle_executed(tmp_path) is False


def test_no_secret_reaches_output_files_or_logs(tmp_path):
    assert secret_found(tmp_path) == 0


def test_a_run_with_content_filtered_replies_completes(tmp_path):
    assert content_filtered_run_completed(tmp_path) is True


def test_a_cached_rerun_needs_no_key_and_makes_no_call(tmp_path):
    assert cached_rerun_without_key_calls(tmp_path) == 0
