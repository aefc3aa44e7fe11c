"""Fixtures of the evaluation tests; the recording provider lives in eval_helpers.py."""

from __future__ import annotations

import re

import pytest
from eval_helpers import TAPES, RecordingProvider, Tape

from picaco.llm.providers import PROVIDER_KINDS, register_kind


@pytest.fixture
def tape(request):
    """A fresh tape and the provider kind 'recording' (model names: target, judge, teacher, optimizer)."""
    register_kind("recording", RecordingProvider)
    key = re.sub(r"\W+", "_", request.node.name)
    TAPES[key] = Tape()
    yield TAPES[key], key
    TAPES.pop(key, None)


@pytest.fixture(scope="session", autouse=True)
def _unregister():
    yield
    PROVIDER_KINDS.pop("recording", None)


