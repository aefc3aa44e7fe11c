"""Campaign cases: `picaco data build|show` on bad local files and paths, and `picaco draft-demos`.

Every build case uses one small local source (the `adaem` loader, a dozen prompts) in place of the hub
datasets, and a datasets cache inside the case's directory.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from reliability_campaign import Case, nothing_half_written, picaco, write_yaml

ROWS = [{"question": f"Is question {i} about the {w} a fair one to ask?"} for i, w in enumerate(
    ("apples", "rivers", "castles", "violins", "deserts", "harbors", "lanterns", "meadows", "glaciers", "orchards",
     "compasses", "thunder"))]


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _build(root: Path, source: dict, *args: str):
    """`picaco data build` of one composition whose only source is `source` (an adaem source entry)."""
    config = write_yaml(root / "data.yaml", {"compositions": {"confucianism": {
        "n_x": 2, "n_test": 3, "sources": [{"loader": "adaem", **source}]}}})
    return picaco("data", "build", "-c", "confucianism", "--config", str(config), "--out", str(root / "out"),
                  "--cache-dir", str(root / "hf"), *args)


def _build_file(name: str, content: str | bytes, **source):
    def act(root: Path):
        path = root / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return _build(root, {"path": str(path), **source})

    return act


def no_build(root: Path) -> str | None:
    if (root / "out").exists():
        return f"out/ was created: {sorted(str(p.relative_to(root)) for p in (root / 'out').rglob('*'))}"
    return nothing_half_written(root)


def _missing_file(root: Path):
    return _build(root, {"path": str(root / "nope.jsonl")})


def _bad_row_10(root: Path):
    lines = _jsonl(ROWS).splitlines()
    lines[9] = '{"question": "Is this row broken?" "topic": "x"}'
    return _build_file("a.jsonl", "\n".join(lines) + "\n")(root)


def _same_mtime(root: Path):
    """Build, rewrite the file with other rows but its old mtime (as `cp -p` does), build again."""
    path = root / "a.jsonl"
    path.write_text(_jsonl(ROWS), encoding="utf-8")
    first = _build(root, {"path": str(path)})
    if first.exit_code != 0:
        return first
    stat = path.stat()
    path.write_text(_jsonl([{"question": r["question"].replace("fair", "new")} for r in ROWS]), encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return _build(root, {"path": str(path)})


def _built_from_new_rows(root: Path) -> str | None:
    import polars as pl

    folder = root / "out" / "confucianism"
    if not (folder / "prompts.parquet").exists():
        return "no build written"
    prompts = set(pl.read_parquet(folder / "prompts.parquet")["prompt"])
    if prompts != {r["question"].replace("fair", "new") for r in ROWS}:
        return f"the build holds the old rows: {sorted(prompts)[:2]} ..."
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    recorded = manifest["sources"][0]["origin"]["files"][0]["sha256"]
    if recorded != hashlib.sha256((root / "a.jsonl").read_bytes()).hexdigest():
        return "the manifest's sha256 is not the file's"
    return nothing_half_written(root)


def _too_many(root: Path):
    (root / "a.jsonl").write_text(_jsonl(ROWS), encoding="utf-8")
    return _build(root, {"path": str(root / "a.jsonl")}, "--n-test", "1000")


def _out_under_a_file(root: Path):
    (root / "afile").write_text("x", encoding="utf-8")
    path = root / "a.jsonl"
    path.write_text(_jsonl(ROWS), encoding="utf-8")
    config = write_yaml(root / "data.yaml", {"compositions": {"confucianism": {
        "n_x": 2, "n_test": 3, "sources": [{"loader": "adaem", "path": str(path)}]}}})
    return picaco("data", "build", "-c", "confucianism", "--config", str(config), "--out", str(root / "afile" / "sub"),
                  "--cache-dir", str(root / "hf"))


def _nothing_but(*names: str):
    """Only these entries are in the case's directory: nothing was loaded, cached or written."""

    def check(root: Path) -> str | None:
        extra = sorted(p.name for p in root.iterdir() if p.name not in names)
        return f"left behind: {extra}" if extra else nothing_half_written(root)

    return check


def _show_a_file(root: Path):
    (root / "afile").write_text("x", encoding="utf-8")
    return picaco("data", "show", "--out", str(root / "afile"))


def _show_foreign_manifest(root: Path):
    (root / "out" / "x").mkdir(parents=True)
    (root / "out" / "x" / "manifest.json").write_text("[]", encoding="utf-8")
    return picaco("data", "show", "--out", str(root / "out"))


# -- draft-demos ----------------------------------------------------------------------------------------------

