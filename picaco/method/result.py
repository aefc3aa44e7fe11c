"""What a run reports: the result record (result.json), and the Markdown of the result and of each
iteration (the Prefect artifacts)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from picaco.method.state import IterationState, best_first
from picaco.stats import fmt_interval


class HistoryRow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    t: int
    tc: float | None  # TC_e of e^t
    conformity_under_previous_best: float | None
    best_changed: bool | None


class OptimizeResult(BaseModel):
    """The result of a run, as result.json holds it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    run_name: str
    composition: str
    best_instruction: str
    best_tc: float | None
    best_born: int
    value_scores: dict[str, float | None]
    conformity: float | None
    missing_judgements: int
    filtered_replies: int
    seed_instruction: str | None
    seed_value_scores: dict[str, float | None] | None
    seed_conformity: float | None
    history: list[HistoryRow]
    judge_probe: dict | None = None  # picaco/method/probe.py's record; None: probe switched off
    held_out: dict | None = None  # picaco/method/held_out.py's HeldOutComparison; None: picaco.held_out 0


def history_row(state: IterationState) -> HistoryRow:
    return HistoryRow(t=state.t, tc=state.best.tc, conformity_under_previous_best=state.estep.conformity,
                      best_changed=state.mstep.best_changed if state.mstep else None)


def _fmt(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def result_markdown(result: OptimizeResult) -> str:
    lines = [f"# PICACO result: {result.run_name}", "",
             f"Composition: **{result.composition}**", "", "## Optimized meta-instruction", "",
             "> " + result.best_instruction.replace("\n", "\n> "), "",
             "## Per-value judge scores (1-5) on the task prompts", "",
             "| value | seed (e^0) | optimized |", "|---|---|---|"]
    seed = result.seed_value_scores or {}
    for v, score in result.value_scores.items():
        lines.append(f"| {v} | {_fmt(seed.get(v))} | {_fmt(score)} |")
    lines += ["", f"Mean conformity: seed {_fmt(result.seed_conformity)}, "
                  f"optimized {_fmt(result.conformity)}. Missing judge scores: {result.missing_judgements}. "
                  f"Replies refused by a content filter (left out as missing): {result.filtered_replies}.",
              *_probe_lines(result.judge_probe), *_held_out_lines(result.held_out),
              "", "## TC_e per iteration", "", "| t | TC_e of e^t | conformity of responses under e^(t-1) |",
              "|---|---|---|"]
    for h in result.history:
        lines.append(f"| {h.t} | {_fmt(h.tc, 4)} | {_fmt(h.conformity_under_previous_best)} |")
    return "\n".join(lines) + "\n"


def _held_out_lines(held: dict | None) -> list[str]:
    if not held:
        return []
    seed, opt = held["seed"], held["optimized"]
    lines = ["", f"## Seed vs optimized on {held['prompts']} held-out prompts", "",
             "The prompts after X in the same source, the same demonstrations and sample indices for both "
             "instructions (the figures above are in-sample, on X).", "",
             "| value | seed (e^0) | optimized |", "|---|---|---|"]
    lines += [f"| {v} | {_fmt(seed['value_means'].get(v))} | {_fmt(m)} |" for v, m in opt["value_means"].items()]
    lines += [f"| **conformity** | {_fmt(seed['conformity'])} | {_fmt(opt['conformity'])} |", "",
              f"Optimized minus seed, paired by prompt: {fmt_interval(held['difference'], 3)} (mean [bootstrap 95% "
              f"interval over prompts, B = {held['bootstrap']}]). Missing judge scores: seed {seed['missing']}, "
              f"optimized {opt['missing']}."]
    return lines


def _probe_lines(probe: dict | None) -> list[str]:
    if not probe:
        return []
    shown = ", ".join(f"{v} {p['conforming']}>{p['violating']}" if p["status"] == "ok" else f"{v} {p['status']}"
                      for v, p in probe["values"].items())
    return ["", f"Judge probe ({probe['variant']} wording; conformity of a conforming > a violating canned "
                f"response): {shown}."]


def iteration_markdown(state: IterationState, history: Sequence[IterationState] = ()) -> str:
    """The per-iteration Prefect artifact: TC_e per iteration so far, per-value scores, the instruction."""
    lines = [f"## Iteration {state.t}", "", f"TC_e of the best instruction: **{_fmt(state.best.tc, 4)}** "
             f"(born in iteration {state.best.born}; changed: {state.mstep.best_changed if state.mstep else '-'})",
             "", "| t | TC_e of e^t | mean judge score under e^(t-1) |", "|---|---|---|"]
    for past in [h for h in history if h.t < state.t] + [state]:
        lines.append(f"| {past.t} | {_fmt(past.best.tc, 4)} | {_fmt(past.estep.conformity)} |")
    lines += ["", "| value | mean score of responses under e^(t-1) |", "|---|---|"]
    lines += [f"| {v} | {_fmt(s)} |" for v, s in state.estep.value_means.items()]
    lines += ["", f"Judge replies missing after retries: {state.estep.missing} of {state.estep.responses}",
              "", "### Best instruction", "", "> " + state.best.instruction.replace("\n", "\n> "), "",
              "### Calls by role (this iteration)", "", "| role | calls | hits | misses | tokens |", "|---|---|---|---|---|"]
    for role, u in state.usage_by_role.items():
        lines.append(f"| {role} | {u.get('calls', 0)} | {u.get('samples_hit', 0)} | {u.get('samples_miss', 0)} | "
                     f"{u.get('prompt_tokens', 0) + u.get('completion_tokens', 0)} |")
    return "\n".join(lines) + "\n"


def iteration_table(state: IterationState) -> list[dict]:
    """Rows of the per-iteration table artifact: every candidate scored in the M-step, best first."""
    return [{"rank": i + 1, "best": c.instruction == state.best.instruction, "born": c.born,
             "tc_e": None if c.tc is None else round(c.tc, 5),
             "aligned_term": None if c.aligned_term is None else round(c.aligned_term, 5),
             "noisy_term": None if c.noisy_term is None else round(c.noisy_term, 5),
             "instruction": c.instruction if len(c.instruction) <= 160 else c.instruction[:157] + "..."}
            for i, c in enumerate(best_first(state.candidates))]
