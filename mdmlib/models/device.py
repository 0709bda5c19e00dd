"""Which device to run on, with a clear error when CUDA is asked for and absent."""
from __future__ import annotations

import torch


class DeviceUnavailableError(ValueError):
    """A device was asked for that this machine (or this torch build) does not have."""


def resolve_device(device="cpu") -> torch.device:
    """"auto" -> CUDA if present, else CPU; anything else must exist here."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:N' or 'auto'") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"CUDA was asked for ({str(device)!r}) but there is none: torch.cuda.is_available() is False "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}). Use device='cpu' or 'auto'."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(f"{device} was asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
