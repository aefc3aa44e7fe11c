"""Operations benchmark: Prefect's overhead on the pipeline, Dask scale-out, crash-resume and rerun costs.
Prints each figure and a final JSON line.

    .venv/bin/python bench/ops.py [--reps 3] [--skip-dask] [--skip-resume] [--keep]

A private Prefect server (ops/prefect_local.py) serves every Prefect run here; each measured run is a
fresh subprocess with its own cold cache and run folder, on configs/pipeline_demo.yaml (in-process
simulator, local sentence-transformers embeddings).

1. Overhead. The pipeline (collect -> noisy pool -> optimize -> evaluate) as a Prefect flow, and the same
   stages as plain function calls, one after the other, `reps` times (order alternating).
   prefect_overhead_share: the time of a Prefect run spent outside its task runs' bodies, i.e. flow and
   task orchestration and server round trips (1 - sum of the task runs' run times from the API / the
   flow call's wall time; flow-body work such as reading configs counts as overhead too). Median over reps.
   Goal: <= 10 %. Two cross-checks: prefect_overhead_share_ab = median over reps of (Prefect wall - plain
   wall) / Prefect wall, which also catches Prefect slowing the work inside tasks but swings by tens of
   percent on a shared machine; prefect_cpu_share = (CPU seconds of the Prefect run, its server's
   included - those of the plain run) / the former, which the machine's load moves far less.
2. Dask. The pipeline's optimization with the E-step split into 4 shards on a local Dask cluster of 2
   worker processes, against the single-process run: the same instructions, pools and scores
   (dask_equal), TC_e equal up to float noise (the embedding model's floats depend a little on how
   texts are batched; dask_max_tc_diff).
3. Resume. The pipeline against `picaco sim-server` (a separate process whose request log counts every
   request it answered: the ground truth of paid calls). A clean run; then a run killed with SIGKILL
   once iteration 1 is on disk, run again, and run a third time (a scheduled rerun). resume_repeated_calls:
   provider calls the resumed run made for requests the crashed run had completed (call logs);
   resume_extra_calls: crashed + resumed - clean (server counts; includes requests in flight at the kill);
   rerun_calls: the third run's requests to the server.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ops import calllog  # noqa: E402
from ops.api import PrefectApi  # noqa: E402
from ops.prefect_local import LocalPrefect, start_process, stop  # noqa: E402

DEMO_CONFIG = ROOT / "configs" / "pipeline_demo.yaml"


def derived_config(work: Path, *, providers: dict | None = None, models: dict | None = None) -> Path:
    raw = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    raw["runs_dir"] = str(work / "runs")
    raw["client"]["cache_dir"] = str(work / "cache")
    if providers is not None:
        raw["client"]["providers"] = providers
    if models is not None:
        raw["models"].update(models)
    work.mkdir(parents=True, exist_ok=True)
    path = work / "run.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def stage_params(work: Path, config: Path) -> dict:
    return {"config_path": str(config), "data_config_path": str(ROOT / "configs" / "ops_data.yaml"),
            "datasets_out": str(work / "datasets"), "datasets_cache_dir": str(work / "hf-datasets"), "n_test": 8,
            "eval_config_path": str(ROOT / "configs" / "ops_eval.yaml")}


# -- the measured runs (each in its own subprocess) -------------------------------------------------------
def stage_prefect(params: dict) -> dict:
    from flows.pipeline import pipeline_flow

    t0 = time.perf_counter()
    state = pipeline_flow(**params, return_state=True)
    wall = time.perf_counter() - t0
    state.result()  # raises if the run failed
    return {"wall_s": wall, "flow_run_id": str(state.state_details.flow_run_id)}


def stage_plain(params: dict) -> dict:
    """The pipeline's stages as plain calls: what pipeline_flow does, without Prefect."""
    from datasets_prep.config import load_data_config, resolve_compositions
    from datasets_prep.demos import demonstration_queries
    from datasets_prep.pipeline import build_all, write_all
    from flows.pipeline import collected_config, pipeline_eval_config
    from picaco.config import load_run_config
    from picaco.eval.config import EvalConfig
    from picaco.eval.runner import evaluate
    from picaco.method.run import optimize

    t0 = time.perf_counter()
    marks = {}
    cfg = load_run_config(params["config_path"])
    data_cfg, base = load_data_config(params["data_config_path"])
    comps = resolve_compositions([cfg.composition], data_cfg, base_dir=base, n_x=cfg.picaco.n_prompts,
                                 n_test=params["n_test"], seed=cfg.seed)
    results = build_all(comps, {c.name: demonstration_queries(c.name) for c in comps},
                        cache_dir=params["datasets_cache_dir"])
    write_all(results, params["datasets_out"])
    datasets = {r.config.name: {"x": r.x.height, "test": r.test.height} for r in results}
    cfg = collected_config(cfg, datasets, params["datasets_out"])
    marks["collect"] = time.perf_counter() - t0
    optimize(cfg)
    marks["optimize"] = time.perf_counter() - t0 - sum(marks.values())
    eval_cfg = EvalConfig.model_validate(pipeline_eval_config(params["eval_config_path"], cfg, datasets,
                                                              params["datasets_out"]))
    evaluate(eval_cfg)
    marks["evaluate"] = time.perf_counter() - t0 - sum(marks.values())
    return {"wall_s": time.perf_counter() - t0, "stages_s": {k: round(v, 2) for k, v in marks.items()}}


