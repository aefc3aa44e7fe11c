"""The `picaco` command."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from picaco.base.errors import ConfigError, PicacoError
from picaco.config import load_run_config
from picaco.demo import run_demo
from picaco.deploy.cli import export_command, serve_command
from picaco.estimate import estimate
from picaco.eval.cli import evaluate_command
from picaco.llm.cache import CACHE_URL_ENV, open_cache
from picaco.llm.local_engine import EngineSpec
from picaco.llm.local_engine import serve as serve_engine
from picaco.method.result import OptimizeResult
from picaco.method.run import optimize
from picaco.pareto import pareto_report
from picaco.sim.server import main as server_main
from picaco.stats import fmt_interval
from picaco.values.draft import draft_to_file

QUICK_PROMPTS, QUICK_ITERATIONS = 3, 1
QUICK_LIMITS = {"prompts_limit": QUICK_PROMPTS, "iterations_limit": QUICK_ITERATIONS}

app = typer.Typer(add_completion=False, no_args_is_help=True, help="PICACO meta-instruction optimization.")
cache_app = typer.Typer(no_args_is_help=True, help="The call cache: stats, clear, export and import.")
app.add_typer(cache_app, name="cache")


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _mount_data_app() -> None:
    try:
        # imported here, under try: a datasets_prep that fails to import disables `picaco data`, not the CLI
        from datasets_prep.cli import app as data_app
    except ImportError as exc:  # datasets_prep is part of the project: a broken import is a bug, say it
        reason = str(exc)

        @app.command("data", help="Dataset collection (unavailable: datasets_prep failed to import).")
        def data_unavailable():
            _fail(RuntimeError(f"datasets_prep could not be imported: {reason}"))
        return
    app.add_typer(data_app, name="data", help="Build prompt sets from public datasets.")


_mount_data_app()
app.command("evaluate", help="Evaluate PICACO against the baselines on a test set (App. C.2-C.3).")(evaluate_command)
app.command("export")(export_command)
app.command("serve")(serve_command)


# --help goes to the server's own parser, which knows the flags (typer's would list none)
@app.command("sim-server", context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             add_help_option=False,
             help="Serve the simulator over HTTP on 127.0.0.1 (OpenAI and Gemini APIs). --help lists its flags.")
def sim_server(ctx: typer.Context) -> None:
    raise typer.Exit(server_main(list(ctx.args)) or 0)


@app.command("local-server")
def local_server(gguf: str = typer.Option("smollm2", help="a GGUF model file, or smollm2 (the embedded SmolLM2-135M)"),
                 port: int = typer.Option(0, help="port on 127.0.0.1 (0: a free one; the URL is printed)"),
                 n_ctx: int = typer.Option(4096, help="context size in tokens"),
                 logits_all: bool = typer.Option(False, help="keep every token's logits (prompt log-probs)"),
                 chat_format: Optional[str] = typer.Option(None, help="llama.cpp chat format (default: the GGUF's)")
                 ) -> None:
    """Start llama.cpp's OpenAI-compatible server (extra 'local') on 127.0.0.1; serve until Ctrl-C."""
    try:
        serve_engine(EngineSpec.from_options({"gguf": gguf, "port": port, "n_ctx": n_ctx, "logits_all": logits_all,
                                       "chat_format": chat_format}, "local-server", flags=True), echo=typer.echo)
    except PicacoError as exc:
        _fail(exc)


_CACHE_DIR = typer.Option(Path("artifacts/cache"), envvar="PICACO_CACHE_DIR",
                          help="cache directory (the diskcache backend)")
_CACHE_URL = typer.Option(None, "--url", help="a postgresql:// cache instead of the directory "
                          "(default: $PICACO_CACHE_URL)")


def _open_cli_cache(cache_dir: Path, url: str | None, *, must_exist: bool = True):
    """The cache a command works on; a diskcache directory that is not there is an error (stats would
    otherwise create an empty one)."""
    url = url or os.environ.get(CACHE_URL_ENV) or None
    if url is None and must_exist and not cache_dir.exists():
        _fail(ConfigError(f"no cache at {cache_dir}"))
    try:
        return open_cache(cache_dir, url=url)
    except PicacoError as exc:
        _fail(exc)


def _with_cache(cache_dir: Path, url: str | None, work, *, must_exist: bool = True):
    cache = _open_cli_cache(cache_dir, url, must_exist=must_exist)
    try:
        return work(cache)
    except PicacoError as exc:
        _fail(exc)
    finally:
        cache.close()


