"""Shipped configs that run: every YAML in configs/ loaded and every run config estimated (reduced run:
3 prompts, 1 iteration, the simulator, datasets built from ../shared/data), by running the CI test
tests/datasets_prep/test_shipped_configs.py. Prints the figures and ends with one JSON line.

    .venv/bin/python bench/configs.py

shipped_configs_estimated is the number of run configs whose reduced estimate passed (goal: all of
shipped_run_configs); shipped_configs_loaded the number of configs (run, evaluation, data) that loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST = "tests/datasets_prep/test_shipped_configs.py"


def main() -> int:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST,
                               f"--junitxml={report}"], cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        cases = ET.parse(report).getroot().iter("testcase")
        outcome = {c.get("name"): not any(child.tag in ("failure", "error", "skipped") for child in c) for c in cases}
    passed = lambda prefix: sum(ok for name, ok in outcome.items() if name.startswith(prefix))  # noqa: E731
    total = lambda prefix: sum(1 for name in outcome if name.startswith(prefix))  # noqa: E731
    figures = {"shipped_configs": total("test_every_shipped_config_loads"),
               "shipped_configs_loaded": passed("test_every_shipped_config_loads"),
               "shipped_run_configs": total("test_every_run_config_runs"),
               "shipped_configs_estimated": passed("test_every_run_config_runs"),
               "seconds": round(seconds, 1), "pytest_exit_code": proc.returncode}
    if proc.returncode != 0:
        print(proc.stdout[-3000:], file=sys.stderr)
    for key, value in figures.items():
        print(f"{key:28s} {value}")
    print(json.dumps(figures))
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
