"""picaco on a real model: SmolLM2-135M-Instruct on the managed llama.cpp engine (extra 'local').

    .venv/bin/python bench/real_engine.py [--judge-n 100] [--held-out N] [--skip-judge] [--skip-local]
                                          [--skip-target] [--smoke]

Each part runs alone with the others skipped (e.g. `--skip-judge --skip-local` for the local_target part,
`--skip-local --skip-target` for the judge rates); `--smoke` shrinks every part (judge N 4, whole runs with
2 prompts, 1 iteration, 2 held-out prompts, 16-token replies) to check the script end to end in minutes:
its figures are not the benchmark's.

1. The engine's generation speed: sequential chat completions of up to 128 tokens, generated tokens / wall s.
2. Judge replies with and without the reply schema (bench/judge_schema.py's protocol: Fig. 9 judge, two
   values, one attempt, temperature 0) on the same N responses, which the real model wrote to N distinct
   prompt/sample pairs: `judge_usable_rate_schema`, `judge_usable_rate_free`.
3. configs/local.yaml (every LLM role on the engine) and configs/local_target.yaml (the target on the
   engine), each in a fresh cache: `picaco optimize` killed with -9 midway (in its first E-step, calls in
   flight), the engine checked gone, the run resumed to the end, then rerun (paid calls: 0), then run
   again under a new run name over the same cache, start to end without interruption. The engine's
   sampling is not repeatable by seed, so an uninterrupted run from a fresh cache draws other samples:
   `*_resume_equal` compares the killed-and-resumed run with the uninterrupted run over the samples the
   killed run and its resume drew (best instruction, its TC_e, per-value scores, the iteration history).
4. `real_target_gain`: configs/local_target.yaml's held-out conformity under the optimized instruction
   minus under the seed, paired by prompt, with its 95% bootstrap interval (picaco/method/held_out.py).

Prints each figure and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from judge_schema import usable_rate  # noqa: E402  (a sibling script, not a package)

from picaco.base.config import ClientConfig, ProviderSettings  # noqa: E402
from picaco.llm.calllog import read_call_log  # noqa: E402
from picaco.llm.client import LLMClient  # noqa: E402
from picaco.llm.local_engine import EngineSpec, LocalEngine, _pid_running  # noqa: E402
from picaco.llm.request import ChatRequest, scores_schema  # noqa: E402
from picaco.values import load_composition, load_demo_prompts  # noqa: E402

RESULT_FIELDS = ("best_instruction", "best_tc", "value_scores", "conformity", "history", "missing_judgements")


def say(name: str, value) -> None:
    print(f"{name} {value}", flush=True)


# -- 1 and 2: the engine alone ---------------------------------------------------------------------------------
async def tokens_per_s(engine: LocalEngine, work: Path, calls: int = 4) -> float:
    cfg = ClientConfig(cache_dir=work / "speed-cache", cache_mode="off",
                       providers={"e": ProviderSettings(kind="llamacpp", base_url=engine.base_url)})
    tokens, t0 = 0, time.perf_counter()
    async with LLMClient(cfg) as client:
        for i in range(calls):
            req = ChatRequest.of("e/smol", None, "Write a long story about a lighthouse keeper and a storm.",
                                 role="target", seed=100 + i, temperature=1.0, max_tokens=128)
            reply = await client.chat(req)
            tokens += reply.samples[0].usage.completion_tokens
    return tokens / (time.perf_counter() - t0)


async def real_responses(engine: LocalEngine, work: Path, n: int) -> list[tuple[str, str]]:
    """n (prompt, response) pairs the real model wrote: the bundled HH prompts, a sample index apart."""
    prompts = [r["prompt"] for r in load_demo_prompts("hh")]
    # the engine answers one request at a time: a few in flight, and time enough for the queue
    cfg = ClientConfig(cache_dir=work / "responses-cache",
                       providers={"e": ProviderSettings(kind="llamacpp", base_url=engine.base_url, max_concurrency=2,
                                                        timeout_s=600)})
    async with LLMClient(cfg) as client:
        async def one(i: int) -> tuple[str, str]:
            q = prompts[i % len(prompts)]
            req = ChatRequest.of("e/smol", None, q, role="target", seed=7, temperature=1.0, max_tokens=60)
            return q, (await client.chat(req, n=1, start=i // len(prompts))).text

        return list(await asyncio.gather(*(one(i) for i in range(n))))


async def engine_speed(work: Path) -> dict:
    with LocalEngine(EngineSpec(n_ctx=2048)) as engine:
        speed = await tokens_per_s(engine, work)
    say("engine_generated_tokens_per_s", f"{speed:.1f}")
    return {"engine_generated_tokens_per_s": round(speed, 1)}


async def judge_figures(work: Path, judge_n: int) -> dict:
    values = tuple(load_composition("helpfulness").values)[:2]
    out: dict = {}
    with LocalEngine(EngineSpec(n_ctx=2048)) as engine:
        if judge_n:
            items = await real_responses(engine, work, judge_n)
            schema = scores_schema([v.name for v in values])
            out["judge_usable_rate_schema"] = await usable_rate(engine, work / "judge-schema", values, items, schema)
            say("judge_usable_rate_schema", out["judge_usable_rate_schema"])
            out["judge_usable_rate_free"] = await usable_rate(engine, work / "judge-free", values, items, None)
            say("judge_usable_rate_free", out["judge_usable_rate_free"])
            out["judge_responses"] = len(items)
            out["judge_distinct_responses"] = len(set(items))
    return out


# -- 3 and 4: whole runs --------------------------------------------------------------------------------------
SMOKE_PICACO = {"n_prompts": 2, "iterations": 1, "held_out": 2}
SMOKE_SAMPLING = {"target_max_tokens": 16}


def prepared(config: Path, work: Path, run_name: str, sampling: dict | None = None, **picaco_fields) -> Path:
    raw = yaml.safe_load(config.read_text())
    raw["run_name"] = run_name
    raw["runs_dir"] = str(work / "runs")
    raw["client"]["cache_dir"] = str(work / "cache")
    raw["picaco"].update(picaco_fields)
    raw["sampling"] = {**(raw.get("sampling") or {}), **(sampling or {})}
    path = work / f"{run_name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def optimize_cmd(config: Path) -> list[str]:
    return [sys.executable, "-m", "picaco.cli", "optimize", "--config", str(config)]


def paid(log: Path) -> int:
    return sum(1 for x in read_call_log(log) if x.get("kind") == "call")


def kill_midway(config: Path, run_dir: Path, calls_into_estep: int = 2, timeout_s: float = 3600) -> dict:
    """Start the run; SIGKILL it once the noisy pool is saved and `calls_into_estep` more calls were paid."""
    log = run_dir / "calls.jsonl"
    child = subprocess.Popen(optimize_cmd(config), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    engines: set[int] = set()
    mark = None
    deadline = time.monotonic() + timeout_s
    while child.poll() is None and time.monotonic() < deadline:
        engines |= {c.pid for c in psutil.Process(child.pid).children(recursive=True)}
        if mark is None and (run_dir / "noisy.json").exists():
            mark = paid(log)
        if mark is not None and paid(log) >= mark + calls_into_estep:
            break
        time.sleep(0.05)
    if child.poll() is not None:
        raise SystemExit(f"{config.name}: the run ended before the kill: {child.stderr.read().decode()[-400:]}")
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stderr.close()
    gone_after = None
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10:
        if not any(_pid_running(p) for p in engines):
            gone_after = time.monotonic() - t0
            break
        time.sleep(0.1)
    return {"killed_after_calls": paid(log), "engine_pids": len(engines),
            "engine_gone_after_s": None if gone_after is None else round(gone_after, 1)}


def run_to_end(config: Path) -> tuple[int, float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(optimize_cmd(config), cwd=ROOT, capture_output=True, text=True)
    return proc.returncode, time.perf_counter() - t0, (proc.stderr.strip().splitlines() or [""])[-1]


def result_of(run_dir: Path) -> dict:
    data = json.loads((run_dir / "result.json").read_text())
    return {k: data.get(k) for k in RESULT_FIELDS}, data


def whole_run(label: str, config: Path, work: Path, sampling: dict | None = None, **picaco_fields) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    cfg = prepared(config, work, "killed", sampling, **picaco_fields)
    run_dir = work / "runs" / "killed"
    t0 = time.perf_counter()
    killed = kill_midway(cfg, run_dir)
    say(f"{label}_killed", killed)
    code, resume_s, last = run_to_end(cfg)
    completed = code == 0 and (run_dir / "result.json").exists()
    say(f"{label}_run_completed", f"{completed} (exit {code}; {last})")
    out = {f"{label}_run_completed": completed, f"{label}_kill": killed,
           f"{label}_wall_s": round(time.perf_counter() - t0, 1), f"{label}_paid_calls": paid(run_dir / "calls.jsonl")}
    if not completed:
        return out
    before = paid(run_dir / "calls.jsonl")
    code, rerun_s, _ = run_to_end(cfg)
    out[f"{label}_rerun_calls"] = paid(run_dir / "calls.jsonl") - before
    out[f"{label}_rerun_s"] = round(rerun_s, 1)
    say(f"{label}_rerun_calls", out[f"{label}_rerun_calls"])
    fresh_cfg = prepared(config, work, "uninterrupted", sampling, **picaco_fields)
    code, _, last = run_to_end(fresh_cfg)
    resumed, data = result_of(run_dir)
    if code != 0:
        say(f"{label}_uninterrupted_failed", last)
    fresh = result_of(work / "runs" / "uninterrupted")[0] if code == 0 else None
    out[f"{label}_uninterrupted_calls"] = paid(work / "runs" / "uninterrupted" / "calls.jsonl")
    out[f"{label}_resume_equal"] = resumed == fresh
    say(f"{label}_resume_equal", out[f"{label}_resume_equal"])
    usage = data.get("history") or []
    out[f"{label}_best_tc"] = data.get("best_tc")
    out[f"{label}_missing_judgements"] = data.get("missing_judgements")
    out[f"{label}_iterations"] = len(usage)
    out[f"{label}_held_out"] = data.get("held_out")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--judge-n", type=int, default=100)
    ap.add_argument("--held-out", type=int, default=None, help="override configs/local_target.yaml's held_out")
    ap.add_argument("--skip-judge", action="store_true")
    ap.add_argument("--skip-local", action="store_true")
    ap.add_argument("--skip-target", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script, measures nothing")
    args = ap.parse_args()
    smoke = {"sampling": SMOKE_SAMPLING, **SMOKE_PICACO} if args.smoke else {}
    judge_n = min(args.judge_n, 4) if args.smoke else args.judge_n
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="picaco-real-engine-") as d:
        work = Path(d)
        t0 = time.perf_counter()
        figures.update(asyncio.run(engine_speed(work)))  # alone: the other parts share the CPU
        # the three parts run side by side (each its own engine) so the whole fits in a working session
        parts = {}
        with ThreadPoolExecutor(max_workers=3) as pool:
            if not args.skip_judge:
                parts["judge"] = pool.submit(lambda: asyncio.run(judge_figures(work, judge_n)))
            if not args.skip_local:
                parts["local"] = pool.submit(whole_run, "local", ROOT / "configs" / "local.yaml", work / "local",
                                             **smoke)
            if not args.skip_target:
                extra = {**smoke, **({} if args.held_out is None else {"held_out": args.held_out})}
                parts["target"] = pool.submit(whole_run, "local_target", ROOT / "configs" / "local_target.yaml",
                                              work / "target", **extra)
        for name in ("judge", "local", "target"):
            if name in parts and parts[name].exception() is not None:
                figures[f"{name}_error"] = repr(parts[name].exception())  # said, and the other parts still shown
                del parts[name]
        for name in ("judge", "local"):
            if name in parts:
                figures.update(parts[name].result())
        figures["parts_side_by_side"] = sorted(parts)
        figures["bench_wall_s"] = round(time.perf_counter() - t0, 1)
        if "target" in parts:
            target = parts["target"].result()
            held = target.pop("local_target_held_out", None) or {}
            diff = held.get("difference") or {}
            figures.update(target)
            figures["real_target_gain"] = diff.get("mean")
            figures["real_target_gain_interval"] = [diff.get("lo"), diff.get("hi")]
            figures["real_target_held_out_prompts"] = held.get("prompts")
            say("real_target_gain", f"{figures['real_target_gain']} {figures['real_target_gain_interval']} on "
                f"{figures['real_target_held_out_prompts']} held-out prompts")
    local_held = figures.pop("local_held_out", None) or {}
    if local_held:
        figures["local_held_out_gain"] = (local_held.get("difference") or {}).get("mean")
    figures["smoke"] = args.smoke
    print(json.dumps(figures, default=str))


if __name__ == "__main__":
    main()
