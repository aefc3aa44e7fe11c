"""Benchmark: build all five compositions from the real samples in ../shared/data plus synthetic fixtures.

Sources without a shared sample (BeaverTails, Do-Not-Answer, HoneSet, HH-RLHF helpful-base, NYT-Dilemma,
ValueLex, AdAEM) are SYNTHETIC fixture files in the hub/documented schema, written by this script into a
temporary folder (datasets_prep.synthetic); nothing is copied from ../shared/data. Everything is built
twice (cold datasets cache, then warm) into two folders and the files are compared byte for byte.
Prints figures, then one final JSON line with `build_all_s` and `identical_rebuild`.

    .venv/bin/python bench/datasets_build.py [--n-x 50] [--n-test 800] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared" / "data"
# Scripts in bench/ must never shadow a library (a bench/datasets.py once hid Hugging Face `datasets`):
# keep this folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from datasets_prep import COMPOSITIONS, build_all, load_data_config, resolve_compositions, write_all  # noqa: E402
from datasets_prep.demos import demonstration_queries  # noqa: E402
from datasets_prep.synthetic import write_fixtures  # noqa: E402

SHARED_SOURCES = {
    "hh_rlhf/harmless-base": SHARED / "hh_rlhf" / "harmless-base-test.jsonl.gz",
    "harmfulqa": SHARED / "harmfulqa" / "harmfulqa.json",
    "real_toxicity_prompts": SHARED / "realtoxicityprompts" / "toxic.jsonl",
    "just_eval_instruct": SHARED / "just_eval_instruct" / "example_data.json",
}


def write_config(folder: Path) -> Path:
    fixtures = write_fixtures(folder / "synthetic")
    sources = {name: {"path": str(p)} for name, p in {**SHARED_SOURCES, **fixtures}.items()}
    path = folder / "datasets.yaml"
    path.write_text(yaml.safe_dump({"sources": sources}, sort_keys=True), encoding="utf-8")
    return path


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run(config_path: Path, out: Path, cache: Path, n_x: int, n_test: int, exclude: dict) -> tuple[float, list]:
    t0 = time.perf_counter()
    data_cfg, base = load_data_config(config_path)
    comps = resolve_compositions(None, data_cfg, base_dir=base, n_x=n_x, n_test=n_test)
    results = build_all(comps, exclude, cache_dir=cache)
    write_all(results, out)
    return time.perf_counter() - t0, results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-x", type=int, default=50)
    parser.add_argument("--n-test", type=int, default=800)
    parser.add_argument("--keep", type=Path, help="copy the first build here")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"error: {SHARED} not found (clone the repo with shared/ beside it)", file=sys.stderr)
        return 2

    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    tmp = Path(tempfile.mkdtemp(prefix="picaco-bench-datasets-"))
    try:
        config_path = write_config(tmp)
        exclude = {name: demonstration_queries(name) for name in COMPOSITIONS}
        cold_s, results = run(config_path, tmp / "out1", tmp / "cache", args.n_x, args.n_test, exclude)
        warm_s, _ = run(config_path, tmp / "out2", tmp / "cache", args.n_x, args.n_test, exclude)
        first, second = files_of(tmp / "out1"), files_of(tmp / "out2")
        identical = first == second
        print(f"{'composition':<18} {'loaded':>7} {'pool':>6} {'X':>4} {'test':>5}  dropped")
        for r in results:
            c = r.manifest["counts"]
            dropped = {k: sum(v.values()) for k, v in c["dropped"].items()}
            print(f"{r.config.name:<18} {sum(c['prompts'].values()):>7} {sum(c['pool'].values()):>6} {r.x.height:>4} {r.test.height:>5}  {dropped}")
        print(f"build all five, cold datasets cache: {cold_s:.2f} s; rebuild, warm cache: {warm_s:.2f} s")
        print(f"{len(first)} files, {sum(len(b) for b in first.values()) / 1e6:.2f} MB; identical on rebuild: {identical}")
        if args.keep:
            shutil.copytree(tmp / "out1", args.keep, dirs_exist_ok=True)
        summary = {
            "build_all_s": round(cold_s, 3),
            "rebuild_warm_s": round(warm_s, 3),
            "identical_rebuild": identical,
            "compositions": len(results),
            "n_x": args.n_x,
            "n_test": args.n_test,
            "prompts_loaded": sum(sum(r.manifest["counts"]["prompts"].values()) for r in results),
            "pool": {r.config.name: sum(r.manifest["counts"]["pool"].values()) for r in results},
            "demonstrations_excluded": {r.config.name: r.manifest["demonstrations"]["excluded_prompts"] for r in results},
        }
        print(json.dumps(summary, sort_keys=True))
        return 0 if identical else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
