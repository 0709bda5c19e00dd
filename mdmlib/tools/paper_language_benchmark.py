"""The calibrated language at the paper's size, its exact denoiser and the samplers, timed:

    python -m mdmlib.tools.paper_language_benchmark [--batch 8] [--steps 2048] [--threads 1]

Everything runs at V = 50,257 tokens (+ the mask) and L = 1,024, on the language
mdmlib.language.calibration calibrates to the paper's 64-bit row. It prints:

1. The calibration: its parameters, how close each target lands, and its wall time.
2. The exact statistics at this size: entropy_rate(1,024) through the class chain (and
   MarkovLanguage.entropy_rate's V x V way, timed on 1,024 of its V rows and scaled up, not
   run whole); exact sampling, NLL per token and sentence entropy of 64 sequences.
3. The denoiser, in positions per second: class posteriors at every position of a batch
   of 64 half-masked sequences (the factored output, K numbers a position); the update
   after unmasking 64 more tokens (changed_class_posteriors, per changed position); whole
   V-wide rows built from posteriors (float64: what mdmlib.mdm.samplers' protocol hands
   over); and ExactDenoiser of mdmlib.language.synthetic (O(K V) a position) on 256
   positions. The update's time is mostly its two nearest-neighbour scans of the batch
   (O(B L) whatever the number of changed positions). Each is the median of 5 calls after a warm-up, inputs prepared beforehand.
4. Each sampler at `--steps` steps (a whole run, timed once, per sequence): the factored
   ancestral sampler in float32 and float64 and the factored exact sampler
   (mdmlib.mdm.factored_samplers) on `--batch` sequences; first_hitting_sample (float64
   race, one row per sequence per event through outputs_at) on half that; and, for
   comparison, ancestral_sample (float64) and exact_sample of mdmlib.mdm.samplers, with
   their (B, L, V) cache, on one sequence. Columns: wall and CPU seconds per sequence;
   the denoiser's share, the wall time inside its methods (class posteriors, and for the
   samplers of mdmlib.mdm.samplers the V-wide rows it builds; reading entries of the
   factored cache counts as the sampler's); NFE per sequence; the peak resident memory
   of the process during the run (VmHWM, reset before it; it includes torch itself and the
   language, a few hundred MB) and its rise over the resident memory at the run's start
   (freed memory handed back to the system first): what the run itself added; Gen PPL under the exact likelihood and sentence entropy, as a sanity check (a few
   sequences: wide errors).

Excluded everywhere: building the language and the denoiser, importing torch, and the
calibration (reported on its own). Timings run on `--threads` intra-op threads (default
one: on a shared machine two threads that wait for each other make small-tensor work
several times slower); wall time then also counts waiting for a core, CPU time does not.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import math
import sys
import time

import torch

from mdmlib.language.calibration import PAPER_LENGTH, PAPER_VOCAB, calibrate, sentence_entropy_by_sorting
from mdmlib.language.factored_denoiser import FactoredDenoiser
from mdmlib.mdm.factored_samplers import factored_ancestral_sample, factored_exact_sample
from mdmlib.infra.timing import median_seconds
from mdmlib.infra.memory import human_bytes
from mdmlib.mdm.samplers import ancestral_sample, exact_sample, first_hitting_sample
from mdmlib.stats.metrics import categorical_entropy, gen_ppl, sentence_entropy

TIMED_METHODS = ("class_posteriors", "changed_class_posteriors", "__call__", "changed_outputs", "outputs_at")


class TimedDenoiser:
    """A denoiser that adds up the wall time spent in its methods (TIMED_METHODS)."""

    def __init__(self, inner):
        self.inner, self.seconds = inner, 0.0
        for name in ("mask_id", "dtype", "token_class", "emission", "vocab_size"):
            setattr(self, name, getattr(inner, name))

    def _timed(self, name, *args):
        start = time.perf_counter()
        try:
            return getattr(self.inner, name)(*args)
        finally:
            self.seconds += time.perf_counter() - start

    def __call__(self, x, t=None):
        return self._timed("__call__", x, t)

    def class_posteriors(self, x, t=None):
        return self._timed("class_posteriors", x)

    def changed_class_posteriors(self, x_old, x_new):
        return self._timed("changed_class_posteriors", x_old, x_new)

    def changed_outputs(self, x_old, x_new):
        return self._timed("changed_outputs", x_old, x_new)

    def outputs_at(self, x, rows, cols):
        return self._timed("outputs_at", x, rows, cols)


def _resident(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _release_freed_memory() -> None:
    """Hand memory freed earlier back to the system (glibc's malloc_trim), so that the
    resident set at a run's start holds no freed pages the run could reuse unseen."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM, the peak resident set, to the current one
        return True
    except OSError:
        return False


def half_masked(language, batch: int, generator: torch.Generator) -> torch.Tensor:
    truth = language.sample(batch, PAPER_LENGTH, generator)
    return torch.where(torch.rand(truth.shape, generator=generator) < 0.5, language.mask_id, truth)


def bench_statistics(language) -> None:
    g = torch.Generator().manual_seed(1)
    t_rate = median_seconds(lambda: language.entropy_rate(PAPER_LENGTH), 5)
    some = torch.arange(1024)
    # MarkovLanguage.entropy_rate's own work on 1,024 rows of A @ B (it does all V of them)
    t_rows = median_seconds(lambda: torch.dot(language.pi[some], categorical_entropy(language.transition_rows(some))), 1)
    t_sample = median_seconds(lambda: language.sample(64, PAPER_LENGTH, g), 3)
    x = language.sample(64, PAPER_LENGTH, g)
    t_nll = median_seconds(lambda: language.nll_per_token(x), 5)
    t_metric = median_seconds(lambda: sentence_entropy(x), 5)
    t_sorted = median_seconds(lambda: sentence_entropy_by_sorting(x), 5)
    print(f"entropy_rate({PAPER_LENGTH:,}) through the class chain: {t_rate * 1e3:.2f} ms "
          f"(MarkovLanguage's V x V way: {t_rows * language.vocab_size / 1024:.0f} s, from {t_rows:.2f} s for 1,024 of its {language.vocab_size:,} rows)")
    print(f"64 x {PAPER_LENGTH:,}: exact sampling {t_sample:.3f} s, NLL per token {t_nll * 1e3:.1f} ms, "
          f"sentence entropy {t_metric * 1e3:.0f} ms (mdmlib.stats.metrics), {t_sorted * 1e3:.1f} ms (by sorting)")


def bench_denoiser(language) -> None:
    g = torch.Generator().manual_seed(2)
    den = FactoredDenoiser(language, torch.float64)
    x = half_masked(language, 64, g)
    t_all = median_seconds(lambda: den.class_posteriors(x), 5)
    masked = torch.nonzero(x == language.mask_id, as_tuple=True)
    pick = torch.randperm(masked[0].numel(), generator=g)[:64]
    x_new = x.clone()
    x_new[masked[0][pick], masked[1][pick]] = language.sample(1, 64, g)[0]
    rows = den.changed_class_posteriors(x, x_new)[0]
    t_changed = median_seconds(lambda: den.changed_class_posteriors(x, x_new), 5)
    r, c = masked[0][:256], masked[1][:256]
    w256 = den.class_posteriors_at(x, r, c)
    t_rows = median_seconds(lambda: den.rows(w256), 5)
    t_exact = median_seconds(lambda: language.denoise_positions(x, r, c, torch.float64), 3)
    print(f"class posteriors, 64 x {PAPER_LENGTH:,} half-masked positions: {x.numel() / t_all:,.0f} positions/s ({t_all * 1e3:.1f} ms a batch)")
    print(f"changed_class_posteriors after 64 more tokens unmask in that batch: {rows.numel():,} positions changed, {t_changed * 1e3:.2f} ms a call "
          f"(two nearest-neighbour scans of all {x.numel():,} positions: {x.numel() / t_changed:,.0f} positions/s scanned)")
    print(f"whole rows from posteriors (float64, {language.vocab_size:,} entries): {256 / t_rows:,.0f} rows/s "
          f"({256 * language.vocab_size * 8 / t_rows / 1e9:.1f} GB/s written)")
    print(f"ExactDenoiser ({language.num_classes} classes, O(K V) a position, float64): {256 / t_exact:,.0f} positions/s")


def _run(name: str, batch: int, sample, language, denoiser) -> None:
    """One whole run of sample(denoiser), with its times, memory and sanity figures."""
    timed = TimedDenoiser(denoiser)
    _release_freed_memory()
    rss_before = _resident("VmRSS")
    reset = _reset_peak()
    cpu, wall = time.process_time(), time.perf_counter()
    out = sample(timed)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = _resident("VmHWM") if reset else None
    memory = f"{human_bytes(peak):>9s} (+{human_bytes(max(peak - rss_before, 0)):>9s})" if peak and rss_before else f"{'n/a':>22s}"
    tokens = out.tokens
    ppl = gen_ppl(language.nll_per_token(tokens)).mean if batch > 1 else math.exp(float(language.nll_per_token(tokens).mean()))
    print(f"  {name:46s} {batch:5d} {wall / batch:9.2f} {cpu / batch:9.2f} {timed.seconds / wall:9.0%} {out.nfe.double().mean():7.0f} {memory} "
          f"{ppl:8.1f} {float(sentence_entropy(tokens).mean()):6.2f}", flush=True)


def bench_samplers(language, batch: int, steps: int) -> None:
    print(f"samplers at {steps:,} steps, L = {PAPER_LENGTH:,}, V = {language.vocab_size:,} (denoiser rows in float64):")
    print(f"  {'sampler':46s} {'batch':>5s} {'wall s/seq':>9s} {'CPU s/seq':>9s} {'denoiser':>9s} {'NFE':>7s} {'peak RSS (rise)':>22s} {'Gen PPL':>8s} {'entropy':>6s}")
    L = PAPER_LENGTH
    den = FactoredDenoiser(language, torch.float64)
    g = lambda: torch.Generator().manual_seed(3)
    jobs = [
        ("factored ancestral, float32 (O(1) sparse step)", batch, lambda d: factored_ancestral_sample(d, batch, L, steps, "float32", g(), progress=False)),
        ("factored ancestral, float64 (O(1) sparse step)", batch, lambda d: factored_ancestral_sample(d, batch, L, steps, "float64", g(), progress=False)),
        ("factored exact", batch, lambda d: factored_exact_sample(d, batch, L, steps, g(), progress=False)),
        ("first_hitting_sample, float64 race", max(1, batch // 2), lambda d: first_hitting_sample(d, max(1, batch // 2), L, "float64", g(), progress=False)),
        ("ancestral_sample, float64, (B, L, V) cache", 1, lambda d: ancestral_sample(d, 1, L, steps, "float64", g(), progress=False)),
        ("exact_sample, (B, L, V) cache", 1, lambda d: exact_sample(d, 1, L, steps, g(), progress=False)),
    ]
    for name, b, run in jobs:
        _run(name, b, run, language, den)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mdmlib.tools.paper_language_benchmark", description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=8, help="sequences per factored sampler run (default 8)")
    p.add_argument("--steps", type=int, default=2048, help="sampling steps (default 2,048, the paper's Table 2)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.batch < 1 or args.steps < 1 or args.threads < 1:
        p.error("--batch, --steps and --threads must be positive")
    before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        print(f"== the calibrated language, V = {PAPER_VOCAB:,}, L = {PAPER_LENGTH:,} ({args.threads} thread{'s' if args.threads > 1 else ''})")
        calibration = calibrate(PAPER_VOCAB, PAPER_LENGTH, progress=False)
        print(calibration.report())
        language = calibration.language()
        print("== exact statistics")
        bench_statistics(language)
        print("== the exact denoiser")
        bench_denoiser(language)
        print("== the samplers")
        bench_samplers(language, args.batch, args.steps)
    finally:
        torch.set_num_threads(before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
