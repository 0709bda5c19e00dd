"""Checks that need a GPU: `python -m mdmlib.tools.gpu_check [name ...]`.

The checks live in mdmlib.tools.gpu_statistics (rand_lattice, literal_line) and
mdmlib.tools.gpu_timings (dit_forward, samplers, judge_forward). Each is a function
`check_<name>(device) -> dict` registered in CHECKS: it prints what it measured beside the
model and returns its findings with `passed`.
Without CUDA the command says so and exits 0; nothing else in the project needs a
GPU. To add a check (a loader, bf16 autocast, a sampler at length 1,024, a judge),
write the function and add it to CHECKS.

  rand_lattice   torch.rand on CUDA per dtype against the lattice modelled in
                 mdmlib.precision.grid_law from PyTorch's source: the frequency of 0 and of the
                 largest values, the top values' probabilities alternating by the
                 parity of their rank (float32), as a chi-square of top-bin counts
                 with its power against the nearest wrong models (the CPU lattice;
                 a generator that keeps 1.0 instead of returning 0). float64: the
                 spacing of the top binade (2^-52 on CUDA, 2^-53 on the CPU).
  literal_line   the literal float32 line of one masked-diffusion step (10,000 flat
                 tokens, a mask of 1 - 1e-3) on the GPU, against the grid law on the
                 CUDA lattice and the truncation closed form.
  dit_forward    the full-size MDLM network (random weights, the published config):
                 saved and loaded through the project's loader, then timed forward at
                 length 1,024, batch 1 to 8, in float32 and under bfloat16 autocast,
                 with the gap between the two outputs.
  samplers       at length 1,024 with that network: the ancestral sampler (float32 and
                 float64, a few steps; network on the GPU, categorical arithmetic on the
                 CPU), the literal categorical line of a step on the GPU with its own
                 generator (float32, float64, float64 + truncation), and the
                 first-hitting sampler over its first events; seconds per step / event.
  judge_forward  a judge of GPT-2 Large's size (random weights, no download) scoring
                 1,024-token sequences in float32 and bfloat16: seconds per sequence.

`python -m mdmlib.tools.gpu_check [names] --out FILE` runs them (all by default), each in
its own try/except (an error is recorded and the next check runs), and writes every
result, with the device and versions, to FILE as one JSON written whole; FILE is checked
before any check runs (its folder exists and is writable; it is not a folder, nor a file
this command did not write). The timing
checks take sizes as arguments, so the tests run them on the CPU at tiny sizes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import torch

from mdmlib.infra.provenance import provenance
from mdmlib.infra.results import WRITTEN_BY, OutputError, _to_json, check_output_file, write_atomically
from mdmlib.tools.gpu_statistics import check_literal_line, check_rand_lattice
from mdmlib.tools.gpu_timings import check_dit_forward, check_judge_forward, check_samplers

CHECKS = {
    "rand_lattice": check_rand_lattice,
    "literal_line": check_literal_line,
    "dit_forward": check_dit_forward,
    "samplers": check_samplers,
    "judge_forward": check_judge_forward,
}
TOOL = "mdmlib.tools.gpu_check"  # the "written_by" of its result files


def run_checks(names, device) -> dict:
    """Run the named checks on `device`, each in its own try/except: an error is recorded
    (with the end of its traceback) as a failed check and the next one runs."""
    found = {}
    for name in names:
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        try:
            found[name] = CHECKS[name](device)
        except Exception as e:  # record it and go on: the other checks still tell something
            lines = traceback.format_exc().strip().splitlines()
            print(f"{name} failed: {type(e).__name__}: {e}")
            found[name] = {"passed": False, "error": f"{type(e).__name__}: {e}", "traceback": lines[-12:]}
        found[name]["seconds"] = time.perf_counter() - start
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mdmlib.tools.gpu_check", description="Checks that need a GPU; exits 0 without one.")
    parser.add_argument("names", nargs="*", help=f"checks to run (default all): {', '.join(CHECKS)}")
    parser.add_argument("--out", default=None, help="write every result, with the device and versions, to this JSON file")
    args = parser.parse_args(argv)
    names = args.names or list(CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        print(f"unknown check(s) {unknown}; choose from {list(CHECKS)}")
        return 2
    try:
        out = check_output_file(args.out, TOOL) if args.out else None
    except OutputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("no CUDA device here: the GPU checks need one; nothing was checked" + (" and nothing written" if args.out else ""))
        return 0
    device = torch.device("cuda")
    info = provenance(device)
    v = info["versions"]
    print(f"device: {info['device']}, torch {v['torch']} (CUDA {v['cuda']}), transformers {v['transformers']}")
    start = time.perf_counter()
    found = run_checks(names, device)
    failed = [name for name, r in found.items() if not r.get("passed")]
    print("all passed" if not failed else f"failed: {failed}", f"({time.perf_counter() - start:.0f} s)")
    if out:
        text = json.dumps(_to_json({"about": info, "checks": found, "failed": failed, WRITTEN_BY: TOOL}), indent=2, sort_keys=True, default=str) + "\n"
        write_atomically(out, lambda tmp: Path(tmp).write_text(text))
        print(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
