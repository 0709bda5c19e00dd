"""The audit's command line: `python -m mdmlib.audit package.module:function` (or
path/to/file.py:function, or the `mdmlib-audit` script) audits that function, prints the
report and writes its JSON and figure. Bad input ends with a one-line error and status 2."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import sys
from pathlib import Path

from mdmlib.audit.core import audit
from mdmlib.audit.probes import Probe
from mdmlib.infra.results import save_figure, save_json


def parse_seconds(text: str) -> float:
    """'60', '60s', '2m', '1h' -> seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(s|sec|m|min|h)?\s*", str(text))
    if not m:
        raise ValueError(f"cannot read a time budget from {text!r}: write for example 60s, 2m or 1h")
    return float(m.group(1)) * {"s": 1, "sec": 1, None: 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]


def load_function(target: str):
    """'package.module:function' or 'path/to/file.py:function' -> the function."""
    if ":" not in target:
        raise ValueError(f"name the function as package.module:function or path/to/file.py:function, got {target!r}")
    where, _, attr = target.rpartition(":")
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where)
        if not path.is_file():
            raise ValueError(f"no such file: {where}")
        spec = importlib.util.spec_from_file_location(f"_audited_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.resolve().parent))
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            raise ValueError(f"importing {where} failed: {type(e).__name__}: {e}") from e
        finally:
            sys.path.pop(0)
    else:
        try:
            module = importlib.import_module(where)
        except Exception as e:
            raise ValueError(f"importing {where} failed: {type(e).__name__}: {e}") from e
    f = getattr(module, attr, None)
    if f is None:
        raise ValueError(f"{where} has no attribute {attr!r}")
    if not callable(f):
        raise ValueError(f"{where}:{attr} is not a function")
    return f


def _parse_list(text: str, kind, name: str) -> list:
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"cannot read {name} from {text!r}") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mdmlib.audit", description="Audit a categorical sampling line in the masked-diffusion regime.")
    parser.add_argument("target", help="package.module:function or path/to/file.py:function; f(probs_or_logits, generator) -> indices, or f(probs)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--budget", default="60s", help="time for Monte Carlo, e.g. 60s, 5m (default 60s)")
    parser.add_argument("--logits", action="store_true", help="the function takes logits (log-probabilities), not probabilities")
    parser.add_argument("--dtype", default=None, help="dtype of its input: float32 (default), float64, bfloat16, float16")
    parser.add_argument("--power", type=float, default=0.99, help="power wanted against the bias (default 0.99)")
    parser.add_argument("--bias", type=float, default=0.1, help="relative bias of the leave rate to detect (default 0.1)")
    parser.add_argument("--vocab", default=None, help="vocabulary sizes, e.g. 1000,50257")
    parser.add_argument("--steps", default=None, help="step sizes h, e.g. 1e-2,1e-3")
    parser.add_argument("--mu", default=None, help="denoiser outputs: flat,zipf,peaked")
    parser.add_argument("--mask", default=None, help="mask positions: last,first")
    parser.add_argument("--monte-carlo", action="store_true", help="ignore a declared exact law")
    parser.add_argument("--compare", default="", help="public lines to compare with, e.g. mdlm_sedd_race")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=None, help="inputs per call of the function (default 2^22 on cpu, 2^26 on cuda)")
    parser.add_argument("--out", default=None, help="folder for the json and figure (default: the project's figures/)")
    args = parser.parse_args(argv)
    try:
        f = load_function(args.target)
        probes = None
        if any(v is not None for v in (args.vocab, args.steps, args.mu, args.mask)):
            vocabs = _parse_list(args.vocab or "1000,50257", int, "--vocab")
            steps = _parse_list(args.steps or "1e-2,1e-3,1e-4", float, "--steps")
            mus = _parse_list(args.mu or "flat,zipf,peaked", str, "--mu")
            masks = _parse_list(args.mask or "last", str, "--mask")
            probes = [Probe(mu, h, V, m) for V in vocabs for h in steps for mu in mus for m in masks]
        takes = "logits" if args.logits else None
        compare = tuple(c for c in args.compare.split(",") if c)
        report = audit(f, probes=probes, takes=takes, dtype=args.dtype, device=args.device, budget=parse_seconds(args.budget),
                       power=args.power, bias=args.bias, use_law=not args.monte_carlo, compare=compare, seed=args.seed,
                       chunk_elems=args.chunk)
    except ValueError as e:  # AuditError is one: bad input, said plainly
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.table())
    if args.out:
        import os

        os.environ["MDMLIB_FIGURES"] = str(Path(args.out).resolve())
    stem = "audit_" + re.sub(r"[^A-Za-z0-9_]+", "_", report.name)
    path = save_json(report.to_json(), stem)
    fig = report.figure()
    figure = save_figure(fig, stem)
    print(f"wrote {path.name} and {figure.name} in {path.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
