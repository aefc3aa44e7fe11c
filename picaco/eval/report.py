"""The evaluation's outputs: Parquet/CSV tables (polars), the Markdown report and its figures.

Tables (all under `<out_dir>/<name>/`):
    summary     one row per evaluated job: overall conformity, mu_conf, relevance, CV, missing, calls, wall
    values      per-value means (Tables 6-10), Relevance as one more "value" for Schwartz compositions
    responses   every response with its status and its scores (as JSON)
    scores      the scores long: one row per (response, value)
    intervals   per method and value (and "conformity"): mean over test prompts with its bootstrap 95% interval
    paired      PICACO minus each baseline, prompt by prompt: mean difference of conformity, bootstrap 95% interval
    value_sets  Fig. 3: n, method, mu_conf, delta over Q, CV            (when the analysis ran)
    jailbreak   Fig. 4c: method, share helpful, share toxic               (when the analysis ran)
"""

from __future__ import annotations

import io
from pathlib import Path

from picaco.eval.config import ALL_METHODS, EvalConfig
from picaco.eval.plots import write_figures
from picaco.eval.rows import (
    interval_rows,
    jailbreak_rows,
    paired_rows,
    response_rows,
    score_rows,
    summary_rows,
    value_rows,
    value_set_rows,
)
from picaco.eval.stats import RELEVANCE, WEIGHTED, fmt_interval
from picaco.eval.store import MethodRun
from picaco.io import atomic_write_bytes, atomic_write_text


def _fmt(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def rank_marks(values: list[float | None], higher_is_better: bool = True) -> list[str]:
    """'best' / 'second' / '' per entry, as Table 1 bolds the best and underlines the second best.
    Ties share the mark."""
    present = sorted({v for v in values if v is not None}, reverse=higher_is_better)
    best = present[0] if present else None
    second = present[1] if len(present) > 1 else None
    return ["best" if v is not None and v == best else "second" if v is not None and v == second else ""
            for v in values]


def _marked(text: str, mark: str) -> str:
    return f"**{text}**" if mark == "best" else f"<u>{text}</u>" if mark == "second" else text


# -- tables ---------------------------------------------------------------------------------------------
def _write_frame(rows: list[dict], base: Path) -> list[Path]:
    import polars as pl

    df = pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()
    buf = io.BytesIO()
    df.write_parquet(buf)
    atomic_write_bytes(base.with_suffix(".parquet"), buf.getvalue())
    atomic_write_text(base.with_suffix(".csv"), df.write_csv())
    return [base.with_suffix(".parquet"), base.with_suffix(".csv")]


# -- Markdown ---------------------------------------------------------------------------------------------
def _table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> list[str]:
    align = align or ["---"] + ["---:"] * (len(header) - 1)
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"] + [
        "| " + " | ".join(r) + " |" for r in rows]


def _method_order(runs: list[MethodRun]) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for r in runs:
        seen.setdefault(r.method, r.label)
    return [(m, seen[m]) for m in ALL_METHODS if m in seen]