def _cpu_s() -> float:
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def stage(kind: str, params: dict) -> dict:
    runners = {"prefect": stage_prefect, "plain": stage_plain}
    if kind not in runners:
        raise ValueError(f"unknown stage {kind!r}")
    cpu0 = _cpu_s()
    out = runners[kind](params)
    out["cpu_s"] = _cpu_s() - cpu0
    return out


def run_stage(kind: str, params: dict, env: dict, log: Path, timeout: float = 900) -> dict:
    proc = subprocess.run([sys.executable, __file__, "_stage", kind, json.dumps(params)], env=env, cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=open(log, "ab"), text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} run exited with {proc.returncode}; see {log}")
    return json.loads(lines[-1])


# -- 1. overhead ------------------------------------------------------------------------------------------
def task_time_share(api: PrefectApi, flow_run_id: str, wall_s: float) -> float:
    runs, wrappers = [flow_run_id], set()
    frontier = [flow_run_id]
    while frontier:  # the pipeline's subflows (and theirs)
        children = [r for fid in frontier for r in api.subflow_runs(fid)]
        runs += [r["id"] for r in children]
        # a subflow also shows as a task run of its parent, lasting as long as the subflow: not work
        wrappers |= {r["parent_task_run_id"] for r in children}
        frontier = [r["id"] for r in children]
    task_s = sum(t["total_run_time"] for t in api.task_runs(runs) if t["id"] not in wrappers)
    return 1.0 - task_s / wall_s


def _tree_cpu_s(managed) -> float:
    total = 0.0
    for p in managed.tree():
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return total


def bench_overhead(work: Path, env: dict, api: PrefectApi, reps: int, server) -> dict:
    walls: dict[str, list[float]] = {"prefect": [], "plain": []}
    cpus: dict[str, list[float]] = {"prefect": [], "plain": []}
    in_flow: list[float] = []
    for rep in range(reps):
        for kind in (("plain", "prefect") if rep % 2 == 0 else ("prefect", "plain")):
            d = work / f"overhead-{kind}-{rep}"
            server_cpu0 = _tree_cpu_s(server)
            out = run_stage(kind, stage_params(d, derived_config(d)), env, work / "stages.log")
            walls[kind].append(out["wall_s"])
            # the server serves nothing else meanwhile, so its CPU time is this run's
            cpus[kind].append(out["cpu_s"] + (_tree_cpu_s(server) - server_cpu0 if kind == "prefect" else 0.0))
            if kind == "prefect":
                in_flow.append(task_time_share(api, out["flow_run_id"], out["wall_s"]))
                out["stages_s"] = {"outside task runs": round(in_flow[-1] * out["wall_s"], 2)}
            print(f"  overhead rep {rep}: {kind:7s} {out['wall_s']:.2f} s wall, {cpus[kind][-1]:.2f} s CPU  "
                  f"{out['stages_s']}", flush=True)
    # Each rep's two runs are adjacent in time, so they share the machine's load more than runs far apart.
    pairs = [(p - q) / p for p, q in zip(walls["prefect"], walls["plain"])]
    cpu_p, cpu_q = statistics.median(cpus["prefect"]), statistics.median(cpus["plain"])
    return {"prefect_overhead_share": round(statistics.median(in_flow), 4),
            "prefect_overhead_share_by_rep": [round(x, 4) for x in in_flow],
            "prefect_overhead_share_ab": round(statistics.median(pairs), 4),
            "prefect_overhead_share_ab_by_rep": [round(x, 4) for x in pairs],
            "prefect_cpu_share": round((cpu_p - cpu_q) / cpu_p, 4),
            "prefect_wall_s": [round(x, 2) for x in walls["prefect"]],
            "plain_wall_s": [round(x, 2) for x in walls["plain"]],
            "prefect_cpu_s": [round(x, 2) for x in cpus["prefect"]], "plain_cpu_s": [round(x, 2) for x in cpus["plain"]]}


