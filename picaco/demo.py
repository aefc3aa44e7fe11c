"""The offline demo: optimize on the simulated value world, then compare the seed instruction (Q+IF)
with the optimized one on held-out prompts, by the judge and by the world's ground truth.

Writes `artifacts/demo/report.md` and `artifacts/demo/plot.png`. A second run makes 0 backend calls:
every call is answered by the cache.
"""

from __future__ import annotations

import time
from pathlib import Path

from picaco.base.config import RunConfig
from picaco.base.errors import ConfigError
from picaco.io import atomic_write_bytes, atomic_write_text
from picaco.llm.calllog import paid_calls, read_call_log, usage_by_role
from picaco.llm.client import LLMClient
from picaco.method.context import RunContext
from picaco.method.held_out import judge_on_held_out
from picaco.method.result import HistoryRow, OptimizeResult
from picaco.method.run import RunStore, held_out_prompts, load_composition_for, optimize
from picaco.sim.world import conformity, expected_conformity, optimum
from picaco.stats import fmt_interval


def provider_calls(log_path: Path) -> int:
    """Paid (provider) calls recorded in a call log."""
    return paid_calls(read_call_log(log_path))


def calls_by_role(log_path: Path, skip_lines: int = 0) -> dict[str, dict[str, int]]:
    """Per role: paid calls, client requests, prompt and completion tokens, samples drawn."""
    return usage_by_role(read_call_log(log_path)[skip_lines:])


async def compare_on_held_out(config: RunConfig, instructions: dict[str, str], count: int) -> dict[str, dict]:
    """Judge the responses of each instruction on held-out prompts with the E-step protocol."""
    noisy = RunStore(config.run_dir).load_noisy()
    assert noisy is not None  # called after optimize(), which made the noisy pool
    prompts = held_out_prompts(config, count)
    client_cfg = config.client.model_copy(update={"call_log_path": config.client.call_log_path
                                                  or config.run_dir / "calls.jsonl"})
    async with LLMClient(client_cfg) as client:
        ctx = RunContext(config=config, composition=load_composition_for(config), prompts=prompts, client=client)
        scores = await judge_on_held_out(ctx, instructions, await ctx.embed(noisy.observation))
        return {name: s.model_dump(exclude={"per_prompt"}) for name, s in scores.items()}


def ground_truth(config: RunConfig, instructions: dict[str, str]) -> dict:
    """The world's exact expected conformity (no sampling), and its optimum under the word limit."""
    values = [v.name for v in load_composition_for(config).values]
    best = optimum(values, config.picaco.instruction_length)
    return {
        "per_instruction": {name: {"conformity": conformity(text, values),
                                   "per_value": expected_conformity(text, values)}
                            for name, text in instructions.items()},
        "optimum": best.value,
        "optimum_instruction": best.instruction,
    }


