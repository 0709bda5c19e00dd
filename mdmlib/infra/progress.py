"""Progress bars for long work, in one place.

Bars refresh at most once a second: a notebook kernel sends every refresh as a
message, and a test runner that reads them only after the cell ends (nbval)
loses messages past ZeroMQ's queue limit of about a thousand, the final
"idle" among them. MDMLIB_PROGRESS=0 turns the bars off (the notebook tests do).
"""
from __future__ import annotations

import os

from tqdm.auto import tqdm

REFRESH_SECONDS = 1.0


def progress_enabled() -> bool:
    value = os.environ.get("MDMLIB_PROGRESS", "1").strip().lower()
    on, off = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
    if value not in on + off:
        raise ValueError(f"MDMLIB_PROGRESS must be one of {on + off}, got {value!r}")
    return value in on


def progress(iterable=None, *, show: bool = True, **kwargs) -> tqdm:
    """tqdm.auto's bar, throttled, shown when `show` and MDMLIB_PROGRESS allow."""
    kwargs.setdefault("mininterval", REFRESH_SECONDS)
    return tqdm(iterable, disable=not (show and progress_enabled()), **kwargs)