def _draft(root: Path, values: str, queries: Path, out: Path):
    return picaco("draft-demos", "--values", values, "--queries", str(queries), "--out", str(out),
                  "--cache-dir", str(root / "cache"))


def _queries(root: Path) -> Path:
    path = root / "q.txt"
    path.write_text("Should I skip my cousin's wedding for a concert?\n", encoding="utf-8")
    return path


def _draft_missing_queries(root: Path):
    return _draft(root, "Tradition", root / "absent.txt", root / "draft.yaml")


def _draft_unknown_value(root: Path):
    return _draft(root, "Tradition,Nope", _queries(root), root / "draft.yaml")


def _draft_out_under_a_file(root: Path):
    (root / "afile").write_text("x", encoding="utf-8")
    return _draft(root, "Tradition", _queries(root), root / "afile" / "draft.yaml")


CASES = [
    Case("D01", "datasets", "a local source file that does not exist", r"^error: adaem: .*nope\.jsonl does not exist$",
         "no out/", _missing_file, no_build),
    Case("D02", "datasets", "an empty source file", r"^error: adaem: .*a\.jsonl is empty$", "no out/",
         _build_file("a.jsonl", ""), no_build),
    Case("D03", "datasets", "a JSONL file whose row 10 is not JSON (was 2 copies of datasets' log + 'Trailing data "
         "at position 697')", r"^error: adaem: .*a\.jsonl line 10: not valid JSON \(Expecting ',' delimiter",
         "no out/", _bad_row_10, no_build),
    Case("D04", "datasets", "a CSV without the column `columns:` maps category to",
         r"^error: adaem: .*a\.csv has no column 'value' \(needed for category\).*columns present: question, topic$",
         "no out/", _build_file("a.csv", "question,topic\nIs it fine to ask this?,a\n", columns={"category": "value"}),
         no_build),
    Case("D05", "datasets", "the source file rewritten with its old mtime (cp -p), then built again (was: the old "
         "rows from the datasets cache)", r"built", "a build of the new rows, the manifest naming their sha256",
         _same_mtime, _built_from_new_rows, expect_exit=0),
    Case("D06", "datasets", "an unknown composition", r"^error: unknown composition 'stoicism'; choose from ",
         "nothing", lambda root: picaco("data", "build", "-c", "stoicism", "--out", str(root / "out")), no_build),
    Case("D07", "datasets", "--out under a file (was a NotADirectoryError traceback)",
         r"^error: --out .*afile/sub: .*afile is a file, not a folder$", "nothing loaded or cached",
         _out_under_a_file, _nothing_but("afile", "a.jsonl", "data.yaml")),
    Case("D08", "datasets", "a source file that is not UTF-8",
         r"^error: adaem: .*a\.csv is not UTF-8 \(byte 0xe9 at offset 15\)", "no out/",
         _build_file("a.csv", "question\nIs caf\u00e9 culture good?\n".encode("latin-1")), no_build),
    Case("D09", "datasets", "a JSON list with a syntax error on line 3",
         r"^error: adaem: .*a\.json line 3 column 16: not valid JSON \(Expecting value\)$", "no out/",
         _build_file("a.json", '[\n  {"question": "Is this fine?"},\n  {"question": oops}\n]\n'), no_build),
    Case("D10", "datasets", "more prompts asked for than the source holds",
         r"^error: composition confucianism asks for 1002 prompts \(X 2 \+ test 1000\) but its sources hold 12",
         "no out/", _too_many, no_build),
    Case("D11", "datasets", "`data show --out` naming a file", r"^error: --out .*afile is a file", "nothing",
         _show_a_file, _nothing_but("afile")),
    Case("D12", "datasets", "`data show` over a manifest that is a JSON list (was a TypeError traceback)",
         r"^error: .*out/x/manifest\.json is not a datasets manifest", "the folder as it was",
         _show_foreign_manifest, _nothing_but("out")),
    Case("D13", "draft-demos", "a queries file that does not exist", r"^error: queries file .*absent\.txt does not exist$",
         "nothing (no cache opened)", _draft_missing_queries, _nothing_but()),
    Case("D14", "draft-demos", "an unknown value name", r"^error: unknown value 'Nope'; known values: ",
         "nothing (no cache opened)", _draft_unknown_value, _nothing_but("q.txt")),
    Case("D15", "draft-demos", "--out under a file (was a traceback, after the calls were paid for)",
         r"^error: --out .*afile/draft\.yaml: .*afile is a file, not a folder$", "nothing (no call made)",
         _draft_out_under_a_file, _nothing_but("afile", "q.txt")),
]
