"""Flow `picaco-pipeline`: collect datasets -> noisy pool -> optimize -> evaluate, one run config.

    from flows.pipeline import pipeline_flow
    pipeline_flow(config_path="configs/pipeline_demo.yaml", data_config_path="configs/ops_data.yaml")

Collect, noisy pool and evaluation run inline: the bodies of the `collect-datasets`, `picaco-noisy-pool`
and `picaco-evaluate` flows are called directly (`.fn`), so their tasks and artifacts are the pipeline
run's own. Not as subflows, because each flow run costs about a second here: Prefect 3.8.8 joins a flow
run's heartbeat thread at its end, and that thread sleeps in 1-second steps. The optimization runs inline
too, unless it goes to Dask: then it is the subflow `picaco-pipeline-optimize`, since a task runner is
chosen per flow. Per iteration an E-step and an M-step task, a markdown and a table artifact, and one
progress artifact moved along. Its E-step can be
split into shards (`e_step_shards`): each shard samples and judges its share of the prompts as its own
task, so a distributed task runner spreads them (`dask_workers` starts a local Dask cluster of worker
processes; `dask_address` uses a running scheduler). The shards share picaco's on-disk cache and run
store; the merge gives the same E-step state as a single process.

Started again with the same config (after a crash, or on a schedule), every finished step returns from
the run store and every repeated call from the cache: a rerun of a finished pipeline makes no paid call.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import (create_markdown_artifact, create_progress_artifact, create_table_artifact,
                               update_progress_artifact)
from prefect.cache_policies import NO_CACHE

from flows._common import artifact_key, resolve_config
from flows.collect import collect_datasets_flow
from flows.evaluate import evaluate_flow
from flows.noisy_pool import noisy_pool_flow
from picaco.base.config import RunConfig
from picaco.eval.config import parse_eval_config
from picaco.io import read_yaml_mapping
from picaco.method import run as runner
from tasks.optimize import e_step_task, final_report_task, m_step_task

# X's file in a collected composition's folder (datasets_prep.build.write_build); test.parquet is beside it.
COLLECTED_FILE = "X.parquet"


def _cfg(config: dict) -> RunConfig:
    return RunConfig.model_validate(config)


@task(name="e-step-shard", cache_policy=NO_CACHE, task_run_name="e-step-{t}-shard-{shard}-of-{n_shards}")
def e_step_shard_task(config: dict, t: int, shard: int, n_shards: int) -> dict:
    """Sampling and judging of prompts shard, shard+n, ... under e^(t-1): the unit a Dask worker runs."""
    result = runner.run_e_step_shard(_cfg(config), t, shard, n_shards)
    return {"t": t, "shard": shard, "prompts": len(result.fresh), "responses": result.tally.responses,
            "judged": result.tally.judged, "missing": result.tally.missing}


@task(name="e-step-merge", cache_policy=NO_CACHE, task_run_name="e-step-{t}-merge-{n_shards}")
def e_step_merge_task(config: dict, t: int, n_shards: int) -> dict:
    state = runner.merge_e_step_shards(_cfg(config), t, n_shards)
    return {"t": t, "responses": state.report.responses, "missing": state.report.missing,
            "conformity": state.report.conformity}


def iteration_table(cfg: RunConfig, t: int) -> list[dict]:
    """Rows of the per-iteration table artifact: every candidate scored in the M-step of iteration t."""
    state = runner.RunStore(cfg.run_dir).load_iteration(t)
    if state is None:
        raise RuntimeError(f"iteration {t} of run '{cfg.run_name}' has no saved state after its M-step")
    ranked = sorted(state.candidates, key=lambda c: (c.tc is None, -(c.tc or 0.0), c.born))
    return [{"rank": i + 1, "best": c.instruction == state.best.instruction, "born": c.born,
             "tc_e": None if c.tc is None else round(c.tc, 5),
             "aligned_term": None if c.aligned_term is None else round(c.aligned_term, 5),
             "noisy_term": None if c.noisy_term is None else round(c.noisy_term, 5),
             "instruction": c.instruction if len(c.instruction) <= 160 else c.instruction[:157] + "..."}
            for i, c in enumerate(ranked)]


def _optimize(config: dict, e_step_shards: int = 1) -> dict:
    cfg = _cfg(config)
    T = cfg.picaco.iterations
    runner.start_run(cfg)
    done = runner.RunStore(cfg.run_dir).last_complete_iteration()
    progress_id = create_progress_artifact(progress=100.0 * min(done, T) / T,
                                           key=artifact_key(cfg.run_name, "progress"),
                                           description=f"PICACO iterations done of {T}")
    for t in range(1, T + 1):
        if e_step_shards > 1:
            # submit() hands the shards to the flow's task runner (threads, or Dask worker processes).
            futures = [e_step_shard_task.submit(config, t, k, e_step_shards) for k in range(e_step_shards)]
            for f in futures:
                f.result()
            e_step_merge_task(config, t, e_step_shards)
        else:
            e_step_task(config, t)
        summary = m_step_task(config, t)
        create_markdown_artifact(summary["markdown"], key=artifact_key(cfg.run_name, "iteration", t),
                                 description=f"PICACO iteration {t}: TC_e {summary['best_tc']:.4f}")
        create_table_artifact(iteration_table(cfg, t), key=artifact_key(cfg.run_name, "iteration", t, "table"),
                              description=f"PICACO iteration {t}: candidates ranked by TC_e")
        update_progress_artifact(progress_id, progress=100.0 * t / T)
    result = final_report_task(config)
    create_markdown_artifact(runner.result_markdown(result), key=artifact_key(cfg.run_name, "result"),
                             description="PICACO optimized meta-instruction")
    return result


optimize_steps_flow = flow(name="picaco-pipeline-optimize")(_optimize)


def _dask_runner(dask_workers: int, dask_address: str | None):
    from prefect_dask import DaskTaskRunner

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    # One thread per process: the shards are CPU-bound in the simulator and in embedding.
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": dask_workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


def collected_config(cfg: RunConfig, datasets: dict, datasets_out: str) -> RunConfig:
    """The run config with X taken from the collected composition."""
    if cfg.composition not in datasets:
        raise ValueError(f"collect built {sorted(datasets)} but the run config's composition is {cfg.composition!r}")
    path = Path(datasets_out) / cfg.composition / COLLECTED_FILE
    return cfg.model_copy(update={"prompts": cfg.prompts.model_copy(
        update={"path": path, "demo_family": None, "offset": 0})})


@flow(name="picaco-pipeline")
def pipeline_flow(
    config_path: str = "configs/pipeline_demo.yaml",
    data_config_path: str | None = "configs/ops_data.yaml",
    collect: bool = True,
    datasets_out: str = "artifacts/datasets",
    datasets_cache_dir: str | None = None,
    n_test: int | None = None,
    evaluate: bool = True,
    eval_config_path: str = "configs/ops_eval.yaml",
    run_name: str | None = None,
    e_step_shards: int = 1,
    dask_workers: int = 0,
    dask_address: str | None = None,
) -> dict:
    """Collect (when `collect`) the run config's composition with N = picaco.n_prompts prompts and use them
    as X; build the noisy pool; optimize; evaluate (when `evaluate`). Returns the stage summaries."""
    if e_step_shards < 1 or dask_workers < 0:
        raise ValueError(f"e_step_shards must be >= 1 and dask_workers >= 0, got {e_step_shards} and {dask_workers}")
    if (dask_workers or dask_address) and e_step_shards == 1:
        e_step_shards = max(dask_workers, 2)  # a Dask runner with one shard would have nothing to spread
    cfg = resolve_config(config_path, None, run_name)
    out: dict = {"run_name": cfg.run_name}
    if collect:
        out["datasets"] = collect_datasets_flow.fn(compositions=[cfg.composition], config_path=data_config_path,
                                                   out=datasets_out, n_x=cfg.picaco.n_prompts, n_test=n_test,
                                                   seed=cfg.seed, cache_dir=datasets_cache_dir)
        cfg = collected_config(cfg, out["datasets"], datasets_out)
    raw = cfg.model_dump(mode="json")
    out["noisy_pool"] = noisy_pool_flow.fn(config=raw)
    if dask_workers or dask_address:
        dask_flow = optimize_steps_flow.with_options(task_runner=_dask_runner(dask_workers, dask_address))
        out["optimize"] = dask_flow(config=raw, e_step_shards=e_step_shards)
    else:  # shards, if any, go to this flow's thread pool
        out["optimize"] = _optimize(raw, e_step_shards)
    if evaluate:
        eval_cfg = pipeline_eval_config(eval_config_path, cfg, out.get("datasets"), datasets_out)
        out["evaluate"] = evaluate_flow.fn(config=eval_cfg)
    return out


def pipeline_eval_config(eval_config_path: str, cfg: RunConfig, datasets: dict | None, datasets_out: str) -> dict:
    """The evaluation config of the pipeline's last step: the file's methods and protocol, applied to this
    run's result, composition, cache and (when collected) held-out test prompts. Its outputs and call log
    go to <run_dir>/eval/, beside the run they evaluate."""
    raw = read_yaml_mapping(eval_config_path)
    raw.update({"name": cfg.run_name, "compositions": [cfg.composition],
                "picaco": {"result": str(cfg.run_dir / "result.json")},
                "client": cfg.client.model_dump(mode="json"), "out_dir": str(cfg.run_dir / "eval"), "seed": cfg.seed})
    if datasets is not None:
        folder = Path(datasets_out) / cfg.composition
        raw["prompts"] = {"path": str(folder / "test.parquet"), "offset": 0, "count": datasets[cfg.composition]["test"]}
        raw["optimization_prompts"] = {"path": str(folder / COLLECTED_FILE), "offset": 0,
                                       "count": datasets[cfg.composition]["x"]}
    return parse_eval_config(raw, where=str(eval_config_path)).model_dump(mode="json")