# -- 2. Dask ----------------------------------------------------------------------------------------------
def _iteration_states(run_dir: Path) -> list[dict]:
    out = []
    for p in sorted(run_dir.glob("iter_[0-9][0-9][0-9].json")):
        s = json.loads(p.read_text())
        s.pop("usage_by_role")
        out.append(s)
    return out


def _split_floats(x, path="", floats=None):
    """Structure with every float replaced by a placeholder, and the floats by path."""
    floats = {} if floats is None else floats
    if isinstance(x, float):
        floats[path] = x
        return "<float>", floats
    if isinstance(x, dict):
        return {k: _split_floats(v, f"{path}.{k}", floats)[0] for k, v in x.items()}, floats
    if isinstance(x, list):
        return [_split_floats(v, f"{path}[{i}]", floats)[0] for i, v in enumerate(x)], floats
    return x, floats


def compare_runs(a: Path, b: Path) -> dict:
    ra, rb = json.loads((a / "result.json").read_text()), json.loads((b / "result.json").read_text())
    sa, fa = _split_floats({"result": ra, "iterations": _iteration_states(a)})
    sb, fb = _split_floats({"result": rb, "iterations": _iteration_states(b)})
    same_shape = sa == sb and fa.keys() == fb.keys()
    diffs = [abs(fa[k] - fb[k]) / max(1.0, abs(fa[k])) for k in fa] if same_shape else [float("inf")]
    return {"same_texts_and_selections": same_shape, "max_rel_float_diff": max(diffs, default=0.0),
            "same_instruction": ra["best_instruction"] == rb["best_instruction"],
            "same_value_scores": ra["value_scores"] == rb["value_scores"]}


def bench_dask(work: Path, env: dict) -> dict:
    times = {}
    dirs = {}
    for mode, extra in (("single", {}), ("dask", {"dask_workers": 2, "e_step_shards": 4})):
        d = work / f"dask-{mode}"
        params = {**stage_params(d, derived_config(d)), "evaluate": False, **extra}
        out = run_stage("prefect", params, env, work / "stages.log")
        times[mode] = round(out["wall_s"], 2)
        dirs[mode] = d / "runs" / "pipeline-demo"
        print(f"  dask: {mode:6s} {out['wall_s']:.2f} s", flush=True)
    cmp = compare_runs(dirs["single"], dirs["dask"])
    shards = len(list(dirs["dask"].glob("iter_*.estep.shard-*-of-4.json")))
    equal = cmp["same_texts_and_selections"] and cmp["max_rel_float_diff"] <= 1e-6
    return {"dask_equal": equal, "dask_max_tc_diff": cmp["max_rel_float_diff"], "dask_shard_files": shards,
            "dask_wall_s": times["dask"], "single_wall_s": times["single"], **{f"dask_{k}": v for k, v in cmp.items()}}


# -- 3. resume and rerun ------------------------------------------------------------------------------------
def _served(server) -> int:
    return sum(1 for e in server.request_log() if e.get("status") == 200 and e.get("kind") != "embed")


