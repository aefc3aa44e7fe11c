"""`picaco pareto`: the Pareto front of a finished run's candidates, per value, on held-out prompts
(picaco's extension; docs/method.md, "Pareto front").

Every candidate an M-step scored keeps its per-value scores on that iteration's pools
(picaco/method/front.py). The candidates no other dominates on those in-sample scores, with the run's
e^0 and e^T, answer the held-out prompts under the run's held-out protocol (picaco/method/held_out.py:
the same buckets of demonstrations and sample indices for every instruction, so e^0 and e^T come from the
cache of the run's final report), and are judged; the non-dominated set on those held-out means is the
front. Weights pick one instruction from it. Writes pareto.json, pareto.md and pareto.png (two values).
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from picaco.base.errors import ConfigError, RunStateError
from picaco.deploy.run_record import load_finished_run
from picaco.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from picaco.llm.client import LLMClient
from picaco.method.context import RunContext
from picaco.method.front import non_dominated, pick
from picaco.method.held_out import judge_on_held_out
from picaco.method.inputs import held_out_prompts, load_composition_for, prompt_source
from picaco.method.store import RunStore

MAX_POINTS = 16


def _candidates(store: RunStore, upto: int) -> dict[str, dict]:
    """Each distinct instruction with its latest in-sample scoring (TC_e, per-value scores, iteration)."""
    out: dict[str, dict] = {}
    for state in store.iterations(upto=upto):
        for c in state.candidates:
            if c.value_scores:
                out[c.instruction] = {"born": c.born, "tc": c.tc, "scored_in": state.t, "in_sample": c.value_scores}
    return out


def _names(requested: list[str] | None, composition) -> list[str]:
    names = [v.name for v in composition.values]
    if not requested:
        return names
    unknown = [v for v in requested if v not in names]
    if unknown:
        raise ConfigError(f"--values: {', '.join(unknown)} not in the run's composition ({', '.join(names)})")
    if len(set(requested)) != len(requested) or len(requested) < 2:
        raise ConfigError("--values needs at least two distinct values of the composition")
    return requested


async def _judge_points(config, composition, instructions: dict[str, str], count: int) -> dict:
    noisy = RunStore(config.run_dir).load_noisy()
    if noisy is None:
        raise RunStateError(f"{config.run_dir}: the run has no noisy pool (noisy.json); run it to the end first")
    client_cfg = config.client.model_copy(update={"call_log_path": config.client.call_log_path
                                                  or config.run_dir / "calls.jsonl"})
    async with LLMClient(client_cfg) as client:
        ctx = RunContext(config=config, composition=composition, prompts=held_out_prompts(config, count), client=client)
        return await judge_on_held_out(ctx, instructions, await ctx.embed(noisy.observation))


def pareto_report(runs_dir: Path, run: str, values: list[str] | None = None, weights: list[float] | None = None,
                  held_out: int | None = None, out: Path | None = None) -> dict:
    finished = load_finished_run(runs_dir, run)
    config, result = finished.config, finished.result
    composition = load_composition_for(config)
    names = _names(values, composition)
    weights = weights or [1.0] * len(names)
    if len(weights) != len(names) or any(w < 0 for w in weights) or not sum(weights):
        raise ConfigError(f"--weights: {len(names)} non-negative numbers, not all 0, one per value "
                          f"({', '.join(names)}), got {weights}")
    store = RunStore(finished.run_dir)
    cands = _candidates(store, config.picaco.iterations)
    if not cands:
        raise RunStateError(f"run '{run}' has no per-value candidate scores (it was made by an older picaco): "
                            f"run it again under another run_name; the cache answers the calls already made")
    rows, where = prompt_source(config)
    count = min(held_out if held_out is not None else config.picaco.held_out,
                len(rows) - config.prompts.offset - config.picaco.n_prompts)
    if count <= 0:
        raise ConfigError(f"no held-out prompts: {where} holds none after the run's {config.picaco.n_prompts} "
                          f"(or --held-out is 0)")
    in_front = non_dominated({k: c["in_sample"] for k, c in cands.items()}, names)
    # the in-sample front by TC_e (best first), capped; e^0 and e^T always answer
    ordered = sorted(in_front, key=lambda k: -(cands[k]["tc"] or float("-inf")))[:MAX_POINTS]
    seed = result.seed_instruction or composition.seed_instruction
    chosen = list(dict.fromkeys([seed, result.best_instruction, *ordered]))
    keys = {text: f"p{i:02d}" for i, text in enumerate(chosen)}
    scores = asyncio.run(_judge_points(config, composition, {keys[t]: t for t in chosen}, count))
    points = {}
    for text in chosen:
        s = scores[keys[text]]
        points[keys[text]] = {
            "instruction": text, "seed": text == seed, "paper_best": text == result.best_instruction,
            **{k: cands.get(text, {}).get(k) for k in ("born", "tc", "scored_in", "in_sample")},
            "held_out": s.value_means, "held_out_conformity": s.conformity, "missing": s.missing}
    front = non_dominated({k: p["held_out"] for k, p in points.items()}, names)
    if not front:
        raise RunStateError(f"run '{run}': no instruction has a held-out score on every value (judge replies missing)")
    pick_key = pick({k: points[k]["held_out"] for k in front}, names, weights)
    for k, p in points.items():
        p["on_front"] = k in front
    report = {"run": run, "values": names, "weights": weights, "held_out_prompts": count, "front": front,
              "chosen": pick_key, "chosen_instruction": points[pick_key]["instruction"], "points": points,
              "best_on_front": {v: max(points[k]["held_out"][v] for k in front) for v in names},
              "paper_best": {v: points[keys[result.best_instruction]]["held_out"][v] for v in names}}
    out = out or finished.run_dir / "pareto"
    atomic_write_json(out / "pareto.json", report)
    atomic_write_text(out / "pareto.md", pareto_markdown(report))
    write_front_plot(out / "pareto.png", report, names[:2])
    report["files"] = [str(out / n) for n in ("pareto.json", "pareto.md", "pareto.png")]
    return report


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def pareto_markdown(report: dict) -> str:
    names = report["values"]
    lines = [f"# Pareto front of run {report['run']}", "",
             f"Per-value judge scores (1-5) on {report['held_out_prompts']} held-out prompts; `front` marks the "
             f"instructions no other beats on every value ({', '.join(names)}). In-sample: the p_e-weighted pool "
             f"scores of the iteration that last scored it.", "",
             "| point | front | " + " | ".join(f"{v} (held-out)" for v in names) + " | conformity | " +
             " | ".join(f"{v} (in-sample)" for v in names) + " | role | instruction |",
             "|---" * (4 + 2 * len(names)) + "|---|"]
    for k, p in report["points"].items():
        role = ", ".join(r for r, on in (("seed e^0", p["seed"]), ("paper e^T", p["paper_best"]),
                                         ("chosen", k == report["chosen"])) if on)
        text = p["instruction"].replace("|", "/").replace("\n", " ")
        lines.append(f"| {k} | {'yes' if p['on_front'] else ''} | " +
                     " | ".join(_fmt(p["held_out"].get(v)) for v in names) + f" | {_fmt(p['held_out_conformity'])} | " +
                     " | ".join(_fmt((p["in_sample"] or {}).get(v)) for v in names) +
                     f" | {role} | {text[:140] + ('...' if len(text) > 140 else '')} |")
    lines += ["", f"Weights {', '.join(f'{v} {w:g}' for v, w in zip(names, report['weights']))}: chosen "
                  f"**{report['chosen']}** (smallest weighted Chebyshev distance to the front's ideal, each value "
                  f"scaled to the front's range).", "", "> " + report["chosen_instruction"].replace("\n", "\n> "),
              "", "![front](pareto.png)", ""]
    return "\n".join(lines)


def write_front_plot(path: Path, report: dict, pair: list[str]) -> None:
    # matplotlib only when a plot is drawn (the import takes a second); Agg: files only, no display
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    a, b = pair
    points = report["points"]
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    xs = {k: p["held_out"][a] for k, p in points.items()}
    ys = {k: p["held_out"][b] for k, p in points.items()}
    ok = [k for k in points if xs[k] is not None and ys[k] is not None]
    ax.scatter([xs[k] for k in ok], [ys[k] for k in ok], color="#bbbbbb", label="evaluated", zorder=2)
    front = sorted((k for k in report["front"] if k in ok), key=lambda k: xs[k])
    ax.plot([xs[k] for k in front], [ys[k] for k in front], marker="o", color="#1f77b4", label="front", zorder=3)
    for k, marker, label in ((next((k for k in ok if points[k]["seed"]), None), "s", "seed e^0"),
                             (next((k for k in ok if points[k]["paper_best"]), None), "*", "paper's e^T (Eq. 4)"),
                             (report["chosen"] if report["chosen"] in ok else None, "D", "chosen by weights")):
        if k is not None:
            ax.scatter([xs[k]], [ys[k]], marker=marker, s=140, facecolors="none", edgecolors="black", label=label,
                       zorder=4)
    for k in ok:
        ax.annotate(k, (xs[k], ys[k]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(f"{a} (held-out, 1-5)")
    ax.set_ylabel(f"{b} (held-out, 1-5)")
    ax.set_title(f"run {report['run']}: front on {report['held_out_prompts']} held-out prompts")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
