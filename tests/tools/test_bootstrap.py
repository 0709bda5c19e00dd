"""The set-up command's decisions, with pip and every other subprocess replaced by recorders."""
import subprocess
from pathlib import Path

import pytest

from mdmlib.tools import bootstrap


class Recorder:
    """Stands in for subprocess.call / subprocess.run: records commands, answers `status`."""

    def __init__(self, status=0):
        self.commands, self.kwargs, self.status = [], [], status

    def __call__(self, cmd, **kwargs):
        self.commands.append(list(cmd))
        self.kwargs.append(kwargs)
        status = self.status(cmd) if callable(self.status) else self.status
        return subprocess.CompletedProcess(cmd, status, "", "") if "capture_output" in kwargs else status


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder with its own pyproject.toml, and an environment folder."""
    root, prefix = tmp_path / "project", tmp_path / "env"
    root.mkdir(), prefix.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "mdmlib"\n')
    monkeypatch.setattr(bootstrap, "ROOT", root)
    monkeypatch.setattr(bootstrap.importlib.util, "find_spec", lambda name: object())  # torch is there
    return root, prefix


def _pip_installs(recorder):
    return [c for c in recorder.commands if c[1:4] == ["-m", "pip", "install"] and "--dry-run" not in c]


def test_second_run_skips_pip(project, monkeypatch):
    root, prefix = project
    call = Recorder()
    monkeypatch.setattr(bootstrap.subprocess, "call", call)
    assert bootstrap.set_up(prefix, "[test]") == 0
    assert len(_pip_installs(call)) == 1 and (prefix / bootstrap.STAMP).exists()
    assert bootstrap.set_up(prefix, "[test]") == 0
    assert bootstrap.set_up(prefix, "") == 0  # the test extra covers the plain install
    assert len(_pip_installs(call)) == 1
    (root / "pyproject.toml").write_text('[project]\nname = "mdmlib"\nversion = "0.2"\n')
    assert bootstrap.set_up(prefix, "[test]") == 0
    assert len(_pip_installs(call)) == 2  # the metadata changed: install again


def test_failed_install_leaves_no_stamp(project, monkeypatch):
    root, prefix = project
    call = Recorder(status=1)
    monkeypatch.setattr(bootstrap.subprocess, "call", call)
    assert bootstrap.set_up(prefix, "") == 1
    assert not (prefix / bootstrap.STAMP).exists()
    assert bootstrap.set_up(prefix, "") == 1 and len(_pip_installs(call)) == 2


def test_missing_torch_reinstalls_despite_the_stamp(project, monkeypatch):
    root, prefix = project
    call = Recorder()
    monkeypatch.setattr(bootstrap.subprocess, "call", call)
    bootstrap.set_up(prefix, "")
    monkeypatch.setattr(bootstrap.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(bootstrap, "install_torch", lambda: None)
    bootstrap.set_up(prefix, "")
    assert len(_pip_installs(call)) == 2


def _conda(tmp_path: Path, base: bool) -> Path:
    prefix = tmp_path / ("conda" if base else "conda/envs/mdm")
    (prefix / "conda-meta").mkdir(parents=True)
    if base:
        (prefix / "condabin").mkdir()
    return prefix


def test_conda_base_is_refused_with_instructions(tmp_path):
    base = _conda(tmp_path, base=True)
    with pytest.raises(SystemExit, match="conda env create -f environment.yml"):
        bootstrap.install_target(base, base, {})


def test_activated_conda_base_is_refused_even_without_condabin(tmp_path):
    prefix = tmp_path / "miniforge"
    (prefix / "conda-meta").mkdir(parents=True)
    environ = {"CONDA_PREFIX": str(prefix), "CONDA_DEFAULT_ENV": "base"}
    with pytest.raises(SystemExit, match="base environment"):
        bootstrap.install_target(prefix, prefix, environ)
    environ = {"CONDA_EXE": str(prefix / "bin" / "conda")}
    with pytest.raises(SystemExit, match="base environment"):
        bootstrap.install_target(prefix, prefix, environ)


def test_where_the_project_is_installed(tmp_path):
    conda_env = _conda(tmp_path, base=False)
    base = _conda(tmp_path, base=True)
    # a conda environment of its own, even with base's variables still set by the shell
    assert bootstrap.install_target(conda_env, conda_env, {"CONDA_EXE": str(base / "bin" / "conda")}) == "here"
    # a virtual environment (made from any Python, conda's base included)
    assert bootstrap.install_target(tmp_path / ".venv", base, {"CONDA_PREFIX": str(base), "CONDA_DEFAULT_ENV": "base"}) == "here"
    # a plain system Python, even while conda's base is active in the shell
    system = tmp_path / "usr"
    system.mkdir()
    assert bootstrap.install_target(system, system, {"CONDA_PREFIX": str(base), "CONDA_DEFAULT_ENV": "base"}) == "venv"


@pytest.mark.parametrize("local_wheel", [True, False])
def test_torch_probe_is_quiet(monkeypatch, local_wheel):
    monkeypatch.setattr(bootstrap.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(bootstrap.platform, "system", lambda: "Linux")
    monkeypatch.setattr(bootstrap.shutil, "which", lambda name: None)
    run, call = Recorder(status=0 if local_wheel else 1), Recorder()
    monkeypatch.setattr(bootstrap.subprocess, "run", run)
    monkeypatch.setattr(bootstrap.subprocess, "call", call)
    bootstrap.install_torch()
    assert len(run.commands) == 1 and "--dry-run" in run.commands[0] and run.kwargs[0].get("capture_output")
    (installed,) = call.commands
    assert ("--no-index" in installed) == local_wheel and (bootstrap.CPU_INDEX in installed) != local_wheel


def test_main_makes_a_venv_once_and_runs_inside_it(monkeypatch, tmp_path):
    monkeypatch.setattr(bootstrap, "VENV", tmp_path / ".venv")
    monkeypatch.setattr(bootstrap, "install_target", lambda *a: "venv")
    check_call, call = Recorder(), Recorder()
    monkeypatch.setattr(bootstrap.subprocess, "check_call", check_call)
    monkeypatch.setattr(bootstrap.subprocess, "call", call)
    assert bootstrap.main(["pytest", "tests", "-x"]) == 0
    assert check_call.commands[0][-2:] == ["venv", str(tmp_path / ".venv")]
    assert call.commands[0][1:] == ["-m", "mdmlib.tools.bootstrap", "pytest", "tests", "-x"]
    bootstrap.venv_python().parent.mkdir(parents=True)
    bootstrap.venv_python().touch()  # now it exists: reused, not made again
    assert bootstrap.main(["run"]) == 0 and len(check_call.commands) == 1 and len(call.commands) == 2
    assert bootstrap.main(["teach"]) == 2
