"""Speed checks that print figures: `python -m mdmlib.tools.benchmarks [truncation ...]`.

Timings are medians of repeated runs on this machine's CPU with the thread
count torch uses by default (whole sampling runs are timed once); ratios are
measured side by side in one run, on the same work. Each benchmark's docstring
says what its times include and exclude. Timings on a shared machine are noisy.
"""
from __future__ import annotations

import os
import statistics
import sys
import time

import torch

from mdmlib.precision.formats import float_format
from mdmlib.infra.timing import median_seconds
from mdmlib.precision.truncation import truncated_law, truncated_law_reference


def bench_truncation() -> None:
    """truncated_law at GPT-2's vocabulary plus the mask (K = 50,258), against a 50 ms target,
    and the closed form against the numerical-integration reference at K = 1,000."""
    g = torch.Generator().manual_seed(0)
    M32 = float_format(torch.float32).gumbel_cap
    p = torch.rand(50_258, generator=g, dtype=torch.float64) ** 4
    t = median_seconds(lambda: truncated_law(p, M32), 30)
    print(f"truncated_law, K = 50,258, float64, {torch.get_num_threads()} threads: {t * 1e3:.2f} ms (target < 50 ms)")
    batch = torch.rand(64, 50_258, generator=g, dtype=torch.float64) ** 4
    tb = median_seconds(lambda: truncated_law(batch, M32), 5)
    print(f"truncated_law, batch of 64 x 50,258: {tb * 1e3:.0f} ms ({tb / 64 * 1e3:.2f} ms per row)")
    small = p[:1000]
    tc = median_seconds(lambda: truncated_law(small, M32), 30)
    tr = median_seconds(lambda: truncated_law_reference(small, M32), 1)
    print(f"K = 1,000: closed form {tc * 1e3:.2f} ms, reference integration {tr:.2f} s ({tr / tc:,.0f}x slower)")


class _FixedDenoiser:
    """A time-agnostic denoiser whose output never changes: it isolates the sampler's own cost."""

    def __init__(self, mu: torch.Tensor):
        self.mu, self.mask_id = mu, mu.shape[-1]

    def __call__(self, x, t=None):
        return self.mu[: x.shape[0]]

    def changed_outputs(self, x_old, x_new):
        empty = torch.empty(0, dtype=torch.int64)
        return empty, empty, self.mu.new_empty(0, self.mu.shape[-1])


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench_mdm_step(batch: int = 2, length: int = 128, vocab: int = 2_048, steps: tuple = (64, 256), repeats: int = 3) -> None:
    """Whole sampling runs of MDLM's ancestral sampler, side by side on the same work: the
    literal float32 line (dense, V + 1 uniforms per masked position per step), the literal
    float64 line (the paper's fix), the O(1) sparse sampler with each line's law, and the
    fast exact sampler (the float64 line's law, visiting only steps where something unmasks)
    and the first-hitting sampler (one token per event, L network calls, no step count).

    Sizes are small enough for the literal lines to run (batch 2, length 128, V = 2,048,
    the quick language's vocabulary); a larger V or batch multiplies the literal lines'
    cost and not the others'. The denoiser is a fixed tensor, so the times are the
    categorical step and the sampler's bookkeeping only; the network's cost enters
    through the cost model time = NFE x t_net + t_cat, printed with t_net measured for the
    synthetic language's exact denoiser at this size."""
    from mdmlib.runs.precision import SETUPS
    from mdmlib.mdm.samplers import ancestral_sample, exact_sample, first_hitting_sample
    from mdmlib.language.synthetic import ExactDenoiser, MarkovLanguage

    g = torch.Generator().manual_seed(0)
    mu = torch.softmax(3 * torch.randn(batch, length, vocab, generator=g), -1)  # peaked and heavy-tailed rows
    den = _FixedDenoiser(mu)
    samplers = {
        "literal float32 line (dense)": lambda n: ancestral_sample(den, batch, length, n, "float32", g, implementation="dense", progress=False),
        "literal float64 line (dense)": lambda n: ancestral_sample(den, batch, length, n, "float64", g, implementation="dense", progress=False),
        "float32 law, O(1) sparse step": lambda n: ancestral_sample(den, batch, length, n, "float32", g, progress=False),
        "float64 law, O(1) sparse step": lambda n: ancestral_sample(den, batch, length, n, "float64", g, progress=False),
        "exact fast sampler (float64 law)": lambda n: exact_sample(den, batch, length, n, g, progress=False),
        "first-hitting sampler (float64 race)": lambda n: first_hitting_sample(den, batch, length, "float64", g, progress=False),
    }
    spec = SETUPS["quick"].language
    language_denoiser = ExactDenoiser(MarkovLanguage(spec))
    t_net = None
    if spec.vocab_size == vocab:
        x = torch.full((batch, length), language_denoiser.mask_id)
        t_net = median_seconds(lambda: language_denoiser(x), 5)
    print(f"batch {batch}, length {length}, V = {vocab:,}, {torch.get_num_threads()} threads; denoiser excluded (a fixed tensor); "
          f"t_net = {t_net * 1e3:.1f} ms per call (the synthetic language's exact denoiser at this size)" if t_net else "")
    for n in steps:
        # round-robin repeats and medians: a load that drifts during the run hits every sampler alike
        times, outs = {name: [] for name in samplers}, {}
        for _ in range(repeats):
            for name, f in samplers.items():
                seconds, outs[name] = _timed(lambda f=f: f(n))
                times[name].append(seconds)
        timed = {name: (statistics.median(t), outs[name]) for name, t in times.items()}
        base = timed["literal float32 line (dense)"][0]
        print(f"N = {n:,} steps (median of {repeats} round-robin runs):")
        print(f"  {'sampler':38s} {'t_cat (s)':>10s} {'vs float32 line':>16s} {'NFE':>7s} {'NFE x t_net + t_cat (s)':>24s}")
        for name, (seconds, out) in timed.items():
            nfe = out.nfe.double().mean().item()
            model = f"{nfe * t_net + seconds:24.2f}" if t_net else f"{'':>24s}"
            print(f"  {name:38s} {seconds:10.3f} {base / seconds:15.1f}x {nfe:7.1f} {model}")


