"""The audit's command line: `python -m mdmlib.audit package.module:function` (or
path/to/file.py:function, or the `mdmlib-audit` script) audits that function, prints the
report and writes its JSON and figure. Bad input ends with a one-line error and status 2.

The output folder is checked before the line is imported, and its two files before the
audit starts: an audit_<name>.json that this command did not write (its "written_by"), or a
figure beside one, is never overwritten. The Monte Carlo's progress is kept in
audit_<name>.json.partial/ as it goes: after an interrupt (Ctrl-C, status 130) the same
command resumes from it; it is removed once the JSON and the figure are written."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path

from mdmlib.audit.core import audit, line_name
from mdmlib.audit.line import AuditError
from mdmlib.audit.probes import Probe
from mdmlib.infra.results import WRITTEN_BY, KeptParts, OutputError, check_output_file, figures_dir, result_name, write_figure, write_json, written_by

TOOL = "mdmlib.audit"  # the "written_by" of its JSON results


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
        except SystemExit as e:
            raise ValueError(f"importing {where} called sys.exit({e.code!r})") from e
        except Exception as e:
            raise ValueError(f"importing {where} failed: {type(e).__name__}: {e}") from e
        finally:
            sys.path.pop(0)
    else:
        try:
            module = importlib.import_module(where)
        except SystemExit as e:
            raise ValueError(f"importing {where} called sys.exit({e.code!r})") from e
        except Exception as e:
            raise ValueError(f"importing {where} failed: {type(e).__name__}: {e}") from e
    f = getattr(module, attr, None)
    if f is None:
        raise ValueError(f"{where} has no attribute {attr!r}")
    if not callable(f):
        raise ValueError(f"{where}:{attr} is not a function")
    return f


def _whole(text: str) -> int:
    """'50257' or '1e11' -> an int (a size written in scientific notation must be whole)."""
    try:
        return int(text)
    except ValueError:
        x = float(text)
        if not x.is_integer():
            raise ValueError(text) from None
        return int(x)


def output_folder(out) -> Path:
    """The folder for the JSON and figure, checked before anything is imported: an existing
    writable folder, or a new one in an existing writable folder (made here)."""
    if out is None:
        return figures_dir()
    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--out {folder} is not a folder: name a folder for the JSON and the figure")
    if not folder.exists():
        if not folder.parent.is_dir():
            raise OutputError(f"--out {folder}: its folder {folder.parent} does not exist")
        if not os.access(folder.parent, os.W_OK | os.X_OK):
            raise OutputError(f"--out {folder}: cannot make it in {folder.parent} (no permission)")
        folder.mkdir()
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write in --out {folder} (no permission)")
    return folder


def output_files(folder: Path, name: str) -> tuple[Path, Path]:
    """audit_<name>.json and .png in `folder`, checked: neither may replace a file this command did not write."""
    stem = result_name("audit_" + re.sub(r"[^A-Za-z0-9_]+", "_", name))
    json_path, figure = check_output_file(folder / f"{stem}.json", TOOL), folder / f"{stem}.png"
    if (figure.exists() or figure.is_symlink()) and not written_by(json_path, TOOL):
        raise OutputError(f"{figure} exists and no audit JSON of this command is beside it: it is left as it is; move it or choose another --out")
    return json_path, figure


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
    kept = None
    try:
        folder = output_folder(args.out)
        f = load_function(args.target)
        json_path, figure_path = output_files(folder, line_name(f))
        kept = KeptParts(json_path.with_name(json_path.name + ".partial"), TOOL).check()
        probes = None
        if any(v is not None for v in (args.vocab, args.steps, args.mu, args.mask)):
            vocabs = _parse_list(args.vocab or "1000,50257", _whole, "--vocab")
            steps = _parse_list(args.steps or "1e-2,1e-3,1e-4", float, "--steps")
            mus = _parse_list(args.mu or "flat,zipf,peaked", str, "--mu")
            masks = _parse_list(args.mask or "last", str, "--mask")
            probes = [Probe(mu, h, V, m) for V in vocabs for h in steps for mu in mus for m in masks]
        takes = "logits" if args.logits else None
        compare = tuple(c for c in args.compare.split(",") if c)
        report = audit(f, probes=probes, takes=takes, dtype=args.dtype, device=args.device, budget=parse_seconds(args.budget),
                       power=args.power, bias=args.bias, use_law=not args.monte_carlo, compare=compare, seed=args.seed,
                       chunk_elems=args.chunk, kept=kept)
    except AuditError as e:  # the line broke its contract: nothing is written
        print(f"error: {args.target}: {e}", file=sys.stderr)
        return 2
    except (ValueError, MemoryError) as e:  # bad input, or a probe too large for the memory, said plainly
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = (f"the Monte Carlo's progress is kept in {kept.folder}; run the same command again to resume"
                 if kept is not None and kept.folder.is_dir() else "nothing was written")
        print(f"interrupted: {where}", file=sys.stderr)
        return 130
    print(report.table())
    import matplotlib.pyplot as plt  # here: the command's errors above need no plotting library

    data, fig = {**report.to_json(), WRITTEN_BY: TOOL}, report.figure()  # both made before either is written
    write_json(data, json_path)
    write_figure(fig, figure_path)
    plt.close(fig)
    kept.clear()
    print(f"wrote {json_path.name} and {figure_path.name} in {folder}")
    return 0
