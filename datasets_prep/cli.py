"""`picaco data build|show`: build the prompt sets of the value compositions and print their counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from picaco.base.errors import PicacoError
from picaco.io import check_output_path

from .config import COMPOSITIONS, load_data_config, resolve_compositions
from .demos import demonstration_queries
from .errors import DataError
from .pipeline import build_all, step_count, write_all

app = typer.Typer(help="Collect task prompts X and test sets from the paper's public datasets (App. B).", no_args_is_help=True)
DEFAULT_OUT = Path("artifacts/datasets")


def _fail(err: Exception) -> typer.Exit:
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[red]error:[/red] {escape(str(err))}")
    return typer.Exit(2)


def _quiet_datasets() -> None:
    # `datasets` draws its own tqdm bars per split; the rich bar below is the one progress display.
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


@app.command()
def build(
    composition: Annotated[
        Optional[list[str]], typer.Option("--composition", "-c", help=f"one of {', '.join(COMPOSITIONS)} (repeatable)")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="build all five compositions")] = False,
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML with source/composition overrides")] = None,
    out: Annotated[Path, typer.Option("--out", help="output root; one folder per composition")] = DEFAULT_OUT,
    n_x: Annotated[Optional[int], typer.Option("--n-x", min=0, help="task prompts X (paper: 50)")] = None,
    n_test: Annotated[Optional[int], typer.Option("--n-test", min=0, help="test prompts (paper: 800)")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="sampling seed")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="datasets cache (default: HF cache)")] = None,
) -> None:
    """Load the sources, filter and de-duplicate, sample X and the test set, write Parquet + manifest."""
    console = Console(highlight=False)
    try:
        if all_ == bool(composition):
            raise DataError("give either --composition <name> (repeatable) or --all")
        data_cfg, base_dir = load_data_config(config) if config else (None, None)
        comps = resolve_compositions(
            None if all_ else composition, data_cfg, base_dir=base_dir, n_x=n_x, n_test=n_test, seed=seed
        )
        check_output_path(out, "--out", folder=True)  # before the sources are loaded, not after
        exclude = {c.name: demonstration_queries(c.name) for c in comps}
        _quiet_datasets()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress:
            task = progress.add_task("datasets", total=step_count(comps))

            def on_step(label: str) -> None:
                progress.update(task, advance=1, description=label)

            results = build_all(comps, exclude, cache_dir=cache_dir, on_step=on_step)
            paths = write_all(results, out, on_step=on_step)
    except PicacoError as err:
        raise _fail(err) from None
    table = Table(title="built")
    for col in ("composition", "pool", "X", "test", "folder"):
        table.add_column(col)
    for result, path in zip(results, paths):
        counts = result.manifest["counts"]
        table.add_row(result.config.name, str(sum(counts["pool"].values())), str(result.x.height), str(result.test.height), str(path))
    console.print(table)


@app.command()
def show(
    out: Annotated[Path, typer.Option("--out", help="output root given to build")] = DEFAULT_OUT,
    composition: Annotated[Optional[list[str]], typer.Option("--composition", "-c")] = None,
) -> None:
    """Print prompt counts per source (loaded, dropped, pool, X, test) of built compositions."""
    console = Console(highlight=False)
    try:
        if out.exists() and not out.is_dir():
            raise DataError(f"--out {out} is a file, not the folder `picaco data build` wrote")
        manifests = sorted(out.glob("*/manifest.json"))
        if composition:
            manifests = [m for m in manifests if m.parent.name in composition]
            missing = sorted(set(composition) - {m.parent.name for m in manifests})
            if missing:
                raise DataError(f"no build of {', '.join(missing)} under {out}; run `picaco data build -c {missing[0]}`")
        if not manifests:
            raise DataError(f"no built datasets under {out}; run `picaco data build --all`")
        for path in manifests:
            title, rows = _manifest_counts(path)
            table = Table(title=title)
            for col in ("source", "prompts", "dropped", "pool", "X", "test"):
                table.add_column(col, justify="left" if col == "source" else "right")
            for row in rows:
                table.add_row(*map(str, row))
            console.print(table)
    except PicacoError as err:
        raise _fail(err) from None


def _manifest_counts(path: Path) -> tuple[str, list[tuple]]:
    """A manifest's table title and its rows (source, prompts, dropped, pool, X, test)."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        counts = manifest["counts"]
        title = f"{manifest['composition']} (seed {manifest['seed']}, X {counts['x_total']}, test {counts['test_total']})"
        rows = [
            (
                src,
                n,
                sum(per.get(src, 0) for per in counts["dropped"].values()),
                counts["pool"].get(src, 0),
                sum(counts["x"].get(src, {}).values()),
                sum(counts["test"].get(src, {}).values()),
            )
            for src, n in counts["prompts"].items()
        ]
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as err:  # not JSON, or not a manifest's shape
        raise DataError(f"{path} is not a datasets manifest ({type(err).__name__}: {err})") from None
    return title, rows
