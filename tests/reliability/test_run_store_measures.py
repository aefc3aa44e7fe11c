"""The run store's campaign figures (cases_run_store.MEASURES), each at a smaller size than bench/reliability.py
measures them."""

from __future__ import annotations

from cases_run_store import EDITS, concurrent_start_races_accepted, mixed_resume_accepted, resume_equal_after_kill


def test_a_run_killed_in_each_step_resumes_to_the_uninterrupted_result(tmp_path):
    assert resume_equal_after_kill(tmp_path, latency_ms=40, iterations=1) is True


def test_no_resume_with_changed_inputs_is_accepted(tmp_path):
    assert len(EDITS) >= 5
    assert mixed_resume_accepted(tmp_path) == 0


def test_two_simultaneous_starts_with_different_configs_never_both_win(tmp_path):
    assert concurrent_start_races_accepted(tmp_path, races=6) == 0