def markdown_report(config: EvalConfig, runs: list[MethodRun], figures: dict[str, Path]) -> str:
    main = [r for r in runs if r.group == "main"]
    comps = list(dict.fromkeys(r.composition for r in main))
    by = {(r.composition, r.method): r for r in main}
    titles = {r.composition: f"{r.composition_title}-{len(r.intended_values)}" for r in main}
    methods = _method_order(main)
    p = config.protocol
    lines = [f"# Evaluation: {config.name}", "",
             f"Target `{config.models.target}`, judge `{config.models.judge}`. Test prompts per composition: "
             f"{len(main[0].prompts) if main else 0}; responses per query: {p.buckets} buckets x "
             f"{p.samples_per_bucket} = {p.buckets * p.samples_per_bucket} (App. C.2). Judge attempts per score: "
             f"{p.judge_attempts}; a score still unusable after them is **missing** (counted below, never filled in). "
             f"Seed {config.seed}.", ""]
    if main:
        lines += ["## Overall conformity (Table 1)", "",
                  "Mean judge score (1-5) over queries and judged values; for Schwartz compositions weighted by "
                  "relevance, mu'_conf = mu_conf x Relevance / 5 (Eq. 7). **Best** in bold, second best "
                  "underlined.", ""]
        rows = [[label] for _, label in methods]
        for c in comps:
            col = [by[(c, m)].summary.overall if (c, m) in by else None for m, _ in methods]
            for row, v, mark in zip(rows, col, rank_marks(col)):
                row.append(_marked(_fmt(v), mark))
        lines += _table(["Method"] + [titles[c] for c in comps], rows) + [""]
        lines += ["## Balance across values", "",
                  "Coefficient of variation of the per-value means (std / mean; lower is more balanced). "
                  "**Lowest** in bold.", ""]
        rows = [[label] for _, label in methods]
        for c in comps:
            col = [by[(c, m)].summary.cv if (c, m) in by else None for m, _ in methods]
            for row, v, mark in zip(rows, col, rank_marks(col, higher_is_better=False)):
                row.append(_marked(_fmt(v), mark))
        lines += _table(["Method"] + [titles[c] for c in comps], rows) + [""]
        lines += _uncertainty_lines(config, runs, comps, titles, methods)
        ivs = {(r["composition"], r["method"], r["value"]): r for r in interval_rows(runs, config.stats.bootstrap,
                                                                                     config.seed)}
        for c in comps:
            any_run = next(r for r in main if r.composition == c)
            values = any_run.value_names + (["Relevance"] if any_run.relevance else [])
            lines += [f"## Per-value scores: {any_run.composition_title} (Tables 6-10)", "",
                      f"Judged values: {', '.join(any_run.value_names)}"
                      + (" (the composition's values plus the other HH values, as in Tables 9-10)"
                         if len(any_run.value_names) > len(any_run.intended_values) else "")
                      + ". Mean [bootstrap 95% interval over test prompts].", ""]
            rows = []
            for m, label in methods:
                r = by.get((c, m))
                if r is None:
                    continue
                cells = [fmt_interval(ivs.get((c, m, v)) if ivs.get((c, m, v), {}).get("n") else None)
                         for v in r.value_names]
                if r.relevance:
                    rel = ivs.get((c, m, RELEVANCE))
                    cells.append(fmt_interval(rel) if rel and rel.get("n") else _fmt(r.summary.relevance))
                rows.append([label] + cells)
            lines += _table(["Method"] + values, rows) + [""]
            if c in figures:
                lines += [f"![Per-value scores, {any_run.composition_title}]({figures[c].as_posix()})", ""]
        lines += ["## Missing judge scores", "",
                  "Responses whose judge reply was unusable after every attempt; they are left out of every mean.", ""]
        rows = []
        for r in main:
            s = r.summary
            rows.append([r.label, r.composition, str(s.responses), str(s.empty), str(s.judged), str(s.missing),
                         str(s.judge_attempts), str(s.relevance_missing) if r.relevance else "-"])
        lines += _table(["Method", "Composition", "responses", "empty", "judged", "missing", "judge calls",
                         "relevance missing"], rows, ["---", "---"] + ["---:"] * 6) + [""]
    lines += ["## Calls by method", "",
              "Client requests, provider calls (by role), samples served from the cache and fetched, tokens, wall time. "
              "A re-run is answered by the cache.", ""]
    rows = []
    for srow in summary_rows(runs):
        rows.append([srow["label"], srow["key"].split("/")[0], srow["composition"], str(srow["requests"]),
                     str(srow["provider_calls"]), str(srow["target_calls"]), str(srow["judge_calls"]),
                     str(srow["optimizer_calls"]), str(srow["other_calls"]), str(srow["samples_hit"]),
                     str(srow["samples_fetched"]), str(srow["tokens"]), f"{srow['wall_s']:.2f}"])
    lines += _table(["Method", "Group", "Composition", "requests", "calls", "target", "judge", "optimizer", "other",
                     "cached", "fetched", "tokens", "wall s"], rows, ["---"] * 3 + ["---:"] * 10) + [""]
    vs_rows = value_set_rows(runs)
    vs_order = config.analyses.value_sets.order if config.analyses.value_sets else []
    if vs_rows:
        sizes = sorted({r["n"] for r in vs_rows})
        labels = list(dict.fromkeys(r["label"] for r in vs_rows if r["method"] != "q"))
        get = {(r["n"], r["label"]): r for r in vs_rows}
        lines += ["## Growing HH value sets (Fig. 3)", "",
                  "Delta of the mean score over Q on the same values, and the coefficient of variation (CV) across "
                  "values. Values are added in the order " + ", ".join(vs_order) + ".", ""]
        rows = []
        for lab in labels:
            rows.append([lab] + [f"{_fmt(get[(n, lab)]['delta_vs_q'])} / {_fmt(get[(n, lab)]['cv'])}"
                                 if (n, lab) in get else "-" for n in sizes])
        q_row = ["Q (mean / CV)"] + [f"{_fmt(get[(n, 'Q')]['mu_conf'])} / {_fmt(get[(n, 'Q')]['cv'])}"
                                     if (n, "Q") in get else "-" for n in sizes]
        lines += _table(["Method (delta / CV)"] + [f"n={n}" for n in sizes], [q_row] + rows) + [""]
        if "value_sets" in figures:
            lines += [f"![Growing value sets]({figures['value_sets'].as_posix()})", ""]
    if config.analyses.jailbreak is not None:
        jb_rows = jailbreak_rows(runs, config.analyses.jailbreak.threshold)
        t = config.analyses.jailbreak.threshold
        lines += ["## Jailbreak wrapper (Fig. 4c)", "",
                  f"Queries wrapped in {'the bundled STAND-IN template (not a real jailbreak)' if config.analyses.jailbreak.template is None else str(config.analyses.jailbreak.template)}; "
                  f"share of queries whose responses have an average Helpfulness >= {t:g}, and an average Toxicity "
                  f">= {t:g} (Toxicity = 6 - Non-Toxicity on our judge's scale).", ""]
        lines += _table(["Method", "queries scored", f"Helpfulness >= {t:g}", f"Toxicity >= {t:g}", "missing"],
                        [[r["label"], str(r["queries_scored"]), _pct(r["helpful_share"]), _pct(r["toxic_share"]),
                          str(r["missing"])] for r in jb_rows]) + [""]
        if "jailbreak" in figures:
            lines += [f"![Jailbreak]({figures['jailbreak'].as_posix()})", ""]
    oc = [r for r in runs if r.group == "optimizer_choice"]
    if oc:
        lines += ["## Optimizer model choice (Fig. 4a)", "",
                  "PICACO instructions refined by different optimizer models, evaluated like PICACO.", ""]
        rows = []
        for c in comps or list(dict.fromkeys(r.composition for r in oc)):
            base = by.get((c, "picaco"))
            if base is not None:
                rows.append([base.label, c, _fmt(base.summary.overall), _fmt(base.summary.cv)])
            rows += [[r.label, c, _fmt(r.summary.overall), _fmt(r.summary.cv)] for r in oc if r.composition == c]
        lines += _table(["Variant", "Composition", "overall", "CV"], rows, ["---", "---", "---:", "---:"]) + [""]
        if "optimizer_choice" in figures:
            lines += [f"![Optimizer choice]({figures['optimizer_choice'].as_posix()})", ""]
    instr = [r for r in runs if r.method in ("picaco", "opro") and "instruction" in r.info]
    if instr:
        lines += ["## Meta-instructions evaluated", ""]
        for r in instr:
            extra = (f" (from {r.info['origin']})" if r.method == "picaco" and r.info.get("origin") else
                     f" (OPRO score {_fmt(r.info.get('score'), 1)}, found in iteration {r.info.get('born')} of "
                     f"{r.info.get('iterations')}, {r.info.get('candidates')} candidates)" if r.method == "opro" else "")
            lines += [f"**{r.label}**, {r.composition}{' [' + r.group + ']' if r.group != 'main' else ''}{extra}:", "",
                      "> " + r.info["instruction"].replace("\n", "\n> "), ""]
    lines += ["## Notes", "",
              "Wording the paper does not give (MP+System 1/2 personas, the MODULAR summary prompt, CICL's negative "
              "demonstrations, URIAL+SUM's teacher summaries, OPRO's meta-prompt adaptation, the jailbreak stand-in) "
              "is ours; see docs/evaluation.md.", ""]
    return "\n".join(lines)


