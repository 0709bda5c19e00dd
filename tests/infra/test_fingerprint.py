"""Cache keys come from the code itself: a change to any module a cached run imports,
directly or through others, makes the cache miss."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mdmlib.infra.fingerprint import code_fingerprint, dependencies, package_fingerprint
from mdmlib.infra.paths import PACKAGE


def test_dependencies_follow_imports_through_other_modules():
    found = dict(dependencies("mdmlib.runs.precision"))
    # imported directly, through mdm.step / grid_law, and the packages on the way
    for module in ("mdmlib.runs.precision", "mdmlib.mdm.step", "mdmlib.precision.formats", "mdmlib.infra.checks",
                   "mdmlib.precision", "mdmlib"):
        assert module in found, module
    assert "mdmlib.tools.book" not in found and "mdmlib.audit.core" not in found
    assert code_fingerprint("mdmlib.runs.precision") == code_fingerprint("mdmlib.runs.precision") != code_fingerprint("mdmlib.infra.checks")
    assert len(package_fingerprint()) == 12


def test_bad_module_names_are_refused():
    with pytest.raises(ValueError, match="not a module of mdmlib"):
        code_fingerprint("numpy")
    with pytest.raises(ValueError, match="no source file"):
        code_fingerprint("mdmlib.nothing_here")
    with pytest.raises(ValueError, match="at least one module"):
        code_fingerprint()


CACHED_RUN = textwrap.dedent("""
    import json, sys
    import torch
    from mdmlib.runs import precision
    calls = []
    real = precision.law_on_grid
    precision.law_on_grid = lambda *a, **k: calls.append(1) or real(*a, **k)
    precision.step_grid_law(torch.tensor([0.5, 0.25, 0.25]), 0.01)
    print(json.dumps({"computed": len(calls)}))
""")


def _run_in(copy: Path, cache: Path) -> int:
    env = {**os.environ, "PYTHONPATH": str(copy), "MDMLIB_CACHE": str(cache), "MDMLIB_FIGURES": str(cache / "fig")}
    done = subprocess.run([sys.executable, "-c", CACHED_RUN], cwd=copy, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])["computed"]


def test_a_change_to_an_indirect_import_misses_the_cache(tmp_path):
    # a copy of the package, whose mdmlib/infra/checks.py the cached run reaches only
    # through mdm.step and precision.categorical: a hand-kept list of files missed it
    copy = tmp_path / "project"
    shutil.copytree(PACKAGE, copy / "mdmlib", ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "cache"
    assert _run_in(copy, cache) == 1
    assert _run_in(copy, cache) == 0  # unchanged code: read from the cache
    checks = copy / "mdmlib" / "infra" / "checks.py"
    checks.write_text(checks.read_text() + "\n# a change that could have changed a result\n")
    assert _run_in(copy, cache) == 1  # the fingerprint changed: computed again
