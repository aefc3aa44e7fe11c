"""The bad-input and fault campaign (issue 10) as a table, with its figures and a final JSON line.

    .venv/bin/python bench/reliability.py

Every case of tests/reliability/ is run in a fresh directory: what the user did, what they saw, whether
that was one clear line (no traceback, naming the file, field or value) and whether anything was left
half-written. Then the campaign's figures (secrets, resume after kill -9, races, ...), each measured by
the function of tests/reliability/ that the tests also check.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "reliability"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from reliability_campaign import all_cases, all_measures, run_case  # noqa: E402


def main() -> int:
    cases = all_cases()
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="picaco-reliability-") as tmp:
        print("| id | area | what the user did | exit | what they saw | clear | disk |")
        print("|---|---|---|---|---|---|---|")
        for case in cases:
            v = run_case(case, Path(tmp) / case.id)
            verdicts.append(v)
            shown = v.shown.replace("|", "\\|")[:160]
            print(f"| {case.id} | {case.area} | {case.what} | {v.seen.exit_code} | {shown} | "
                  f"{'yes' if v.clear else 'NO'} | {'ok' if v.disk_ok else 'NO'} |", flush=True)
        for v in verdicts:
            if v.problems:
                print(f"  {v.case.id}: {'; '.join(v.problems)}")
        figures = {
            "bad_inputs_tried": len(verdicts),
            "bad_inputs_clear": sum(v.clear for v in verdicts),
            "half_written_after_error": sum(not v.disk_ok for v in verdicts),
        }
        print()
        for name, measure in all_measures().items():
            t0 = time.perf_counter()
            work = Path(tmp) / f"measure-{name}"
            work.mkdir()
            figures[name] = measure(work)
            print(f"{name}: {figures[name]}  ({time.perf_counter() - t0:.1f} s)", flush=True)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
