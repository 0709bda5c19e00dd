"""Speed checks that print figures: `python -m mdmlib.benchmarks [truncation ...]`.

Timings are medians of repeated runs on this machine's CPU with the thread
count torch uses by default; ratios are measured side by side in one run.
"""
from __future__ import annotations

import statistics
import sys
import time

import torch

from .precision import float_format
from .truncation import truncated_law, truncated_law_reference


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_truncation() -> None:
    """truncated_law at GPT-2's vocabulary plus the mask (K = 50,258), against a 50 ms target,
    and the closed form against the numerical-integration reference at K = 1,000."""
    g = torch.Generator().manual_seed(0)
    M32 = float_format(torch.float32).gumbel_cap
    p = torch.rand(50_258, generator=g, dtype=torch.float64) ** 4
    t = _median_seconds(lambda: truncated_law(p, M32), 30)
    print(f"truncated_law, K = 50,258, float64, {torch.get_num_threads()} threads: {t * 1e3:.2f} ms (target < 50 ms)")
    batch = torch.rand(64, 50_258, generator=g, dtype=torch.float64) ** 4
    tb = _median_seconds(lambda: truncated_law(batch, M32), 5)
    print(f"truncated_law, batch of 64 x 50,258: {tb * 1e3:.0f} ms ({tb / 64 * 1e3:.2f} ms per row)")
    small = p[:1000]
    tc = _median_seconds(lambda: truncated_law(small, M32), 30)
    tr = _median_seconds(lambda: truncated_law_reference(small, M32), 1)
    print(f"K = 1,000: closed form {tc * 1e3:.2f} ms, reference integration {tr:.2f} s ({tr / tc:,.0f}x slower)")


BENCHMARKS = {"truncation": bench_truncation}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
        return 2
    for name in names:
        print(f"== {name}")
        BENCHMARKS[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
