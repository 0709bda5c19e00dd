"""A wheel of the project holds every module, its console scripts start, and a notebook's
exercise check works from the installed wheel, outside the checkout."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mdmlib.infra.paths import PACKAGE, require_project_root

ROOT = require_project_root("the wheel test")
SCRIPTS = ("mdmlib-audit", "mdmlib-paper-scale", "mdmlib-gpu-check", "mdmlib-benchmarks", "mdmlib-run-notebooks",
           "mdmlib-book", "mdmlib-student", "mdmlib-mutants")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # the tracked files only, as a fresh clone has them
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist"), str(source)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    (found,) = (tmp / "dist").glob("mdmlib-*.whl")
    return found


def test_the_wheel_holds_every_module_and_the_console_scripts(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*.py")}
    assert modules - names == set(), "modules missing from the wheel"
    entry_points = next(zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith("entry_points.txt"))
    for script in SCRIPTS:
        assert f"{script} = " in entry_points


def test_an_exercise_check_and_a_console_script_work_from_the_installed_wheel(wheel, tmp_path):
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    env = {**os.environ, "PYTHONPATH": str(site), "MDMLIB_CACHE": str(tmp_path / "cache"), "MDMLIB_FIGURES": str(tmp_path / "fig")}
    code = ("import mdmlib; from mdmlib.exercises import check; from mdmlib.stats.metrics import sentence_entropy; "
            "print(mdmlib.__file__); check('05.1', sentence_entropy)")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    where, message = run.stdout.strip().splitlines()[:2]
    assert Path(where).is_relative_to(site) and "correct" in message
    audit = subprocess.run([str(site / "bin" / "mdmlib-audit"), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert audit.returncode == 0 and "usage" in audit.stdout, audit.stderr