def write_plot(path: Path, history: list[HistoryRow], judged: dict[str, dict], truth: dict) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    ts = [h.t for h in history]
    ax1.plot(ts, [h.tc for h in history], marker="o")
    ax1.set_xlabel("iteration t")
    ax1.set_ylabel("TC_e of e^t (Eq. 4)")
    ax1.set_title("TC_e per iteration")
    ax1.grid(alpha=0.3)
    values = list(judged["seed"]["value_means"])
    x = range(len(values))
    width = 0.38
    for k, (name, color) in enumerate((("seed", "#999999"), ("optimized", "#1f77b4"))):
        ys = [judged[name]["value_means"][v] or 0.0 for v in values]
        ax2.bar([i + (k - 0.5) * width for i in x], ys, width, label=f"{name} (judge)", color=color)
        gt = truth["per_instruction"][name]["per_value"]
        ax2.scatter([i + (k - 0.5) * width for i in x], [gt[v] for v in values], color="black", marker="_", s=200,
                    zorder=3, label="ground truth" if k == 1 else None)
    ax2.set_xticks(list(x))
    ax2.set_xticklabels(values, rotation=30, ha="right")
    ax2.set_ylim(1, 5.2)
    ax2.set_ylabel("score (1-5)")
    ax2.set_title("Per-value scores on held-out prompts")
    ax2.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def report_markdown(config: RunConfig, result: OptimizeResult, judged: dict, truth: dict, figures: dict) -> str:
    values = list(judged["seed"]["value_means"])
    fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    lines = [
        "# picaco demo: PICACO on the simulated value world", "",
        f"Composition **{config.composition}**; N={config.picaco.n_prompts}, M1={config.picaco.m1}, "
        f"M2={config.picaco.m2}, T={config.picaco.iterations}; held-out prompts: {figures['held_out_prompts']}.",
        "", "## Seed (Q+IF) vs optimized, on held-out prompts", "",
        "| value | seed: judge | optimized: judge | seed: truth | optimized: truth |", "|---|---|---|---|---|"]
    for v in values:
        lines.append(f"| {v} | {fmt(judged['seed']['value_means'][v])} | {fmt(judged['optimized']['value_means'][v])} | "
                     f"{truth['per_instruction']['seed']['per_value'][v]:.3f} | "
                     f"{truth['per_instruction']['optimized']['per_value'][v]:.3f} |")
    lines += [
        f"| **mean** | {fmt(judged['seed']['conformity'])} | {fmt(judged['optimized']['conformity'])} | "
        f"{truth['per_instruction']['seed']['conformity']:.3f} | {truth['per_instruction']['optimized']['conformity']:.3f} |",
        "", f"The world's optimum under {config.picaco.instruction_length} words: **{truth['optimum']:.3f}**; "
            f"the optimized instruction reaches {figures['optimality_ratio']:.1%} of it "
            f"(the seed {figures['seed_gt_conformity'] / truth['optimum']:.1%}).",
        f"Optimized minus seed (judge conformity, paired by held-out prompt): "
        f"{fmt_interval(figures['held_out_difference'], 3)} (mean [bootstrap 95% interval]).",
        f"Judge replies missing after retries: seed {judged['seed']['missing']}, optimized {judged['optimized']['missing']}.",
        "", "## Optimized meta-instruction", "", "> " + result.best_instruction.replace("\n", "\n> "), "",
        "## TC_e per iteration", "", "| t | TC_e |", "|---|---|"]
    lines += [f"| {h.t} | {h.tc:.4f} |" for h in result.history]
    lines += ["", "## Cost of this invocation", "", f"Backend calls: {figures['calls_this_run']} "
              f"(a second run makes 0). Wall time {figures['demo_wall_s']:.1f} s.", "", "![plot](plot.png)", ""]
    return "\n".join(lines)


def run_demo(config: RunConfig, out_dir: Path = Path("artifacts/demo"), held_out: int = 20, on_event=None) -> dict:
    t0 = time.perf_counter()
    log_path = config.client.call_log_path or config.run_dir / "calls.jsonl"
    before = provider_calls(log_path)
    if held_out < 1:
        raise ConfigError("the demo compares on held-out prompts: --held-out must be at least 1")
    # the run's final report makes the held-out comparison (picaco/method/held_out.py) on `held_out` prompts
    config = config.model_copy(update={"picaco": config.picaco.model_copy(update={"held_out": held_out})})
    result = optimize(config, on_event=on_event)
    seed_instruction = load_composition_for(config).seed_instruction
    instructions = {"seed": seed_instruction, "optimized": result.best_instruction}
    judged = result.held_out
    assert judged is not None  # held_out >= 1: the final report made the comparison
    truth = ground_truth(config, instructions)
    figures = {
        "held_out_prompts": held_out,
        "calls_this_run": provider_calls(log_path) - before,
        "optimized_gt_conformity": truth["per_instruction"]["optimized"]["conformity"],
        "seed_gt_conformity": truth["per_instruction"]["seed"]["conformity"],
        "optimum": truth["optimum"],
        "optimized_judge_conformity": judged["optimized"]["conformity"],
        "seed_judge_conformity": judged["seed"]["conformity"],
        "held_out_difference": judged.get("difference"),  # optimized minus seed, paired by prompt, with its interval
    }
    figures["optimality_ratio"] = figures["optimized_gt_conformity"] / truth["optimum"]
    figures["demo_wall_s"] = time.perf_counter() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    write_plot(out_dir / "plot.png", result.history, judged, truth)
    atomic_write_text(out_dir / "report.md", report_markdown(config, result, judged, truth, figures))
    return {"result": result, "judged": judged, "truth": truth, "figures": figures,
            "report": str(out_dir / "report.md"), "plot": str(out_dir / "plot.png")}


__all__ = ["run_demo", "provider_calls", "calls_by_role", "compare_on_held_out", "ground_truth", "RunStore"]
