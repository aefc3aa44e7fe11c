"""`picaco export` and `picaco serve`: the functions the `picaco` command mounts.

    from picaco.deploy.cli import export_command, serve_command
    app.command("export")(export_command)
"""

from __future__ import annotations

from pathlib import Path

import typer

from picaco.base.errors import PicacoError
from picaco.deploy.export import export_run
from picaco.deploy.serving import Served
from picaco.deploy.upstream import UPSTREAMS


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def export_command(run: str = typer.Option(..., "--run", help="the run's name (its folder under --runs-dir)"),
                   runs_dir: Path = typer.Option(Path("artifacts/runs"), help="where the runs live"),
                   out: Path = typer.Option(..., "--out", help="folder for the exported files")) -> None:
    """Export a finished run's best instruction: system_prompt.txt, instruction.json (provenance), INSTRUCTION.md."""
    try:
        paths = export_run(runs_dir, run, out)
    except PicacoError as exc:
        _fail(exc)
    typer.echo(f"exported run '{run}': " + ", ".join(str(p) for p in paths))


def serve_command(run: str = typer.Option(..., "--run", help="the run's name (its folder under --runs-dir)"),
                  runs_dir: Path = typer.Option(Path("artifacts/runs"), help="where the runs live"),
                  port: int = typer.Option(8787, help="port on 127.0.0.1 (0: a free one)"),
                  target: str | None = typer.Option(None, help="'provider/model' or a run config YAML to forward "
                                                             "to (default: the run's own target)"),
                  demonstrations: bool = typer.Option(False, "--demonstrations",
                                                      help="send Fig. 7's system prompt: the instruction and the "
                                                           "run's demonstrations"),
                  upstream: str = typer.Option("fast", help="how serve reaches the target: fast (HTTP/1.1 with "
                                               "httptools, no proxy) or httpx (honours HTTP(S)_PROXY)"),
                  loop: str = typer.Option("auto", help="event loop: auto (uvloop where installed), uvloop, asyncio")
                  ) -> None:
    """Serve an OpenAI-compatible endpoint that adds the run's instruction to every chat request."""
    if not 0 <= port <= 65535:
        _fail(ValueError(f"--port must be within [0, 65535], got {port}"))
    if upstream not in UPSTREAMS:
        _fail(ValueError(f"--upstream must be one of {', '.join(UPSTREAMS)}, got {upstream!r}"))
    if loop not in ("auto", "uvloop", "asyncio"):
        _fail(ValueError(f"--loop must be auto, uvloop or asyncio, got {loop!r}"))
    try:
        served = Served(runs_dir, run, port=port, target=target, demonstrations=demonstrations, upstream=upstream,
                        loop=loop)
    except PicacoError as exc:
        _fail(exc)
    typer.echo(f"picaco serve: run '{run}' -> {served.target.label}; base_url {served.url}/v1 (Ctrl-C stops)")
    served.serve_forever()
