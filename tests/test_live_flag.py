"""Live-provider tests never run by accident: a key in the environment is not enough, --live is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_live_tests_are_skipped_without_the_flag_even_with_keys():
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs",
                          "tests/llm/test_live_providers.py"],
                         cwd=ROOT, env={"OPENAI_API_KEY": "sk-not-a-real-key", "GEMINI_API_KEY": "x",
                                        "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
                         capture_output=True, text=True, timeout=120)
    assert "run with --live" in out.stdout and " passed" not in out.stdout and " failed" not in out.stdout, out.stdout
