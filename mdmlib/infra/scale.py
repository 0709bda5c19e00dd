"""The one place that reads the scale: MDMLIB_SCALE = quick | full | paper.

quick: the default, for tests and CI (the whole suite in minutes on 2 CPU cores);
full:  the figures a reader sees (a laptop CPU, under an hour);
paper: the paper's own settings (a GPU).
"""
from __future__ import annotations

import os

SCALES = ("quick", "full", "paper")


def current_scale() -> str:
    scale = os.environ.get("MDMLIB_SCALE", "quick").strip().lower()
    if scale not in SCALES:
        raise ValueError(f"MDMLIB_SCALE must be one of {SCALES}, got {scale!r}")
    return scale


def by_scale(quick, full, paper=None):
    """The value for the current scale; `paper` defaults to `full`."""
    return {"quick": quick, "full": full, "paper": full if paper is None else paper}[current_scale()]