def bench_resume(work: Path, env: dict) -> dict:
    from picaco.sim.server import SimServerConfig, start_server_process

    server = start_server_process(SimServerConfig(world="values"))
    try:
        providers = {"vllm": {"kind": "openai", "base_url": server.openai_base_url}}
        models = {"target": "vllm/target", "judge": "vllm/judge"}
        clean_dir, crash_dir = work / "resume-clean", work / "resume-crash"
        clean = stage_params(clean_dir, derived_config(clean_dir, providers=providers, models=models))
        params = stage_params(crash_dir, derived_config(crash_dir, providers=providers, models=models))

        server.reset_log()
        run_stage("prefect", clean, env, work / "stages.log")
        served_clean = _served(server)

        server.reset_log()
        run_dir = crash_dir / "runs" / "pipeline-demo"
        m = start_process("crash-run", [sys.executable, __file__, "_stage", "prefect", json.dumps(params)], env,
                          work / "stages.log", cwd=ROOT)
        deadline = time.monotonic() + 600
        while not (run_dir / "iter_001.json").exists():
            if m.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the run to crash ended or stalled before iteration 1 was on disk")
            time.sleep(0.05)
        stop(m, hard=True)
        done_at_crash = sorted(p.name for p in run_dir.glob("iter_[0-9][0-9][0-9].json"))
        if (run_dir / "result.json").exists():
            raise RuntimeError("the run finished before it could be crashed")
        served_crash = _served(server)
        crash_lines = calllog.lines_since(crash_dir / "runs", {})

        server.reset_log()
        snap = calllog.snapshot(crash_dir / "runs")
        run_stage("prefect", params, env, work / "stages.log")
        served_resume = _served(server)
        resume_lines = calllog.lines_since(crash_dir / "runs", snap)

        server.reset_log()
        snap = calllog.snapshot(crash_dir / "runs")
        run_stage("prefect", params, env, work / "stages.log")
        served_rerun = _served(server)
        rerun_lines = calllog.lines_since(crash_dir / "runs", snap)
    finally:
        server.stop()
    same = compare_runs(clean_dir / "runs" / "pipeline-demo", run_dir)
    return {"resume_repeated_calls": calllog.repeated_calls(crash_lines, resume_lines),
            "resume_extra_calls": served_crash + served_resume - served_clean,
            "resume_served": {"clean": served_clean, "crashed": served_crash, "resumed": served_resume},
            "resume_complete_at_crash": done_at_crash,
            "resume_same_result_as_clean": same["same_texts_and_selections"] and same["max_rel_float_diff"] <= 1e-6,
            "rerun_calls": served_rerun, "rerun_logged_calls": calllog.paid_calls(rerun_lines)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="operations benchmark (prints a final JSON line)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--skip-dask", action="store_true")
    ap.add_argument("--skip-resume", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="picaco-bench-ops-"))
    out: dict = {}
    try:
        with LocalPrefect(home=work / "prefect-home") as lp:
            lp.start_server()
            env = lp.env
            with PrefectApi(lp.api_url) as api:
                print("1. overhead: pipeline as a Prefect flow vs the same stages as plain calls", flush=True)
                out.update(bench_overhead(work, env, api, args.reps, lp.server))
                print(f"   Prefect's share of the pipeline's wall time (orchestration outside task bodies): "
                      f"{out['prefect_overhead_share']:.1%}; goal <= 10%. Cross-checks: A/B wall "
                      f"{out['prefect_overhead_share_ab']:.1%} (by rep {out['prefect_overhead_share_ab_by_rep']}), "
                      f"CPU time with the server's {out['prefect_cpu_share']:.1%}", flush=True)
            if not args.skip_dask:
                print("2. Dask: E-step shards on a local cluster of 2 worker processes", flush=True)
                out.update(bench_dask(work, env))
                print(f"   same result as single-process: {out['dask_equal']} "
                      f"(max relative float difference {out['dask_max_tc_diff']:.1e})", flush=True)
            if not args.skip_resume:
                print("3. resume after SIGKILL mid-optimization, then a rerun, against picaco sim-server", flush=True)
                out.update(bench_resume(work, env))
                print(f"   repeated calls on resume: {out['resume_repeated_calls']}; extra provider requests "
                      f"(crashed + resumed - clean): {out['resume_extra_calls']}; rerun: {out['rerun_calls']}",
                      flush=True)
            out["stopped_pids"] = len(lp.close())
    finally:
        if args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_stage":
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        print(json.dumps(stage(sys.argv[2], json.loads(sys.argv[3]))), flush=True)
        sys.exit(0)
    sys.exit(main())
