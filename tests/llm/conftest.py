"""The fake provider registered for a test (tests/llm/fake_llm.py); test files of the call path use it."""

from __future__ import annotations

import pytest
from fake_llm import FakeProvider

from picaco.llm.providers import PROVIDER_KINDS, register_kind


@pytest.fixture
def fake_provider():
    register_kind("fake", FakeProvider)
    FakeProvider.script, FakeProvider.calls, FakeProvider.embed_calls = [], [], []
    FakeProvider.in_flight = FakeProvider.max_in_flight = 0
    FakeProvider.delay_s, FakeProvider.reply_text = 0.0, None
    yield FakeProvider
    PROVIDER_KINDS.pop("fake", None)
