"""One-command set-up: `python3 -m mdmlib.tools.bootstrap run|pytest`.

Standard library only, because it runs before anything is installed. It
1. picks where to install: the active virtual environment or conda environment
   (never conda's base environment: it stops and says how to make one), or else a
   `.venv` beside the project, created once, and re-runs itself inside it;
2. installs PyTorch the way this machine wants it (see `install_torch`) and the
   project (`pip install -e .`, with the test extra for `pytest`), once: a stamp in
   the environment records a hash of pyproject.toml, the extra and the project's
   folder, and later runs skip pip (so they need no package index) until one changes;
3. runs the job: `run` executes every notebook, `pytest` runs pytest (mdmlib's tests + nbval).
Extra arguments after the job name are passed on (to pytest, or to the runner).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from mdmlib.infra.paths import require_project_root

ROOT = require_project_root("mdmlib.tools.bootstrap")
VENV = ROOT / ".venv"
STAMP = "mdmlib-setup.json"  # in the environment's folder
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH = "torch>=2.3"
JOBS = {
    "run": ("", [sys.executable, "-m", "mdmlib.tools.run_notebooks"]),
    "pytest": ("[test]", [sys.executable, "-m", "pytest"]),
}
CONDA_BASE_MESSAGE = (
    "This Python is conda's base environment ({prefix}); installing the project there could "
    "break conda itself. Create an environment for it and run the command inside it:\n"
    "    conda env create -f environment.yml\n"
    "    conda activate mdm-companion\n"
    "or run the command with a Python from outside conda, which gets its own .venv."
)


def is_conda_base(prefix: Path, environ: dict) -> bool:
    """Whether `prefix` is the root (base) environment of a conda installation: only the
    base holds condabin/, and an activated base says so in CONDA_DEFAULT_ENV."""
    if not (prefix / "conda-meta").is_dir():
        return False
    if (prefix / "condabin").is_dir():
        return True
    active = environ.get("CONDA_PREFIX")
    if active and Path(active).resolve() == prefix.resolve() and environ.get("CONDA_DEFAULT_ENV") == "base":
        return True
    conda_exe = environ.get("CONDA_EXE")  # <base>/bin/conda (or <base>\Scripts\conda.exe)
    return bool(conda_exe) and Path(conda_exe).resolve().parent.parent == prefix.resolve()


def install_target(prefix: Path, base_prefix: Path, environ: dict) -> str:
    """'here' to install into the running environment (a virtual or conda environment),
    'venv' to create or reuse .venv. Exits with a message for conda's base environment."""
    if prefix.resolve() != base_prefix.resolve():
        return "here"  # a virtual environment, even one made from conda's Python
    if is_conda_base(prefix, environ):
        sys.exit(CONDA_BASE_MESSAGE.format(prefix=prefix))
    if (prefix / "conda-meta").is_dir():
        return "here"  # a conda environment of its own
    return "venv"


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def pip(*args: str) -> int:
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *args]
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd)


def pip_can_install_quietly(*args: str) -> bool:
    """Would `pip install args` succeed? A dry run with its output captured, so that
    a 'not found' from a probe never reaches the screen (pip >= 22.2; older pips
    do not know --dry-run and answer no)."""
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--dry-run", "--quiet", *args]
    return subprocess.run(cmd, capture_output=True, text=True).returncode == 0


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
    local = ("--no-index", "--no-deps", TORCH)
    if pip_can_install_quietly(*local) and pip(*local) == 0:
        return
    if pip(TORCH, "--index-url", CPU_INDEX) != 0:
        sys.exit("could not install a CPU build of torch; install torch yourself and rerun")


def setup_key(extra: str) -> str:
    """What the set-up depends on: the project's metadata, its folder and the extra."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    digest.update(f"\0{ROOT}\0{extra}".encode())
    return digest.hexdigest()


def _read_stamp(prefix: Path) -> dict:
    try:
        stamp = json.loads((prefix / STAMP).read_text())
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def is_set_up(prefix: Path, extra: str) -> bool:
    """Installed before with this pyproject.toml and extra (the test extra covers the plain one),
    and torch is still there."""
    stamp = _read_stamp(prefix)
    done = stamp.get(extra) == setup_key(extra) or (extra == "" and stamp.get("[test]") == setup_key("[test]"))
    return done and importlib.util.find_spec("torch") is not None


def record_setup(prefix: Path, extra: str) -> None:
    stamp = _read_stamp(prefix)
    stamp[extra] = setup_key(extra)
    tmp = prefix / f".{STAMP}.tmp"
    tmp.write_text(json.dumps(stamp, indent=1, sort_keys=True))
    os.replace(tmp, prefix / STAMP)


def set_up(prefix: Path, extra: str) -> int:
    """Install torch and the project into the environment at `prefix`, unless the stamp says
    it was done with the same inputs. Returns pip's exit status (0 when skipped)."""
    if is_set_up(prefix, extra):
        print(f"+ set-up unchanged since the last run ({prefix / STAMP}): no pip", flush=True)
        return 0
    install_torch()
    status = pip("-e", f"{ROOT}{extra}")
    if status == 0:
        record_setup(prefix, extra)
    return status


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in JOBS:
        print(__doc__)
        return 2
    job, rest = argv[0], argv[1:]
    if install_target(Path(sys.prefix), Path(sys.base_prefix), dict(os.environ)) == "venv":
        if not venv_python().exists():
            print(f"+ {sys.executable} -m venv {VENV.name}", flush=True)
            subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
        return subprocess.call([str(venv_python()), "-m", "mdmlib.tools.bootstrap", *argv], cwd=ROOT)
    extra, command = JOBS[job]
    if set_up(Path(sys.prefix), extra) != 0:
        return 1
    return subprocess.call(command + rest, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
