"""One-command set-up: `python3 -m mdmlib.bootstrap run|pytest`.

Standard library only, because it runs before anything is installed. It
1. makes a virtual environment `.venv` beside the project, unless one (or a
   conda environment) is already active, and re-runs itself inside it;
2. installs PyTorch the way this machine wants it (see `install_torch`);
3. installs the project (`pip install -e .`, with the test extra for `pytest`);
4. runs the job: `run` executes every notebook, `pytest` runs pytest (mdmlib's tests + nbval).
Extra arguments after the job name are passed on (to pytest, or to the runner).
"""
from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
JOBS = {
    "run": ("", [sys.executable, "-m", "mdmlib.run_notebooks"]),
    "pytest": ("[test]", [sys.executable, "-m", "pytest"]),
}


def in_virtual_env() -> bool:
    return sys.prefix != sys.base_prefix or bool(os.environ.get("CONDA_PREFIX"))


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def pip(*args: str) -> int:
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *args]
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd)


def install_torch() -> None:
    """Install torch unless present. On a Linux machine without an NVIDIA GPU
    the CUDA wheels (several GB) are useless, so take a CPU build: first one
    that pip can find locally (a wheel directory in pip's configuration, as on
    offline CI machines), otherwise PyTorch's CPU index. Everywhere else the
    project's own dependency pulls the normal torch."""
    if importlib.util.find_spec("torch") is not None:
        return
    cpu_only_linux = platform.system() == "Linux" and shutil.which("nvidia-smi") is None
    if not cpu_only_linux:
        return
    if pip("--no-index", "--no-deps", "torch>=2.3") == 0:
        return
    if pip("torch>=2.3", "--index-url", CPU_INDEX) != 0:
        sys.exit("could not install a CPU build of torch; install torch yourself and rerun")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in JOBS:
        print(__doc__)
        return 2
    job, rest = argv[0], argv[1:]
    if not in_virtual_env():
        if not venv_python().exists():
            print(f"+ {sys.executable} -m venv {VENV.name}", flush=True)
            subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
        return subprocess.call([str(venv_python()), "-m", "mdmlib.bootstrap", *argv], cwd=ROOT)
    install_torch()
    extra, command = JOBS[job]
    if pip("-e", f"{ROOT}{extra}") != 0:
        return 1
    return subprocess.call(command + rest, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
