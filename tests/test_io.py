"""Files written atomically get the mode the umask gives, like any file the user's programs create,
not tempfile's private 0600: a worker under another account must be able to read a run it shares."""

from __future__ import annotations

import os
import stat

import pytest

from picaco.io import atomic_write_text, current_umask


@pytest.fixture
def umask():
    """umask(mask) sets the process umask for the test and restores the previous one afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)],
                         ids=["022", "027", "077"])
def test_atomic_write_respects_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    assert current_umask() == mask
    atomic_write_text(tmp_path / "run" / "result.json", "{}\n")
    assert stat.S_IMODE((tmp_path / "run" / "result.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o777 & ~mask