def bench_denoiser() -> None:
    """The exact denoiser of the synthetic language on a batch of 64 all-masked
    sequences of length 256 (target: under 2 s), for the quick and full languages."""
    from mdmlib.runs.precision import SETUPS
    from mdmlib.language.synthetic import ExactDenoiser, MarkovLanguage

    for name, setup in SETUPS.items():
        spec = setup.language
        language = MarkovLanguage(spec)
        denoiser = ExactDenoiser(language)
        x = torch.full((64, 256), language.mask_id)
        t = median_seconds(lambda: denoiser(x), 3)
        print(f"{name} language (V = {spec.vocab_size}, H = {spec.num_classes}): {t:.2f} s for 64 x 256 masked positions")


def bench_models(repeats: int = 3) -> None:
    """The MDLM network at the published size (D = 768, 12 blocks, 12 heads, V = 50,258):
    its parameter count, and the CPU forward time of one sequence of length 1,024 in
    float32 (the median of `repeats` runs after a warm-up; the network's forward only,
    from token ids to logits, building it and the subs softmax excluded)."""
    from mdmlib.models import MDLM_OWT, build_network

    network = build_network(MDLM_OWT).eval()
    n_params = sum(p.numel() for p in network.parameters())
    embeddings = network.vocab_embed.embedding.numel() + network.output_layer.linear.weight.numel()
    print(f"MDLM DiT (D = 768, 12 blocks, 12 heads, V = 50,258): {n_params:,} parameters "
          f"({embeddings:,} in the input embedding and output projection), {n_params * 4 / 1e6:.0f} MB in float32")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, MDLM_OWT.vocab_size - 1, (1, 1024), generator=g)
    sigma = torch.zeros(1)
    cpu_start = time.process_time()
    with torch.no_grad():
        t = median_seconds(lambda: network(ids, sigma), repeats)
    cpu = (time.process_time() - cpu_start) / (repeats + 1)
    # CPU time next to wall time: on a shared machine the wall time also counts waiting for cores
    print(f"forward of one sequence of length 1,024, float32 on CPU, {torch.get_num_threads()} threads: "
          f"{t:.2f} s wall (median of {repeats} after a warm-up), {cpu:.2f} s of CPU time per forward (mean)")


def bench_train(steps: int = 20, thread_counts: tuple = (1, 2)) -> None:
    """Training throughput at the quick scale (mdmlib.models.training.SETUPS["quick"]), per objective
    and number of PyTorch threads, measured side by side in one run: tokens/s (batch x length
    clean tokens per step) over `steps` steps after 3 warm-up steps, by wall time and by this
    process's CPU time. A step includes drawing the data (DATA_CHUNK batches at a time, so
    one step in DATA_CHUNK pays for the next chunk), the forward and backward pass and the
    AdamW update; building the network, evaluation and writing checkpoints are excluded.
    On a shared machine the wall time also counts waiting for cores, and a second thread
    that waits spins, which shows as CPU time."""
    from mdmlib.mdm.losses import OBJECTIVES
    from mdmlib.models.training import SETUPS, TrainingRun

    setup = SETUPS["quick"]
    tokens = setup.batch_size * setup.length
    before = torch.get_num_threads()
    print(f"quick setup: vocabulary {setup.language.vocab_size}, length {setup.length}, batch {setup.batch_size}, "
          f"hidden {setup.hidden_dim}, {setup.n_blocks} blocks, {setup.steps} steps; CPU, {os.cpu_count()} cores")
    print(f"{'objective':>12s} {'threads':>7s} {'tokens/s (wall)':>16s} {'ms wall/step':>13s} {'ms CPU/step':>12s} {'training (wall)':>16s}")
    try:
        for objective in OBJECTIVES:
            for threads in thread_counts:
                torch.set_num_threads(threads)
                run = TrainingRun(setup, objective, "cpu")
                run.train_until(3, progress=False)
                cpu_start, wall_start = time.process_time(), time.perf_counter()
                run.train_until(3 + steps, progress=False)
                wall, cpu = time.perf_counter() - wall_start, time.process_time() - cpu_start
                print(f"{objective:>12s} {threads:7d} {steps * tokens / wall:16,.0f} {wall / steps * 1e3:13.0f} {cpu / steps * 1e3:12.0f} "
                      f"{setup.steps * wall / steps:14.0f} s")
    finally:
        torch.set_num_threads(before)