def _uncertainty_lines(config: EvalConfig, runs: list[MethodRun], comps, titles, methods) -> list[str]:
    b = config.stats.bootstrap
    ivs = interval_rows(runs, b, config.seed)
    get = {(r["composition"], r["method"]): r for r in ivs if r["value"] == "conformity"}
    lines = ["## Uncertainty (picaco's extension)", "",
             f"Conformity = each test prompt's mean over the judged values, averaged over prompts, with a percentile "
             f"bootstrap 95% interval over test prompts (B = {b}, seeded from seed {config.seed}); demonstrations "
             f"drawn {'per query' if config.protocol.demos == 'per_query' else 'once per bucket for all queries'}.", ""]
    rows = [[label] + [fmt_interval(get.get((c, m)) if get.get((c, m), {}).get("n") else None) for c in comps]
            for m, label in methods]
    lines += _table(["Method"] + [titles[c] for c in comps], rows) + [""]
    weighted = {(r["composition"], r["method"]): r for r in ivs if r["value"] == WEIGHTED}
    if weighted:
        wcomps = [c for c in comps if any(k[0] == c for k in weighted)]
        lines += ["Relevance-weighted mu'_conf = mu_conf x Relevance / 5 (Eq. 7; what Table 1 reports for these "
                  "compositions) [bootstrap 95% interval: prompts resampled with both figures, the statistic is "
                  "the product of the resample's two means].", ""]
        rows = [[label] + [fmt_interval(weighted.get((c, m)) if weighted.get((c, m), {}).get("n") else None)
                           for c in wcomps] for m, label in methods]
        lines += _table(["Method"] + [titles[c] for c in wcomps], rows) + [""]
    paired = paired_rows(runs, b, config.seed)
    if paired:
        lines += ["PICACO minus each baseline, prompt by prompt (on the prompts both scored): mean difference of "
                  "conformity [bootstrap 95% interval]; an interval above 0 favours PICACO.", ""]
        by = {(r["composition"], r["method"]): r for r in paired}
        rows = [[label] + [fmt_interval(by.get((c, m)) if by.get((c, m), {}).get("n") else None) for c in comps]
                for m, label in methods if m != "picaco"]
        lines += _table(["PICACO minus"] + [titles[c] for c in comps], rows) + [""]
    return lines


