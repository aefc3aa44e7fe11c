"""PNG figures of an evaluation (matplotlib, Agg backend, no display needed):

    figures/per_value_<composition>.png   per-value mean scores, one bar per method (Tables 6-10)
    figures/value_sets.png                Fig. 3: delta over Q and CV by number of HH values
    figures/jailbreak.png                 Fig. 4c: shares of helpful / toxic responses per method
    figures/optimizer_choice.png          Fig. 4a: overall conformity per optimizer variant
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from picaco.eval.config import EvalConfig
from picaco.eval.rows import jailbreak_rows, value_set_rows
from picaco.eval.store import MethodRun
from picaco.io import atomic_write_bytes


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only: never try to open a window
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _nan(x):
    return np.nan if x is None else x


def per_value_figure(runs: list[MethodRun], path: Path, intervals: Sequence[dict] = ()) -> Path:
    """Bars of the per-value means; error bars: the bootstrap 95% intervals over test prompts."""
    plt = _pyplot()
    values = runs[0].value_names + (["Relevance"] if runs[0].relevance else [])
    width = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.2 * len(values) + 0.25 * len(runs)), 4.2))
    x = np.arange(len(values))
    cmap = plt.get_cmap("tab20")
    for k, r in enumerate(runs):
        heights = [_nan(r.summary.value_means.get(v)) if v != "Relevance" else _nan(r.summary.relevance) for v in values]
        iv = {row["value"]: row for row in intervals if row["method"] == r.method and row["composition"] == r.composition}
        err = np.array([[h - iv[v]["lo"], iv[v]["hi"] - h] if v in iv and iv[v]["n"] and not np.isnan(h) else [0, 0]
                        for v, h in zip(values, heights)]).T
        ax.bar(x - 0.4 + width * (k + 0.5), heights, width, label=r.label, color=cmap(k % 20),
               yerr=err, error_kw={"elinewidth": 0.8, "capsize": 1.5})
    ax.set_xticks(x, values, rotation=20, ha="right")
    ax.set_ylim(1, 5)
    ax.set_ylabel("mean judge score (1-5)")
    ax.set_title(f"Per-value scores: {runs[0].composition_title}")
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def value_sets_figure(rows: list[dict], path: Path) -> Path:
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    labels = list(dict.fromkeys(r["label"] for r in rows if r["method"] != "q"))
    for lab in labels:
        pts = sorted((r["n"], r["delta_vs_q"], r["cv"]) for r in rows if r["label"] == lab)
        a1.plot([p[0] for p in pts], [_nan(p[1]) for p in pts], marker="o", label=lab)
        a2.plot([p[0] for p in pts], [_nan(p[2]) for p in pts], marker="o", label=lab)
    q = sorted((r["n"], r["cv"]) for r in rows if r["method"] == "q")
    a2.plot([p[0] for p in q], [_nan(p[1]) for p in q], marker="s", linestyle="--", color="gray", label="Q")
    sizes = sorted({r["n"] for r in rows})
    for ax, title, ylabel in ((a1, "Delta over Q", "mean score - Q's"), (a2, "Coefficient of variation", "std / mean")):
        ax.set_xticks(sizes)
        ax.set_xlabel("number of HH values")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    a1.axhline(0, color="black", linewidth=0.8)
    a2.legend(fontsize=8)
    return _save(fig, path)


def jailbreak_figure(rows: list[dict], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [_nan(r["helpful_share"]) for r in rows], 0.4, label="Helpfulness >= threshold")
    ax.bar(x + 0.2, [_nan(r["toxic_share"]) for r in rows], 0.4, label="Toxicity >= threshold")
    return _save_bars(fig, ax, (x, [r["label"] for r in rows]), (0, 1), "share of queries",
                      "Jailbreak wrapper (stand-in template)", path)


def optimizer_choice_figure(runs: list[MethodRun], path: Path) -> Path:
    plt = _pyplot()
    comps = list(dict.fromkeys(r.composition for r in runs))
    labels = list(dict.fromkeys(r.label for r in runs))
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(comps) + 2), 3.6))
    x = np.arange(len(comps))
    for k, lab in enumerate(labels):
        get = {r.composition: r.summary.overall for r in runs if r.label == lab}
        ax.bar(x - 0.4 + width * (k + 0.5), [_nan(get.get(c)) for c in comps], width, label=lab)
    return _save_bars(fig, ax, (x, comps), (1, 5), "overall conformity", "Optimizer model choice", path)


def _save_bars(fig, ax, ticks: tuple, ylim: tuple[float, float], ylabel: str, title: str, path: Path) -> Path:
    """A grouped bar chart's axes, legend and grid, saved."""
    ax.set_xticks(*ticks)
    ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def write_figures(config: EvalConfig, runs: list[MethodRun], intervals: Sequence[dict] = ()) -> dict[str, Path]:
    """Every figure the runs support; keys: composition names, 'value_sets', 'jailbreak', 'optimizer_choice'."""
    folder = config.eval_dir / "figures"
    out: dict[str, Path] = {}
    main = [r for r in runs if r.group == "main"]
    for comp in dict.fromkeys(r.composition for r in main):
        out[comp] = per_value_figure([r for r in main if r.composition == comp], folder / f"per_value_{comp}.png",
                                     intervals)
    vs = value_set_rows(runs)
    if vs:
        out["value_sets"] = value_sets_figure(vs, folder / "value_sets.png")
    if config.analyses.jailbreak is not None:
        jb = jailbreak_rows(runs, config.analyses.jailbreak.threshold)
        if jb:
            out["jailbreak"] = jailbreak_figure(jb, folder / "jailbreak.png")
    oc = [r for r in runs if r.group == "optimizer_choice"]
    if oc:
        base = [r for r in main if r.method == "picaco"]
        out["optimizer_choice"] = optimizer_choice_figure(base + oc, folder / "optimizer_choice.png")
    return out