BENCHMARKS = {"truncation": bench_truncation, "mdm_step": bench_mdm_step, "denoiser": bench_denoiser, "models": bench_models, "train": bench_train}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
        return 2
    for name in names:
        print(f"== {name}")
        BENCHMARKS[name]()
    return 0


def bench_fhs(batch: int = 4, length: int = 128, steps: tuple = (2_048, 10_000), repeats: int = 3) -> None:
    """The first-hitting sampler against the cached ancestral sampler, side by side on the
    same work: `batch` sequences of `length` tokens of the quick language (V = 2,048), float64
    categorical draws, the ancestral sampler with the project's O(1) step and each caching
    rule. The network is the exact denoiser of mdmlib.language.synthetic evaluated at every position
    of every sequence it is given (sampler_timing.FullPassDenoiser), as a network's forward pass is;
    its share of each run is printed. Runs are timed on one thread by the CPU time of this
    process (sampler_timing.timed_sample: wall time on a shared machine measures the neighbours),
    wall time beside it; figures are medians of `repeats` runs, interleaved. A last line
    measures MDLM's literal categorical line (dense, float32) at the first step count on
    one sequence, against FHS on one sequence."""
    from mdmlib.infra.timing import median_cpu_seconds, one_thread
    from mdmlib.runs.sampler_timing import FullPassDenoiser, timed_sample
    from mdmlib.runs.precision import SETUPS
    from mdmlib.mdm.samplers import ancestral_sample
    from mdmlib.language.synthetic import ExactDenoiser, MarkovLanguage

    language = MarkovLanguage(SETUPS["quick"].language)
    g = torch.Generator().manual_seed(0)
    jobs = [("first hitting", None, None)] + [("ancestral", n, c) for n in steps for c in ("per_sequence", "per_batch")]
    runs = {job: [] for job in jobs}
    for _ in range(repeats):
        for sampler, n, caching in jobs:
            kind = "first_hitting" if sampler == "first hitting" else "ancestral"
            runs[(sampler, n, caching)].append(timed_sample(language, kind, batch, length, g, steps=n, caching=caching or "per_sequence"))
    print(f"network: the exact denoiser of mdmlib.language.synthetic (V = {language.vocab_size:,}, {language.num_classes} classes) at all {length} positions "
          f"of each sequence per call; {batch} sequences; float64 draws; one thread; medians of {repeats} runs")
    median = lambda job, key: statistics.median(r[key] for r in runs[job])
    fhs_cpu = median(jobs[0], "cpu_seconds")
    print(f"{'sampler':>26s} {'N':>7s} {'NFE/seq':>8s} {'CPU s':>7s} {'network':>8s} {'wall s':>7s} {'FHS speedup (CPU)':>18s}")
    for job in jobs:
        sampler, n, caching = job
        cpu, net, wall = median(job, "cpu_seconds"), median(job, "network_cpu_seconds"), median(job, "seconds")
        nfe = statistics.median(float(r["nfe"].double().mean()) for r in runs[job])
        name = sampler if caching is None else f"{sampler}, {caching.replace('_', '-')}"
        speed = "" if caching is None else f"{cpu / fhs_cpu:17.1f}x"
        print(f"{name:>26s} {'-' if n is None else f'{n:,}':>7s} {nfe:8.1f} {cpu:7.2f} {net / cpu:8.0%} {wall:7.2f} {speed:>18s}")

    dense_net = FullPassDenoiser(ExactDenoiser(language))
    with one_thread():
        start = time.process_time()
        ancestral_sample(dense_net, 1, length, steps[0], "float32", g, implementation="dense", progress=False)
        t_dense = time.process_time() - start
    t_fhs = median_cpu_seconds(lambda: timed_sample(language, "first_hitting", 1, length, g), repeats)
    print(f"literal float32 line, {steps[0]:,} steps, 1 sequence: {t_dense:.1f} CPU s (network {dense_net.cpu_seconds / t_dense:.0%}); "
          f"FHS on one sequence: {t_fhs:.2f} CPU s: {t_dense / t_fhs:,.0f}x")


BENCHMARKS["fhs"] = bench_fhs

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
