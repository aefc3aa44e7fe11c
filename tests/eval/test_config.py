"""Bad evaluation configs fail with one line naming the field."""

from __future__ import annotations

import pytest
from eval_helpers import eval_raw

from picaco.base.errors import ConfigError
from picaco.eval.config import load_eval_config, parse_eval_config
from picaco.eval.runner import plan_jobs, run_job


@pytest.mark.parametrize("over,match", [
    ({"methods": ["q", "nope"]}, "field 'methods.1'"),
    ({"methods": ["q", "q"]}, "methods: duplicates"),
    ({"methods": ["picaco"]}, "picaco: method 'picaco' needs a source for composition 'hh_balance'"),
    ({"picaco": {"result": "a.json", "instruction": "x"}}, "exactly one of 'result', 'run_config' or 'instruction'"),
    ({"picaco": {"instruction": "x", "optimizer": "sim/x"}}, "only apply together with 'run_config'"),
    ({"prompts": {"demo_family": "hh", "path": "x.csv"}}, "field 'prompts'"),
    ({"protocol": {"buckets": 0}}, "field 'protocol.buckets'"),
    ({"analyses": {"value_sets": {"sizes": [2, 9]}}}, "size 9 needs that many values"),
    ({"analyses": {"value_sets": {"methods": ["q", "q_if"]}}}, "'q' is the base"),
    ({"analyses": {"value_sets": {"methods": ["picaco"]}}}, "picaco needs a source for sizes"),
    ({"unknown_field": 1}, "field 'unknown_field'"),
])
def test_bad_fields(tmp_path, over, match):
    raw = eval_raw(tmp_path, "none")
    raw.update(over)
    with pytest.raises(ConfigError, match=match) as e:
        parse_eval_config(raw)
    assert "\n" not in str(e.value)


def test_yaml_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_eval_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_eval_config(bad)
    ok = tmp_path / "ok.yaml"
    ok.write_text("name: x\ncompositions: confucianism\nmethods: [q]\n")
    cfg = load_eval_config(ok, name="y")
    assert cfg.name == "y" and cfg.compositions == ["confucianism"]


def test_overlap_with_the_optimization_set_is_refused(tape, tmp_path):
    _, key = tape
    cfg = parse_eval_config(eval_raw(tmp_path, key, prompts={"offset": 1, "count": 2},
                                     optimization_prompts={"offset": 0, "count": 2}))
    with pytest.raises(ConfigError, match="1 test prompts are also in the optimization set"):
        run_job(cfg, plan_jobs(cfg)[0])


def test_too_few_prompts_and_missing_urial_file(tape, tmp_path):
    _, key = tape
    cfg = parse_eval_config(eval_raw(tmp_path, key, prompts={"count": 500}))
    with pytest.raises(ConfigError, match=r"prompts.count=500 but bundled demo prompts \(hh\) holds only"):
        run_job(cfg, plan_jobs(cfg)[0])
    cfg = parse_eval_config(eval_raw(tmp_path, key, methods=["urial"], urial={"prompt": str(tmp_path / "no.txt")}))
    with pytest.raises(ConfigError, match="urial.prompt: file .* does not exist"):
        run_job(cfg, plan_jobs(cfg)[0])
    notes = tmp_path / "notes.txt"
    notes.write_text("just some text\n")
    cfg = parse_eval_config(eval_raw(tmp_path, key, methods=["urial"], urial={"prompt": str(notes)}))
    with pytest.raises(ConfigError, match="no '# Query:' block found"):
        run_job(cfg, plan_jobs(cfg)[0])


def test_jailbreak_needs_an_hh_composition(tmp_path):
    cfg = parse_eval_config(eval_raw(tmp_path, "none", analyses={"jailbreak": {"composition": "confucianism",
                                                                               "methods": ["q_if"]}}))
    with pytest.raises(ConfigError, match="needs an HH composition"):
        plan_jobs(cfg)


def test_jailbreak_template_must_have_the_query_slot(tape, tmp_path):
    _, key = tape
    tpl = tmp_path / "wrap.txt"
    tpl.write_text("no slot here\n")
    cfg = parse_eval_config(eval_raw(tmp_path, key, methods=[], analyses={"jailbreak": {
        "template": str(tpl), "methods": ["q_if"]}}) | {"methods": ["q"]})
    job = next(j for j in plan_jobs(cfg) if j.group == "jailbreak")
    with pytest.raises(ConfigError, match=r"must have exactly the slot \{query\}"):
        run_job(cfg, job)


def test_prompt_path_per_composition(tape, tmp_path):
    _, key = tape
    for comp in ("helpfulness", "harmlessness"):
        (tmp_path / comp).mkdir()
        (tmp_path / comp / "test.csv").write_text(f"prompt_id,prompt\n{comp}-1,First {comp} prompt\n"
                                                  f"{comp}-2,Second {comp} prompt\n")
    cfg = parse_eval_config(eval_raw(tmp_path, key, compositions=["helpfulness", "harmlessness"],
                                     prompts={"path": str(tmp_path / "{composition}" / "test.csv"), "count": 1,
                                              "offset": 1}))
    runs = {j.composition: run_job(cfg, j) for j in plan_jobs(cfg)}
    assert runs["helpfulness"].prompts == {"helpfulness-2": "Second helpfulness prompt"}
    assert runs["harmlessness"].prompts == {"harmlessness-2": "Second harmlessness prompt"}


def test_all_methods_are_the_method_labels_in_table_1_order():
    from picaco.eval.config import ALL_METHODS, METHOD_LABELS

    assert ALL_METHODS == tuple(METHOD_LABELS)
