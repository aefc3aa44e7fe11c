"""`picaco evaluate --config <file>`: the function the `picaco` command mounts.

    from picaco.eval.cli import evaluate_command
    app.command("evaluate")(evaluate_command)
"""

from __future__ import annotations

from pathlib import Path

import typer

from picaco.base.errors import PicacoError
from picaco.eval.config import load_eval_config
from picaco.eval.runner import evaluate


def evaluate_command(config: Path = typer.Option(..., "--config", help="evaluation config YAML"),
                     name: str | None = typer.Option(None, help="override the evaluation name")) -> None:
    """Evaluate PICACO and the baselines on held-out prompts; writes tables, figures and report.md."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    console = Console()
    try:
        cfg = load_eval_config(config, name=name)
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=console, transient=False) as progress:
            overall = progress.add_task(f"{cfg.name}: planning", total=None)
            current = {}

            def on_event(kind: str, **info) -> None:
                if kind == "judge_probe":
                    progress.update(overall, description=f"{cfg.name}: judge calibration probe")
                elif kind == "plan":
                    progress.update(overall, total=info["jobs"], completed=0)
                elif kind == "optimize":
                    progress.update(overall, description=f"{cfg.name}: optimizing PICACO run {info['run_name']}")
                elif kind == "job_start":
                    progress.update(overall, description=f"{cfg.name}: {info['key']}")
                    current["task"] = progress.add_task(f"  {info['label']}", total=info["total"])
                elif kind == "progress" and "task" in current:
                    progress.update(current["task"], completed=info["done"])
                elif kind in ("job_done", "job_cached"):
                    if "task" in current:
                        progress.remove_task(current.pop("task"))
                    progress.advance(overall)
                    if kind == "job_done":
                        s = info["run"].summary
                        overall_score = "-" if s.overall is None else f"{s.overall:.3f}"
                        progress.console.print(f"  {info['key']}: overall {overall_score}, missing {s.missing} of "
                                               f"{s.responses}, {info['run'].wall_s:.1f}s")
                elif kind == "report":
                    progress.update(overall, description=f"{cfg.name}: report written")

            outputs = evaluate(cfg, on_event=on_event)
    except PicacoError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    table = Table("method", "composition", "overall", "CV", "missing", "calls", "wall s")
    for row in outputs["summary"]:
        table.add_row(row["label"], row["composition"], "-" if row["overall"] is None else f"{row['overall']:.3f}",
                      "-" if row["cv"] is None else f"{row['cv']:.3f}", str(row["missing"]),
                      str(row["provider_calls"]), f"{row['wall_s']:.1f}")
    console.print(table)
    console.print(f"Report: {outputs['report']}")
