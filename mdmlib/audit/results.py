"""What the audit finds at one probe (`ProbeResult`), whichever way it was found, and its
JSON form; `CONFIDENCE` is the level of every interval the audit reports."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from mdmlib.audit.probes import Probe

CONFIDENCE = 0.99  # of every interval reported


@dataclass
class ProbeResult:
    probe: Probe
    method: str  # "exact law" or "monte carlo"
    leave: float  # P(leave the mask), measured or from the law
    leave_ci: tuple[float, float]
    n: int = 0  # Monte Carlo draws
    leaves: int = 0
    target_n: int = 0
    p_value: float | None = None  # exact binomial test against h
    power: float | None = None  # against (1 - bias) h, at the n reached
    detectable: float | None = None  # smallest relative bias detectable at the power asked
    temperature: float | None = None
    temperature_ci: tuple[float, float] | None = None
    temperature_z: float | None = None  # (mean log mu - its exact value) / SE
    eps_fit: tuple[float, float, float] | None = None  # closed-form eps: best, low, high
    law_how: str = ""
    unresolved: float = 0.0
    compared: dict = field(default_factory=dict)  # name -> {"leave", "inside", "z"}
    input_leave: float | None = None  # exact leave rate of the input as rounded to the line's dtype
    token_counts: torch.Tensor | None = None

    @property
    def ratio(self) -> float:
        return self.leave / self.probe.h

    @property
    def ratio_ci(self) -> tuple[float, float]:
        return self.leave_ci[0] / self.probe.h, self.leave_ci[1] / self.probe.h

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("token_counts", "probe")}
        out["probe"] = self.probe.key()
        out["ratio"], out["ratio_ci"] = self.ratio, list(self.ratio_ci)
        return _finite(out)


def _finite(obj):
    """JSON has no inf or NaN: they become None (an interval's open end, an undefined value)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
