"""`picaco export` and `picaco serve`: the functions the `picaco` command mounts.

    from picaco.deploy.cli import export_command, serve_command
    app.command("export")(export_command)
"""

from __future__ import annotations

from pathlib import Path

import typer

from picaco.base.errors import PicacoError


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def export_command(run: str = typer.Option(..., "--run", help="the run's name (its folder under --runs-dir)"),
                   runs_dir: Path = typer.Option(Path("artifacts/runs"), help="where the runs live"),
                   out: Path = typer.Option(..., "--out", help="folder for the exported files")) -> None:
    """Export a finished run's best instruction: system_prompt.txt, instruction.json (provenance), INSTRUCTION.md."""
    from picaco.deploy.export import export_run

    try:
        paths = export_run(runs_dir, run, out)
    except PicacoError as exc:
        _fail(exc)
    typer.echo(f"exported run '{run}': " + ", ".join(str(p) for p in paths))

