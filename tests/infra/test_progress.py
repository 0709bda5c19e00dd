"""Progress bars: on by default, off with MDMLIB_PROGRESS=0, and off under the notebook tests."""
import os
import runpy

import pytest

from mdmlib.infra.paths import require_project_root
from mdmlib.infra.progress import REFRESH_SECONDS, progress, progress_enabled

ROOT = require_project_root("the progress tests")


def test_progress_switch(monkeypatch):
    monkeypatch.setenv("MDMLIB_PROGRESS", "1")
    with progress(range(3)) as bar:
        assert not bar.disable and bar.mininterval == REFRESH_SECONDS and list(bar) == [0, 1, 2]
    with progress(range(3), show=False) as bar:
        assert bar.disable
    monkeypatch.setenv("MDMLIB_PROGRESS", "0")
    with progress(range(3)) as bar:
        assert bar.disable and list(bar) == [0, 1, 2]
    monkeypatch.setenv("MDMLIB_PROGRESS", "maybe")
    with pytest.raises(ValueError, match="MDMLIB_PROGRESS"):
        progress_enabled()


def test_notebook_tests_run_without_progress_bars(monkeypatch):
    # nbval would lose the kernel's final message under a flood of bar updates (see notebooks/conftest.py)
    monkeypatch.setattr(os, "environ", {})
    runpy.run_path(str(ROOT / "notebooks" / "conftest.py"))
    assert not progress_enabled()