@cache_app.command("stats")
def cache_stats(cache_dir: Path = _CACHE_DIR, url: Optional[str] = _CACHE_URL,
                as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Entries, size, hits and misses by role, tokens and money saved."""
    stats = _with_cache(cache_dir, url, lambda cache: cache.stats())
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"cache {stats['directory']}: {stats['entries']} entries, {stats['size_bytes'] / 1e6:.1f} MB")
    table = Table("role", "hits", "misses", "saved prompt tok", "saved completion tok", "saved $")
    for role, s in sorted(stats["by_role"].items()):
        table.add_row(role, str(s["hits"]), str(s["misses"]), str(s["saved_prompt_tokens"]),
                      str(s["saved_completion_tokens"]), f"{s['saved_cost_microusd'] / 1e6:.4f}")
    console.print(table)
    if stats["refused_rows"]:
        console.print(f"{stats['refused_rows']} counter rows refused (not integers; never read as anything else)")


@cache_app.command("clear")
def cache_clear(cache_dir: Path = _CACHE_DIR, url: Optional[str] = _CACHE_URL,
                yes: bool = typer.Option(False, "--yes", help="do not ask")) -> None:
    """Delete every cached answer: the next run pays for its calls again."""
    if not (url or os.environ.get(CACHE_URL_ENV)) and not cache_dir.exists():
        typer.echo(f"no cache at {cache_dir}")
        return
    cache = _open_cli_cache(cache_dir, url)
    try:
        if not yes and not typer.confirm(f"delete every entry in {cache.location}?"):
            raise typer.Exit(1)
        removed = cache.clear()
    except PicacoError as exc:
        _fail(exc)
    finally:
        cache.close()
    typer.echo(f"removed {removed} entries from {cache.location}")


@cache_app.command("export")
def cache_export(out: Path = typer.Option(..., "--out", help="JSONL file to write"),
                 cache_dir: Path = _CACHE_DIR, url: Optional[str] = _CACHE_URL) -> None:
    """Write every cached row to a JSONL file (kind, key, value), to import into another backend."""
    def work(cache) -> int:
        count = 0
        tmp = out.with_name(out.name + ".part")
        try:
            with tmp.open("w", encoding="utf-8") as f:
                for row in cache.export_rows():
                    f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
                    count += 1
        except OSError as exc:
            raise PicacoError(f"cannot write {out}: {exc.strerror or exc}") from None
        tmp.replace(out)  # a failed export leaves no file that looks whole
        return count
    count = _with_cache(cache_dir, url, work)
    typer.echo(f"exported {count} rows to {out}")


@cache_app.command("import")
def cache_import(path: Path = typer.Argument(..., help="JSONL file from `picaco cache export`"),
                 cache_dir: Path = _CACHE_DIR, url: Optional[str] = _CACHE_URL) -> None:
    """Add the rows of an exported file to this cache; rows already there are kept as they are."""
    def rows():
        try:
            with path.open(encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            yield json.loads(line)
                        except ValueError:
                            raise PicacoError(f"{path}:{n}: not a JSON line") from None
        except OSError as exc:
            raise PicacoError(f"cannot read {path}: {exc.strerror or exc}") from None
    count = _with_cache(cache_dir, url, lambda cache: cache.import_rows(rows()), must_exist=False)
    typer.echo(f"imported {count} rows from {path}")


def run_with_progress(config, title: str) -> OptimizeResult:
    """Run (or resume) an optimization with a rich progress bar over its steps."""
    out: list[OptimizeResult] = []
    _with_progress(config, title, lambda on_event: out.append(optimize(config, on_event=on_event)))
    return out[0]


def _with_progress(config, title: str, work) -> None:
    """Call work(on_event) under a rich progress bar fed by the optimizer's step events."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    total = 2 * config.picaco.iterations + 2
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), transient=False) as progress:
        bar = progress.add_task(title, total=total)

        def on_event(kind: str, t: int, **info) -> None:
            labels = {"judge_probe": "judge probe", "noisy_pool": "noisy pool", "e_step": f"iteration {t}: E-step", "m_step": f"iteration {t}: M-step",
                      "final": "final scoring", "resume": f"resuming after iteration {t}"}
            if kind == "resume":
                progress.update(bar, completed=1 + 2 * t)
            elif kind in labels:
                progress.update(bar, description=f"{title}: {labels[kind]}")
                if kind not in ("judge_probe", "noisy_pool"):
                    progress.advance(bar)
            if kind == "iteration":
                state = info["state"]
                conf = state.estep.conformity
                progress.console.print(f"  t={t}: TC_e {state.best.tc:.4f} "
                                       f"(best from iteration {state.best.born}); conformity under e^{t - 1}: "
                                       f"{'-' if conf is None else f'{conf:.3f}'}")

        work(on_event)
        progress.update(bar, completed=total)


