"""Where a result came from: one record, written into the paper-scale and GPU results and every checkpoint card.

`environment()` is what besides the parameters decides a seeded result's last bits (it
keys the cache); `provenance(device)` adds what a reader needs to trust or repeat a result:
the versions, the device, the git commit and whether mdmlib was modified.
"""
from __future__ import annotations

import platform
import subprocess

from mdmlib import __version__
from mdmlib.infra.paths import project_root


def environment() -> dict:
    """The same seed gives identical numbers only with the same PyTorch, platform, CPU
    vector unit and thread count."""
    import torch  # here, so that importing this module stays light

    return {
        "torch": torch.__version__,
        "platform": f"{platform.system()}-{platform.machine()}",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }


def git_commit() -> dict | None:
    """The checkout's commit and whether mdmlib/ differs from it; None outside a git checkout."""
    root = project_root()
    if root is None or not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "mdmlib"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "mdmlib_modified": bool(dirty)}


def device_name(device) -> str:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.machine()}, {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads)"


def versions() -> dict:
    import torch

    try:
        import transformers

        tf = transformers.__version__
    except ImportError:
        tf = None
    return {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda, "transformers": tf, "mdmlib": __version__}


def provenance(device="cpu") -> dict:
    """The record: versions, environment, device and git commit."""
    return {"versions": versions(), "environment": environment(), "device": device_name(device), "git": git_commit()}
