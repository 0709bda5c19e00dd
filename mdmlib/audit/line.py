"""Running the user's sampling line: called with or without a generator (a function of
the probabilities alone is run on the global generator, seeded and then restored), and
its output checked against the contract, every breach an `AuditError` in plain words."""
from __future__ import annotations

import inspect

import torch


class AuditError(ValueError):
    """The sampling function broke its contract (shape, range, dtype), raised or called sys.exit."""


def _takes_generator(f) -> bool:
    """Whether f takes a second (generator) argument; a function of the probabilities alone
    draws from the global generator."""
    try:
        params = [p for p in inspect.signature(f).parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return True
    return len(params) >= 2


def _call(f, with_generator: bool, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    if with_generator:
        return f(x, generator)
    seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=x.device.type if devices else "cuda"):
        torch.manual_seed(seed)
        return f(x)


def run_line(f, x: torch.Tensor, generator: torch.Generator, with_generator: bool | None = None) -> torch.Tensor:
    """f on a batch x (m, K); its output checked: m integer indices in [0, K)."""
    with_generator = _takes_generator(f) if with_generator is None else with_generator
    m, K = x.shape
    try:
        out = _call(f, with_generator, x, generator)
    except AuditError:
        raise
    except SystemExit as e:  # sys.exit() in the line would otherwise end the audit without a word
        raise AuditError(f"the sampling function called sys.exit({e.code!r}) (input: {tuple(x.shape)} {x.dtype} on {x.device})") from e
    except Exception as e:  # the user's code: any failure is reported with what it was given
        raise AuditError(f"the sampling function raised {type(e).__name__}: {e} (input: {tuple(x.shape)} {x.dtype} on {x.device})") from e
    if not isinstance(out, torch.Tensor):
        raise AuditError(f"the sampling function returned {type(out).__name__}, expected a tensor of {m} class indices")
    if out.is_floating_point() or out.is_complex() or out.dtype == torch.bool:
        raise AuditError(f"the sampling function returned dtype {out.dtype}, expected integer class indices")
    if tuple(out.shape) != (m,):
        hint = " (torch.multinomial returns (m, 1): squeeze the last dimension)" if tuple(out.shape) == (m, 1) else ""
        raise AuditError(f"the sampling function returned shape {tuple(out.shape)} for {m} rows of {K} classes, expected ({m},){hint}")
    if m and (int(out.min()) < 0 or int(out.max()) >= K):
        raise AuditError(f"the sampling function returned indices in [{int(out.min())}, {int(out.max())}], outside [0, {K - 1}] for {K} classes")
    return out