@app.command("optimize")
def optimize_cmd(config: Path = typer.Option(..., "--config", help="run config YAML"),
                 run_name: Optional[str] = typer.Option(None, help="override run_name"),
                 from_run: Optional[str] = typer.Option(None, "--from-run", help="start from this earlier finished "
                                                        "run in runs_dir: its best instructions as seeds, its cached "
                                                        "calls reused (sets from_run)")) -> None:
    """Run or resume PICACO from a config file; prints the optimized instruction and its scores."""
    try:
        cfg = load_run_config(config, run_name=run_name, from_run=from_run)
        result = run_with_progress(cfg, cfg.run_name)
    except PicacoError as exc:
        _fail(exc)
    typer.echo("\nOptimized meta-instruction:\n" + result.best_instruction)
    typer.echo("\nPer-value scores: " + ", ".join(f"{v} {'-' if s is None else f'{s:.2f}'}"
                                                   for v, s in result.value_scores.items()))
    typer.echo(f"Saved: {cfg.run_dir / 'result.json'} and result.md")


def _numbers(text: str | None, what: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise ConfigError(f"{what}: comma-separated numbers, got {text!r}") from None


@app.command("pareto")
def pareto_cmd(run: str = typer.Option(..., "--run", help="a finished run's name (its folder under --runs-dir)"),
               runs_dir: Path = typer.Option(Path("artifacts/runs"), help="where the runs live"),
               values: Optional[str] = typer.Option(None, help="comma-separated values of the composition (default: "
                                                    "all); the plot shows the first two"),
               weights: Optional[str] = typer.Option(None, help="comma-separated weights, one per value (default: "
                                                     "equal): which front instruction to pick"),
               held_out: Optional[int] = typer.Option(None, help="held-out prompts (default: the run's picaco.held_out)"),
               out: Optional[Path] = typer.Option(None, help="folder for pareto.json/.md/.png (default: <run>/pareto)")
               ) -> None:
    """The Pareto front of a run's candidates per value on held-out prompts, and the instruction the
    weights pick from it."""
    try:
        names = [v.strip() for v in values.split(",")] if values else None
        report = pareto_report(runs_dir, run, names, _numbers(weights, "--weights"), held_out, out)
    except PicacoError as exc:
        _fail(exc)
    names = report["values"]
    typer.echo(f"{len(report['front'])} instructions on the front of {len(report['points'])} evaluated "
               f"({report['held_out_prompts']} held-out prompts):")
    for k in report["front"]:
        p = report["points"][k]
        typer.echo(f"  {k}: " + ", ".join(f"{v} {p['held_out'][v]:.2f}" for v in names)
                   + (" (paper's e^T)" if p["paper_best"] else ""))
    typer.echo(f"\nChosen ({report['chosen']}, weights {', '.join(f'{w:g}' for w in report['weights'])}):\n"
               + report["chosen_instruction"])
    typer.echo("Saved: " + ", ".join(report["files"]))


DEFAULT_DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


@app.command("demo")
def demo_cmd(config: Path = typer.Option(DEFAULT_DEMO_CONFIG, "--config", help="run config YAML"),
             out: Path = typer.Option(Path("artifacts/demo"), help="where the report and plot go"),
             held_out: int = typer.Option(20, help="held-out prompts for the comparison")) -> None:
    """The whole pipeline offline: noisy pool, optimization, seed vs optimized on held-out prompts."""
    from rich.console import Console
    from rich.table import Table

    try:
        cfg = load_run_config(config)
        progress_result: dict = {}

        def run(on_event):
            progress_result.update(run_demo(cfg, out, held_out, on_event=on_event))

        _with_progress(cfg, f"demo ({cfg.composition})", run)
    except PicacoError as exc:
        _fail(exc)
    demo = progress_result
    judged, truth, fig = demo["judged"], demo["truth"], demo["figures"]
    table = Table("value", "seed: judge", "optimized: judge", "seed: truth", "optimized: truth",
                  title="Seed (Q+IF) vs optimized on held-out prompts")
    for v in judged["seed"]["value_means"]:
        f = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
        table.add_row(v, f(judged["seed"]["value_means"][v]), f(judged["optimized"]["value_means"][v]),
                      f(truth["per_instruction"]["seed"]["per_value"][v]),
                      f(truth["per_instruction"]["optimized"]["per_value"][v]))
    table.add_row("mean", f"{fig['seed_judge_conformity']:.3f}", f"{fig['optimized_judge_conformity']:.3f}",
                  f"{fig['seed_gt_conformity']:.3f}", f"{fig['optimized_gt_conformity']:.3f}")
    console = Console()
    console.print(table)
    console.print("Held-out, optimized minus seed (judge conformity, paired by prompt): "
                  f"{fmt_interval(fig['held_out_difference'], 3)} (mean [bootstrap 95% interval])",
                  markup=False)  # the brackets are text, not rich markup
    console.print(f"World optimum under {cfg.picaco.instruction_length} words: {fig['optimum']:.3f}; optimized reaches "
                  f"{fig['optimality_ratio']:.1%} of it.")
    console.print("\nOptimized meta-instruction:\n" + demo["result"].best_instruction)
    console.print(f"\nBackend calls this run: {fig['calls_this_run']}; wall time {fig['demo_wall_s']:.1f} s")
    console.print(f"Report: {demo['report']}  Plot: {demo['plot']}")


@app.command("estimate")
def estimate_cmd(config: Path = typer.Option(..., "--config", help="run config YAML"),
                 quick: bool = typer.Option(False, "--quick", help=f"a reduced run ({QUICK_PROMPTS} prompts, "
                                            f"{QUICK_ITERATIONS} iteration): checks the config runs; figures are the reduced run's")) -> None:
    """Run the configuration on the simulator and print the calls, tokens and money it would cost per
    role on the configured providers, before you spend anything."""
    from rich.console import Console
    from rich.table import Table

    try:
        cfg = load_run_config(config)
        out: dict = {}
        _with_progress(cfg, "estimate (simulated)", lambda on_event: out.update(estimate(
            cfg, on_event=on_event, prompts_limit=QUICK_LIMITS["prompts_limit"] if quick else None,
            iterations_limit=QUICK_LIMITS["iterations_limit"] if quick else None)))
    except PicacoError as exc:
        _fail(exc)
    money = lambda x: "no price" if x is None else f"${x:,.2f}"  # noqa: E731
    table = Table("role", "model", "calls", "prompt tokens", "completion tokens", "cost", "upper bound",
                  title=f"Estimated cost of '{cfg.run_name}'" + (" (REDUCED RUN)" if out["reduced"] else ""))
    for role, r in sorted(out["by_role"].items()):
        table.add_row(role, r["model"], f"{r['calls']:,}", f"{r['prompt_tokens']:,}", f"{r['completion_tokens']:,}",
                      money(r["cost_usd"]), money(r["cost_upper_bound_usd"]))
    table.add_row("total", "", "", "", "", money(out["total_usd"]), money(out["total_upper_bound_usd"]))
    console = Console()
    console.print(table)
    console.print("Token counts are the simulator's (its answers run 40-150 words); the upper bound puts every "
                  "completion at max_tokens.")
    for role, r in sorted(out["by_role"].items()):
        if r.get("score_calls"):
            console.print(f"{role}: {r['score_calls']:,} of its calls are exact-p_e echo calls (prompt log-probs, "
                          f"1 generated token each; picaco.pe_estimator logprob).")
    if out["reduced"]:
        (n, full_n), (t, full_t) = out["reduced"]["n_prompts"], out["reduced"]["iterations"]
        console.print(f"Reduced run: {n} of {full_n} prompts, {t} of {full_t} iterations; these figures are the "
                      f"reduced run's, not the configuration's (run without --quick for those).")
    if out["unpriced_models"]:
        console.print(f"No price for: {', '.join(out['unpriced_models'])}; add them with client.prices_path.")


@app.command("draft-demos")
def draft_demos(values: str = typer.Option(..., help="comma-separated value names from the value library"),
                queries: Path = typer.Option(..., help="a text file, one query per line"),
                model: str = typer.Option("sim/target", help="the 'provider/model' that drafts the answers"),
                out: Path = typer.Option(..., help="where to write the draft YAML"),
                cache_dir: Path = typer.Option(Path("artifacts/cache"), envvar="PICACO_CACHE_DIR", help="call cache directory"),
                seed: int = typer.Option(0)) -> None:
    """Draft demonstrations (query, answer) for a new value composition, for you to review."""
    try:
        count = draft_to_file(values, queries, model, out, cache_dir=cache_dir, seed=seed)
    except PicacoError as exc:
        _fail(exc)
    typer.echo(f"wrote {count} draft demonstrations to {out}: review every answer before using them")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except ConfigError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
