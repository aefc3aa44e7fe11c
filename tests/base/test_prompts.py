"""picaco.base.prompts: the task prompts X taken from a source's rows, with ids and one-line errors."""

from __future__ import annotations

import pytest

from picaco.base.errors import ConfigError
from picaco.base.prompts import TaskPrompt, prompt_id_of, select_task_prompts


def test_the_derived_id_ignores_case_and_spacing_but_not_words():
    assert prompt_id_of("How do I  bake bread?") == prompt_id_of(" how do i bake\nbread? ")
    assert prompt_id_of("How do I bake bread?") != prompt_id_of("How do I bake cake?")
    assert len(prompt_id_of("x")) == 16


def test_rows_from_offset_keep_given_ids_and_derive_missing_ones():
    rows = [{"prompt": "zero"}, {"prompt": "one", "prompt_id": "p1"}, {"prompt": "two"}, {"prompt": "three"}]
    got = select_task_prompts(rows, 1, 2, "x.jsonl", "n_prompts")
    assert got == [TaskPrompt(prompt_id="p1", text="one"), TaskPrompt(prompt_id=prompt_id_of("two"), text="two")]


def test_too_few_rows_names_the_setting_the_source_and_what_it_holds():
    with pytest.raises(ConfigError, match=r"n_prompts=5 but x.jsonl holds only 2 prompts after offset 1"):
        select_task_prompts([{"prompt": "a"}] * 3, 1, 5, "x.jsonl", "n_prompts")


@pytest.mark.parametrize("bad", [{"prompt": "  "}, {"prompt": None}, {"text": "no prompt field"}])
def test_an_empty_prompt_names_its_row_counting_from_one(bad):
    with pytest.raises(ConfigError, match=r"x.jsonl: row 2 \(counting from 1\) has an empty prompt"):
        select_task_prompts([{"prompt": "fine"}, bad], 0, 2, "x.jsonl", "n")


def test_two_rows_with_one_id_are_refused_with_both_row_numbers():
    with pytest.raises(ConfigError, match=r"rows 1 and 3 .* same prompt_id 'p'"):
        select_task_prompts([{"prompt": "a", "prompt_id": "p"}, {"prompt": "b"}, {"prompt": "c", "prompt_id": "p"}],
                            0, 3, "x.jsonl", "n")
    with pytest.raises(ConfigError, match=r"rows 1 and 2 .* same prompt text"):
        select_task_prompts([{"prompt": "Same text"}, {"prompt": "same  TEXT"}], 0, 2, "x.jsonl", "n")
