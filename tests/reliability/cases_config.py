"""Campaign cases: run configs and the inputs they name (composition, prompts, models)."""

from __future__ import annotations

import json
from pathlib import Path

from reliability_campaign import Case, no_run_dir, nothing_half_written, picaco, small_run_config, write_yaml


def _no_run_dir_nor_calls(root: Path) -> str | None:
    """No run directory, and no call was made (the cache directory was never opened)."""
    if (root / "cache").exists():
        return "the cache directory exists: calls were made before the inputs were checked"
    return no_run_dir()(root)


def _config_is_a_directory(root: Path):
    (root / "run.yaml").mkdir()
    return picaco("optimize", "--config", str(root / "run.yaml"))


def _optimize(root: Path, **fields):
    return picaco("optimize", "--config", str(write_yaml(root / "run.yaml", small_run_config(root, **fields))))


def _with_picaco(**settings):
    return lambda root: _optimize(root, picaco=settings)


def _unknown_composition(root: Path):
    return _optimize(root, composition="nope")


def _bad_yaml(root: Path):
    (root / "run.yaml").write_text("run_name: r\npicaco: {iterations: 2\n")
    return picaco("optimize", "--config", str(root / "run.yaml"))


def _prompts_rows(root: Path, rows: list[dict], name: str = "x.jsonl"):
    path = root / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return _optimize(root, prompts={"demo_family": None, "path": str(path)})


def _no_prompt_column(root: Path):
    return _prompts_rows(root, [{"prompt_id": f"p{k}", "text": f"question {k}?"} for k in range(3)])


def _empty_prompt(root: Path):
    return _prompts_rows(root, [{"prompt": "Is honesty always right?"}, {"prompt": "  "}, {"prompt": "Why rules?"}])


def _duplicate_ids(root: Path):
    return _prompts_rows(root, [{"prompt_id": "p1", "prompt": "Is honesty always right?"},
                                {"prompt_id": "p2", "prompt": "Why keep rules?"},
                                {"prompt_id": "p1", "prompt": "What do I owe my parents?"}])


def _prompts_dir(root: Path):
    (root / "x.jsonl").mkdir()
    return _optimize(root, prompts={"demo_family": None, "path": str(root / "x.jsonl")})


def _bad_composition_file(root: Path):
    write_yaml(root / "mine.yaml", {"values": ["Benevolence", "Nonsense"], "demonstrations_from": "confucianism"})
    return _optimize(root, composition=str(root / "mine.yaml"))


def _missing_key(root: Path):
    return picaco("optimize", "--config", str(write_yaml(root / "run.yaml", small_run_config(
        root, models={"target": "openai/gpt-4o-mini"}))), env={"OPENAI_API_KEY": None})


def _no_step_state(root: Path) -> str | None:
    run_dir = root / "runs" / "r"
    # judge_probe.json is the record of the check every start makes first, not a step's state
    state = (sorted(p.name for p in run_dir.glob("*.json") if p.name not in ("config.json", "judge_probe.json"))
             if run_dir.is_dir() else [])
    return f"step state was written: {state}" if state else nothing_half_written(root)


CASES = [
    Case("C01", "config", "the config path is a directory", r"run\.yaml.*(is a directory|not a file)",
         "nothing", _config_is_a_directory, no_run_dir()),
    Case("C02", "config", "an unknown composition name", r"nope", "no run directory", _unknown_composition,
         no_run_dir()),
    Case("C03", "config", "a config that is not valid YAML (an unclosed brace)", r"run\.yaml is not valid YAML",
         "no run directory", _bad_yaml, no_run_dir()),
    Case("C04", "config", "an unknown field (picaco.iteration for iterations)",
         r"run\.yaml: field 'picaco\.iteration': Extra inputs", "no run directory",
         _with_picaco(iteration=2), no_run_dir()),
    Case("C05", "config", "a word where a number goes (m1: three)", r"field 'picaco\.m1'.*got three",
         "no run directory", _with_picaco(m1="three"), no_run_dir()),
    Case("C06", "config", "`iterations: true` (was taken as T=1)", r"field 'picaco\.iterations'.*integer, got true",
         "no run directory", _with_picaco(iterations=True), no_run_dir()),
    Case("C07", "config", "a number written as a string (seed: '3')", r"field 'seed'.*got '3' \(a string\)",
         "no run directory", lambda root: _optimize(root, seed="3"), no_run_dir()),
    Case("C08", "config", "a negative size (n_prompts: -1)", r"field 'picaco\.n_prompts'.*greater than or equal to 1",
         "no run directory", _with_picaco(n_prompts=-1), no_run_dir()),
    Case("C09", "config", "a zero size (m2: 0)", r"field 'picaco\.m2'.*greater than or equal to 1",
         "no run directory", _with_picaco(m2=0), no_run_dir()),
    Case("C10", "config", "m2 larger than noisy_samples", r"m2 \(5\) cannot exceed noisy_samples \(2\)",
         "no run directory", _with_picaco(m2=5), no_run_dir()),
    Case("C11", "config", "a judge model without a slash (the noisy pool was computed before it failed)",
         r"models\.judge: model 'gpt-4o' is not of the form 'provider/model'", "no run directory, no call made",
         lambda root: _optimize(root, models={"judge": "gpt-4o"}), _no_run_dir_nor_calls),
    Case("C12", "config", "an unknown provider", r"models\.target: unknown provider 'nope'",
         "no run directory, no call made", lambda root: _optimize(root, models={"target": "nope/x"}),
         _no_run_dir_nor_calls),
    Case("C13", "config", "an OpenAI target without OPENAI_API_KEY (nothing cached)", r"OPENAI_API_KEY is not set",
         "no step state: the same config resumes once the key is exported (a cached rerun needs no key)",
         _missing_key, _no_step_state),
    Case("C14", "prompts", "a prompts file that does not exist", r"prompts file .*absent\.jsonl does not exist",
         "no run directory", lambda root: _optimize(root, prompts={"demo_family": None,
                                                                   "path": str(root / "absent.jsonl")}),
         no_run_dir()),
    Case("C15", "prompts", "a prompts file without a prompt column", r"x\.jsonl has no 'prompt' column",
         "no run directory", _no_prompt_column, no_run_dir()),
    Case("C16", "prompts", "an empty prompt", r"x\.jsonl: row 2 .*has an empty prompt", "no run directory",
         _empty_prompt, no_run_dir()),
    Case("C17", "prompts", "two prompts with the same prompt_id (their pools were merged)",
         r"x\.jsonl: rows 1 and 3 .*same prompt_id 'p1'", "no run directory", _duplicate_ids, no_run_dir()),
    Case("C18", "prompts", "the prompts path is a directory", r"prompts file .*x\.jsonl is a directory",
         "no run directory", _prompts_dir, no_run_dir()),
    Case("C19", "composition", "a composition file naming an unknown value",
         r"mine\.yaml: field 'values\[1\]': unknown value 'Nonsense'", "no run directory", _bad_composition_file,
         no_run_dir()),
]