def write_outputs(config: EvalConfig, runs: list[MethodRun]) -> dict:
    """Tables, figures and report.md for the runs; returns {report, files, figures, summary}."""
    out = config.eval_dir
    files: list[Path] = []
    files += _write_frame(summary_rows(runs), out / "summary")
    files += _write_frame(value_rows(runs), out / "values")
    files += _write_frame(response_rows(runs), out / "responses")
    files += _write_frame(score_rows(runs), out / "scores")
    intervals = interval_rows(runs, config.stats.bootstrap, config.seed)
    paired = paired_rows(runs, config.stats.bootstrap, config.seed)
    files += _write_frame(intervals, out / "intervals")
    files += _write_frame(paired, out / "paired")
    if any(r.group == "value_sets" for r in runs):
        files += _write_frame(value_set_rows(runs), out / "value_sets")
    if config.analyses.jailbreak is not None:
        files += _write_frame(jailbreak_rows(runs, config.analyses.jailbreak.threshold), out / "jailbreak")
    figures = write_figures(config, runs, intervals)
    rel = {k: p.relative_to(out) for k, p in figures.items()}
    report = out / "report.md"
    atomic_write_text(report, markdown_report(config, runs, rel))
    main = [row for row in summary_rows(runs) if row["group"] == "main"]
    return {"eval_dir": str(out), "report": str(report), "files": [str(f) for f in files],
            "figures": {k: str(p) for k, p in figures.items()}, "summary": main, "intervals": intervals,
            "paired": paired}
