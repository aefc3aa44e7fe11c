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
processes; `dask_address` uses a running scheduler; there the noisy pool, merge, M-step and report are
tasks on the workers too). The shards share the run store and picaco's cache (on one host its folder; on
several, the Postgres cache: docs/operations.md); the merge gives the same E-step state as a single process.

Started again with the same config (after a crash, or on a schedule), every finished step returns from
the run store and every repeated call from the cache: a rerun of a finished pipeline makes no paid call.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows._common import resolve_config
from flows.collect import collect_datasets_flow
from flows.evaluate import evaluate_flow
from flows.noisy_pool import noisy_pool_flow
from flows.optimize import optimize_steps
from picaco.base.config import RunConfig
from picaco.eval.config import parse_eval_config
from picaco.io import read_yaml_mapping

# X's file in a collected composition's folder (datasets_prep.build.write_build); test.parquet is beside it.
COLLECTED_FILE = "X.parquet"


optimize_steps_flow = flow(name="picaco-pipeline-optimize")(optimize_steps)


def _dask_runner(dask_workers: int, dask_address: str | None):
    # prefect_dask (and distributed) are an optional extra: imported only when Dask is asked for
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
    if dask_workers or dask_address:  # the noisy pool too goes to the workers: this process makes no LLM call
        dask_flow = optimize_steps_flow.with_options(task_runner=_dask_runner(dask_workers, dask_address))
        out["optimize"] = dask_flow(config=raw, e_step_shards=e_step_shards, noisy_pool=True)
    else:  # shards, if any, go to this flow's thread pool
        out["noisy_pool"] = noisy_pool_flow.fn(config=raw)
        out["optimize"] = optimize_steps(raw, e_step_shards)
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
