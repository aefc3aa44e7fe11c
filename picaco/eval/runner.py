"""Running an evaluation: plan the jobs (one per composition and method, plus the analyses), resolve
their inputs, run each job through the protocol, store it, and write the report.

    evaluate(config)            everything, in order; returns the paths and the summary rows
    plan_jobs(config)           the jobs (the Prefect flow runs one task per job)
    run_job(config, job)        one job; read back from the store when its fingerprint is unchanged
    resolve_picaco(...)         PICACO's instruction: result.json, optimize(run config), or literal

Inputs that need synchronous work (PICACO's optimization runs its own event loops; URIAL's file may
be fetched) are resolved before a job's async part starts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict

from picaco.base.config import RunConfig
from picaco.base.errors import ConfigError
from picaco.base.prompts import TaskPrompt
from picaco.config import load_run_config
from picaco.eval.config import METHOD_LABELS, EvalConfig, PicacoSource, PromptSet
from picaco.eval.inputs import (
    UrialPrompt,
    check_disjoint,
    load_jailbreak_template,
    load_prompt_set,
    load_urial_prompt,
    wrap_prompts,
)
from picaco.eval.judging import JudgeSetup, judge_setup
from picaco.eval.methods import METHODS, EvalContext
from picaco.eval.metrics import summarize
from picaco.eval.probe import probe_eval_judges
from picaco.eval.protocol import judge_records, sample_responses
from picaco.eval.report import write_outputs
from picaco.eval.store import EvalStore, MethodRun, fingerprint
from picaco.eval.texts import EVAL_TEMPLATE_VERSION
from picaco.io import atomic_write_text
from picaco.llm.client import LLMClient
from picaco.method.run import load_prompts, optimize
from picaco.templates import TEMPLATE_VERSION
from picaco.values import Composition, load_composition

log = logging.getLogger(__name__)

Event = Callable[..., None]

DEFAULT_OPTIMIZATION_SET = PromptSet(offset=0, count=50)
PAPER_OPRO_BUDGET = (10, 15)  # T, M2 (App. C.1)


class EvalJob(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    key: str
    group: Literal["main", "value_sets", "jailbreak", "optimizer_choice"]
    composition: str  # a name or a path, as load_composition takes it
    method: str
    label: str
    variant: str | None = None
    judged_values: Literal["paper", "composition"] = "paper"
    prompts_kind: Literal["test", "jailbreak"] = "test"
    # The group's PICACO source, set for every method of the group: PICACO's instruction for the
    # `picaco` job, and for all jobs the run whose X is OPRO's query set and precedes the test prompts.
    picaco: PicacoSource | None = None
    # value sets: a PICACO run config is optimized on this job's composition, under this run name
    picaco_composition_override: bool = False
    picaco_run_name: str | None = None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "x"


def _load_composition(ref: str):
    return load_composition(ref)


# -- planning ---------------------------------------------------------------------------------------------
def value_set_path(config: EvalConfig, n: int) -> Path:
    return config.eval_dir / "value_sets" / f"hh_{n}.yaml"


def write_value_set_compositions(config: EvalConfig) -> dict[int, Path]:
    """Fig. 3's compositions: the first n values of `order`, with HH Balance's demonstrations."""
    vs = config.analyses.value_sets
    out: dict[int, Path] = {}
    if vs is None:
        return out
    for n in vs.sizes:
        path = value_set_path(config, n)
        data = {"name": f"hh_set_{n}", "title": f"HH-{n}", "kind": "hh", "values": list(vs.order[:n]),
                "demonstrations_from": "hh_balance",
                "source": "picaco evaluation, growing HH value sets (Fig. 3); values in the order of "
                          "analyses.value_sets.order"}
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
        _load_composition(str(path))  # fail now, naming the file, if a value name is unknown
        out[n] = path
    return out


def plan_jobs(config: EvalConfig) -> list[EvalJob]:
    """Every job of the config, main comparison first. Writes the value-set composition files."""
    jobs: list[EvalJob] = []
    names: dict[str, str] = {}
    for ref in config.compositions:
        comp = _load_composition(ref)
        if comp.name in names.values():
            raise ConfigError(f"compositions: two entries are both named {comp.name!r}")
        names[ref] = comp.name
        for m in config.methods:
            jobs.append(EvalJob(key=f"main/{comp.name}/{m}", group="main", composition=ref, method=m,
                                label=METHOD_LABELS[m], judged_values=config.protocol.judged_values,
                                picaco=config.picaco_source(ref)))
    a = config.analyses
    if a.value_sets is not None:
        base_run_name = None
        if a.value_sets.picaco_run_config is not None:
            base_run_name = load_run_config(a.value_sets.picaco_run_config).run_name
        for n, path in write_value_set_compositions(config).items():
            src, override, run_name = a.value_sets.picaco.get(n), False, None
            if src is None and a.value_sets.picaco_run_config is not None:
                src = PicacoSource(run_config=a.value_sets.picaco_run_config)
                override, run_name = True, f"{base_run_name}-hh{n}"[:100]
            for m in ["q", *a.value_sets.methods]:
                jobs.append(EvalJob(key=f"value_sets/n{n}/{m}", group="value_sets", composition=str(path), method=m,
                                    label=METHOD_LABELS[m], variant=str(n), judged_values="composition", picaco=src,
                                    picaco_composition_override=override, picaco_run_name=run_name))
    if a.jailbreak is not None:
        jb = a.jailbreak
        comp = _load_composition(jb.composition)
        if comp.kind != "hh":
            raise ConfigError(f"analyses.jailbreak.composition: {jb.composition!r} is a Schwartz composition; the "
                              "jailbreak analysis reads Helpfulness and Toxicity, so it needs an HH composition")
        src = jb.picaco or config.picaco_source(jb.composition)
        for m in jb.methods:
            jobs.append(EvalJob(key=f"jailbreak/{comp.name}/{m}", group="jailbreak", composition=jb.composition,
                                method=m, label=METHOD_LABELS[m], judged_values="paper", prompts_kind="jailbreak",
                                picaco=src))
    if a.optimizer_choice is not None:
        for ref in config.compositions:
            for label, src in a.optimizer_choice.variants.items():
                jobs.append(EvalJob(key=f"optimizer_choice/{names[ref]}/{_slug(label)}", group="optimizer_choice",
                                    composition=ref, method="picaco", label=f"PICACO ({label})", variant=label,
                                    judged_values=config.protocol.judged_values, picaco=src))
    keys = [j.key for j in jobs]
    dup = next((k for k in keys if keys.count(k) > 1), None)
    if dup is not None:
        raise ConfigError(f"two evaluation jobs share the key {dup!r} (rename an optimizer_choice variant)")
    return jobs


# -- PICACO's instruction and X -----------------------------------------------------------------------------
@dataclass
class PicacoResolved:
    instruction: str
    run_config: RunConfig | None
    origin: str


def _run_config_beside(result_path: Path) -> RunConfig | None:
    stored = result_path.parent / "config.json"
    if not stored.exists():
        return None
    try:
        return RunConfig.model_validate(json.loads(stored.read_text(encoding="utf-8"))["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{stored}: not a picaco run config ({str(exc).splitlines()[0]})") from None


def _check_same_composition(run_composition: str, composition, where: str) -> None:
    try:
        theirs = _load_composition(run_composition)
    except ConfigError as exc:
        raise ConfigError(f"{where}: cannot load the run's composition to check it: {exc}") from None
    if theirs.digest != composition.digest:
        raise ConfigError(f"{where}: the run optimized composition {theirs.name!r}, but it is evaluated on "
                          f"{composition.name!r} (their values, seed or demonstrations differ)")


def picaco_run_config(source: PicacoSource, composition_ref: str | None = None,
                      run_name: str | None = None) -> RunConfig:
    if source.run_config is None:
        raise ConfigError("picaco.run_config is not set: there is no run to optimize")
    cfg = load_run_config(source.run_config, run_name=source.run_name or run_name)
    update: dict[str, Any] = {}
    if composition_ref is not None or source.composition is not None:
        update["composition"] = composition_ref or source.composition
    if source.optimizer is not None:
        update["models"] = cfg.models.model_copy(update={"optimizer": source.optimizer})
        if source.run_name is None:
            update["run_name"] = f"{cfg.run_name}-opt-{_slug(source.optimizer)}"[:100]
    return cfg.model_copy(update=update) if update else cfg


def resolve_picaco(source: PicacoSource, composition, *, composition_ref: str | None = None,
                   run_name: str | None = None, on_event: Event | None = None) -> PicacoResolved:
    if source.instruction is not None:
        return PicacoResolved(source.instruction.strip(), None, "config")
    if source.result is not None:
        p = Path(source.result)
        if not p.is_file():
            raise ConfigError(f"picaco.result: file {p} does not exist")
        try:
            result = json.loads(p.read_text(encoding="utf-8"))
            instruction = result["best_instruction"]
            run_comp = result["composition"]
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"picaco.result: {p} is not a PICACO result.json (needs best_instruction and "
                              "composition)") from None
        if not isinstance(instruction, str) or not instruction.strip():
            raise ConfigError(f"picaco.result: {p} has an empty best_instruction")
        _check_same_composition(run_comp, composition, f"picaco.result {p}")
        return PicacoResolved(instruction.strip(), _run_config_beside(p), str(p))

    cfg = picaco_run_config(source, composition_ref, run_name)
    _check_same_composition(cfg.composition, composition, f"picaco.run_config {source.run_config}")
    if on_event:
        on_event("optimize", run_name=cfg.run_name)
    result = optimize(cfg)
    return PicacoResolved(result.best_instruction.strip(), cfg, str(cfg.run_dir / "result.json"))


def _run_prompts(cfg: RunConfig) -> tuple[list[TaskPrompt], int | None]:
    after = cfg.prompts.offset + cfg.picaco.n_prompts if cfg.prompts.demo_family is not None else None
    return load_prompts(cfg), after


# -- one job ------------------------------------------------------------------------------------------------
@dataclass
class JobInputs:
    composition: Composition
    prompts: list[TaskPrompt]
    setup: JudgeSetup
    picaco: PicacoResolved | None
    optimization_prompts: list[TaskPrompt]
    opro_budget: tuple[int, int]
    urial_prompt: UrialPrompt | None


def _picaco_for(job: EvalJob, composition, on_event) -> PicacoResolved | None:
    if job.method != "picaco":
        return None
    if job.picaco is None:
        raise ConfigError(f"{job.key}: no PICACO instruction source")
    return resolve_picaco(job.picaco, composition, composition_ref=job.composition if job.picaco_composition_override
                          else None, run_name=job.picaco_run_name, on_event=on_event)


def _known_run_config(job: EvalJob) -> RunConfig | None:
    """PICACO's run config when the job's group names one, without optimizing: its X is OPRO's query set
    and the test set starts after it, for every method of the group alike."""
    src = job.picaco
    if src is None or src.instruction is not None:
        return None
    if src.result is not None:
        return _run_config_beside(Path(src.result)) if Path(src.result).is_file() else None
    return picaco_run_config(src, job.composition if job.picaco_composition_override else None,
                             job.picaco_run_name)


def resolve_inputs(config: EvalConfig, job: EvalJob, on_event: Event | None = None) -> JobInputs:
    comp = _load_composition(job.composition)
    picaco = _picaco_for(job, comp, on_event)
    run_cfg = picaco.run_config if picaco is not None else _known_run_config(job)
    # the optimization set: explicit, else PICACO's X, else the default demo slice
    run_x, after = _run_prompts(run_cfg) if run_cfg is not None else (None, None)
    if config.optimization_prompts is not None:
        opt_spec = config.optimization_prompts
        optimization = load_prompt_set(opt_spec, comp.kind, composition=comp.name, what="optimization_prompts")
        after = (opt_spec.offset or 0) + opt_spec.count if opt_spec.family is not None else None
        if run_x is not None and [p.text for p in run_x] != [p.text for p in optimization]:
            log.warning("%s: optimization_prompts differ from the PICACO run's X; OPRO is then not tuned on "
                        "PICACO's query set (App. C.3 uses the same set)", job.key)
    elif run_x is not None:
        optimization = run_x
    else:
        optimization = load_prompt_set(DEFAULT_OPTIMIZATION_SET, comp.kind, composition=comp.name,
                                       what="optimization_prompts")
        after = (DEFAULT_OPTIMIZATION_SET.offset or 0) + DEFAULT_OPTIMIZATION_SET.count
    jailbreak = config.analyses.jailbreak if job.prompts_kind == "jailbreak" else None
    if jailbreak is not None and jailbreak.prompts is not None:
        spec, what = jailbreak.prompts, "analyses.jailbreak.prompts"
    else:
        spec, what = config.prompts, "prompts"
    test = load_prompt_set(spec, comp.kind, composition=comp.name, default_offset=after or 0, what=what)
    check_disjoint(test, optimization, what)
    if run_x is not None:
        check_disjoint(test, run_x, f"{what} (against the PICACO run's prompts)")
    if jailbreak is not None:
        test = wrap_prompts(test, load_jailbreak_template(jailbreak.template))
    T = config.opro.iterations or (run_cfg.picaco.iterations if run_cfg else PAPER_OPRO_BUDGET[0])
    M2 = config.opro.per_iteration or (run_cfg.picaco.m2 if run_cfg else PAPER_OPRO_BUDGET[1])
    urial = None
    if job.method in ("urial", "urial_sum") and (comp.kind == "hh" or config.urial.demonstrations == "file"):
        urial = load_urial_prompt(config.urial.prompt)
    setup = judge_setup(comp, job.judged_values, config.protocol.relevance)
    if job.prompts_kind == "jailbreak":
        missing = [v for v in ("Helpfulness", "Non-Toxicity") if v not in setup.value_names]
        if missing:
            raise ConfigError(f"analyses.jailbreak: the judged values lack {missing}; use protocol.judged_values: paper")
    return JobInputs(comp, test, setup, picaco, optimization, (T, M2), urial)


def job_fingerprint(config: EvalConfig, job: EvalJob, inputs: JobInputs) -> str:

    m = config.models
    data = {
        "job": job.model_dump(mode="json", include={"key", "method", "judged_values", "prompts_kind", "variant"}),
        "composition": inputs.composition.digest,
        "prompts": [[p.prompt_id, p.text] for p in inputs.prompts],
        "models": {"target": m.target, "judge": m.judge},
        "protocol": config.protocol.model_dump(mode="json"),
        "sampling": config.sampling.model_dump(mode="json"),
        "seed": config.seed,
        "judge": [inputs.setup.value_names, inputs.setup.variant, inputs.setup.relevance],
        "templates": [TEMPLATE_VERSION, EVAL_TEMPLATE_VERSION],
    }
    if job.method == "picaco":
        data["instruction"] = inputs.picaco.instruction if inputs.picaco else None
    if job.method in ("urial", "urial_sum"):
        data["urial"] = [config.urial.demonstrations, inputs.urial_prompt.instruction if inputs.urial_prompt else None,
                         inputs.urial_prompt.demonstrations if inputs.urial_prompt else None]
    if job.method == "urial_sum":
        data["teacher"] = m.teacher_model
    if job.method == "opro":
        data["opro"] = [config.opro.model_dump(mode="json"), inputs.opro_budget, m.optimizer_model, m.scorer_model,
                        [[p.prompt_id, p.text] for p in inputs.optimization_prompts]]
    return fingerprint(data)


def _client_config(config: EvalConfig):
    cc = config.client
    if cc.call_log_path is None:
        cc = cc.model_copy(update={"call_log_path": config.eval_dir / "calls.jsonl"})
    return cc


async def _run_async(config: EvalConfig, job: EvalJob, inputs: JobInputs, progress) -> tuple[dict, list, dict]:

    async with LLMClient(_client_config(config)) as client:
        ctx = EvalContext(config=config, composition=inputs.composition, client=client,
                          picaco_instruction=inputs.picaco.instruction if inputs.picaco else None,
                          optimization_prompts=inputs.optimization_prompts, urial_prompt=inputs.urial_prompt,
                          opro_budget=inputs.opro_budget)
        method = METHODS[job.method](ctx)
        info = await method.prepare()
        records = await sample_responses(method, inputs.prompts, progress)
        records = await judge_records(ctx, inputs.setup, inputs.prompts, records)
        return info, records, client.usage_by_role()


def run_job(config: EvalConfig, job: EvalJob, *, on_event: Event | None = None,
            progress: Callable[[int, int], None] | None = None) -> MethodRun:
    """Evaluate one job, or read it back when its stored fingerprint matches."""
    store = EvalStore(config.eval_dir)
    inputs = resolve_inputs(config, job, on_event)
    fp = job_fingerprint(config, job, inputs)
    done = store.load(job.key, fp)
    if done is not None:
        if on_event:
            on_event("job_cached", key=job.key)
        return done
    if on_event:
        on_event("job_start", key=job.key, label=job.label, total=len(inputs.prompts) * config.protocol.buckets)
        if progress is None:
            def progress(done: int, total: int) -> None:
                on_event("progress", key=job.key, done=done, total=total)
    t0 = time.perf_counter()
    info, records, usage = asyncio.run(_run_async(config, job, inputs, progress))
    wall = time.perf_counter() - t0
    if inputs.picaco is not None and job.method == "picaco":
        info = {**info, "origin": inputs.picaco.origin}
    run = MethodRun(key=job.key, group=job.group, composition=inputs.composition.name,
                    composition_title=inputs.composition.title, method=job.method, label=job.label,
                    variant=job.variant, fingerprint=fp, value_names=inputs.setup.value_names,
                    intended_values=inputs.composition.value_names,
                    relevance=inputs.setup.relevance, prompts={p.prompt_id: p.text for p in inputs.prompts},
                    info=info, responses=records,
                    summary=summarize(records, inputs.setup.value_names, inputs.setup.relevance),
                    usage_by_role=usage, wall_s=round(wall, 3))
    store.save(run)
    if on_event:
        on_event("job_done", key=job.key, run=run)
    return run


def resolve_picaco_sources(config: EvalConfig, on_event: Event | None = None) -> dict[str, str]:
    """Run (or resume) every PICACO optimization the config asks for, before the jobs: the flow shows
    it as its own step. Returns job key -> instruction origin."""
    out = {}
    for job in plan_jobs(config):
        if job.method == "picaco" and job.picaco is not None and job.picaco.run_config is not None:
            comp = _load_composition(job.composition)
            res = resolve_picaco(job.picaco, comp, composition_ref=job.composition if job.picaco_composition_override
                                 else None, run_name=job.picaco_run_name, on_event=on_event)
            out[job.key] = res.origin
    return out


def load_runs(config: EvalConfig, jobs: list[EvalJob] | None = None) -> list[MethodRun]:
    """The stored runs of the planned jobs (whatever their fingerprint: call after the jobs ran)."""
    store = EvalStore(config.eval_dir)
    runs = []
    for job in jobs if jobs is not None else plan_jobs(config):
        run = store.load(job.key)
        if run is None:
            raise RuntimeError(f"evaluation job {job.key} has no stored result; run it first")
        runs.append(run)
    return runs


def check_judges(config: EvalConfig, jobs: list[EvalJob] | None = None, on_event: Event | None = None) -> list[dict]:
    """The judge calibration probe of every judge the jobs use (picaco/eval/probe.py), unless
    `judge_probe: false`; raises PicacoError when a judge's scale is inverted or flat."""
    if not config.judge_probe:
        return []
    if on_event:
        on_event("judge_probe")
    probes = probe_eval_judges(config, jobs if jobs is not None else plan_jobs(config), _client_config(config))
    return [p.model_dump(mode="json") for p in probes]


def evaluate(config: EvalConfig, on_event: Event | None = None) -> dict:
    """Probe the judges, run every job of the config (resuming from the store) and write the report.
    Returns a dict with the report path, the output files and one summary row per main-table method."""
    jobs = plan_jobs(config)
    check_judges(config, jobs, on_event)
    if on_event:
        on_event("plan", jobs=len(jobs))
    t0 = time.perf_counter()
    runs = [run_job(config, job, on_event=on_event) for job in jobs]
    outputs = write_outputs(config, runs)
    outputs["wall_s"] = round(time.perf_counter() - t0, 3)
    if on_event:
        on_event("report", path=outputs["report"])
    return outputs
