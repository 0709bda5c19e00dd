"""Hostile and careless input to the samplers, one row per case: denoiser outputs that are
not laws (every path), a mu_max below the maximum, weights that overflow a line's dtype,
caching of a time-conditioned denoiser, and requests too large for memory. Each row names
the error it must raise (type, words of the message) or checks the safe behaviour it must
show. The memory budget is 100 MB here (MDMLIB_MEMORY_BUDGET), so the refusals do not
depend on the machine."""
import math
import os

import pytest
import torch

from mdmlib.language.synthetic import ExactDenoiser, LanguageSpec, MarkovLanguage
from mdmlib.infra.memory import BUDGET_VARIABLE
from mdmlib.mdm.samplers import ancestral_sample, draw_tokens, exact_sample, expected_nfe, first_hitting_sample
from mdmlib.mdm.schedules import time_grid
from mdmlib.mdm.step import dense_step, sparse_step
from mdmlib.precision.categorical import exponential_race, gumbel_max, inverse_cdf, truncated_race
from mdmlib.precision.grid_law import law_on_grid

LANG = MarkovLanguage(LanguageSpec(vocab_size=5, num_classes=2))
DEN = ExactDenoiser(LANG)
V = LANG.mask_id
BUDGET = "1e8"


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Spoiled:
    """The plain denoiser interface, its output passed through `fn`; optionally declaring
    itself time-conditioned, and recording the times it is called at."""

    def __init__(self, fn=lambda mu: mu, time_conditioned=False):
        self.fn, self.mask_id, self.times = fn, V, []
        if time_conditioned:
            self.time_conditioned = True

    def __call__(self, x, t):
        self.times.append(torch.as_tensor(t, dtype=torch.float64).clone())
        return self.fn(DEN(x, t))


class SpoiledShortcut(Spoiled):
    """A time-agnostic denoiser whose shortcuts (changed_outputs, outputs_at) are spoiled."""

    def changed_outputs(self, x_old, x_new):
        r, c, out = DEN.changed_outputs(x_old, x_new)
        return r, c, self.fn(out)

    def outputs_at(self, x, rows, cols):
        return self.fn(DEN.outputs_at(x, rows, cols))


class TimedWithShortcuts(Spoiled):
    """Time-conditioned, yet offering time-agnostic shortcuts: they must not be used."""

    def __init__(self):
        super().__init__(time_conditioned=True)

    def changed_outputs(self, x_old, x_new):
        raise AssertionError("changed_outputs used for a time-conditioned denoiser")

    def outputs_at(self, x, rows, cols):
        raise AssertionError("outputs_at used for a time-conditioned denoiser")


class ZeroWhereUnmasked(Spoiled):
    """Junk (zeros) at unmasked positions, which the samplers never read."""

    def __call__(self, x, t):
        mu = super().__call__(x, t)
        mu[x != V] = 0.0
        return mu


class Fixed:
    """A fixed output: a float32 softmax over GPT-2's vocabulary, as a network returns."""

    def __init__(self, batch, length, vocab=50_257):
        self.mu = torch.softmax(3 * torch.randn(batch, length, vocab, generator=g(1)), -1)
        self.mask_id = vocab

    def __call__(self, x, t):
        return self.mu[: x.shape[0]].clone()


def _times10_at(b, l):
    def fn(mu):
        mu = mu.clone()
        mu[b, l] *= 10
        return mu
    return fn


def _moved(a, b, amount):
    """Move `amount` of mass from token a to token b: the sum stays 1, an entry goes negative."""
    def fn(mu):
        mu = mu.clone()
        mu[..., a] -= amount
        mu[..., b] += amount
        return mu
    return fn


def _off_by(delta):
    def fn(mu):
        mu = mu.clone()
        mu[..., 0] += delta
        return mu
    return fn


def _sparse(mu, mu_max, n=100_000, h=0.1, precision="float64"):
    rows = torch.zeros(n, dtype=torch.int64)
    return sparse_step(mu, mu_max, rows, rows, 1.0, 1.0 - h, precision, g(3))


FLAT = torch.full((1, 1, 1000), 1e-3, dtype=torch.float64)


def _budget(value, call):
    """Run `call` with MDMLIB_MEMORY_BUDGET set to `value`."""
    def run():
        old = os.environ.get(BUDGET_VARIABLE)
        os.environ[BUDGET_VARIABLE] = value
        try:
            return call()
        finally:
            if old is None:
                del os.environ[BUDGET_VARIABLE]
            else:
                os.environ[BUDGET_VARIABLE] = old
    return run


# --- safe behaviours ----------------------------------------------------------------------
def fully_sampled(out):
    assert ((out.tokens >= 0) & (out.tokens < out.tokens.new_tensor(V))).all(), "mask ids or invalid tokens came back"


def gpt2_tokens(out):
    assert ((out.tokens >= 0) & (out.tokens < 50_257)).all()


def leaves_at_rate(rate, n=100_000):
    def check(new):
        leaves = int((new != FLAT.shape[-1]).sum())
        sd = math.sqrt(n * rate * (1 - rate))
        assert abs(leaves - n * rate) < 5 * sd, f"{leaves} of {n} left the mask, expected {n * rate:.0f} +- {sd:.0f}"
    return check


def both_classes_about_half(draws):
    share = float((draws == 0).double().mean())
    assert abs(share - 0.5) < 0.05, f"class 0 drawn {share:.3f} of the time, expected 1/2 (weights of one size)"


def thirds(draws):
    counts = torch.bincount(draws, minlength=3).double() / draws.numel()
    assert (counts - 1 / 3).abs().max() < 0.05, f"class shares {counts.tolist()}, expected 1/3 each"


def one_call_a_step(steps):
    def check(den_and_out):
        den, out = den_and_out
        fully_sampled(out)
        seen = [float(t[0]) for t in den.times]
        assert all(bool((t == t[0]).all()) for t in den.times)  # one time per call
        assert seen == time_grid(steps)[: len(seen)].tolist(), f"called at {seen}: every step at its own time, not a stale one"
    return check


def _called(den, run):
    return lambda: (den, run(den))


CASES = [
    # denoiser outputs that are not laws, on every path
    pytest.param(lambda: ancestral_sample(Spoiled(lambda mu: 10 * mu), 2, 4, 3, "float32", g(), progress=False),
                 (ValueError, "sums to 10, not 1"), id="ancestral sparse, output x10 (leave rate 0.525 for 0.1)"),
    pytest.param(lambda: ancestral_sample(Spoiled(lambda mu: 10 * mu), 2, 4, 3, "float32", g(), implementation="dense", progress=False),
                 (ValueError, "sums to 10, not 1"), id="ancestral dense, output x10"),
    pytest.param(lambda: ancestral_sample(Spoiled(lambda mu: 0 * mu), 2, 4, 3, "float32", g(), progress=False),
                 (ValueError, "sums to 0, not 1"), id="ancestral, all-zero output (mask ids as tokens)"),
    pytest.param(lambda: ancestral_sample(Spoiled(lambda mu: 0 * mu), 2, 4, 3, "float64", g(), caching="per_batch", progress=False),
                 (ValueError, "sums to 0, not 1"), id="ancestral per-batch, all-zero output"),
    pytest.param(lambda: exact_sample(Spoiled(lambda mu: 10 * mu), 2, 4, 3, g(), progress=False),
                 (ValueError, "sums to 10, not 1"), id="exact sampler, output x10"),
    pytest.param(lambda: first_hitting_sample(Spoiled(lambda mu: 10 * mu), 2, 4, "float32", g(), progress=False),
                 (ValueError, "sums to 10, not 1"), id="first hitting, output x10"),
    pytest.param(lambda: first_hitting_sample(SpoiledShortcut(lambda mu: 10 * mu), 2, 4, "float32", g(), progress=False),
                 (ValueError, "sums to 10, not 1"), id="first hitting, outputs_at x10"),
    pytest.param(lambda: ancestral_sample(SpoiledShortcut(lambda mu: mu if mu.dim() == 3 else 0 * mu), 2, 6, 8, "float64", g(), progress=False),
                 (ValueError, "sums to 0, not 1"), id="ancestral, changed_outputs all zero"),
    pytest.param(lambda: ancestral_sample(Spoiled(_times10_at(1, 2)), 2, 4, 3, "float32", g(), progress=False),
                 (ValueError, "sequence 1, position 2 sums to 10"), id="the bad row is named"),
    pytest.param(lambda: exact_sample(Spoiled(_moved(0, 1, 1.0)), 2, 4, 3, g(), progress=False),
                 (ValueError, "negative value"), id="negative output, rows still summing to 1"),
    pytest.param(lambda: ancestral_sample(Spoiled(lambda mu: mu.masked_fill(mu > 0.2, math.inf)), 2, 4, 3, "float32", g(), progress=False),
                 (ValueError, "infinite value"), id="infinite output"),
    pytest.param(lambda: first_hitting_sample(Spoiled(lambda mu: mu.masked_fill(mu > 0.2, math.nan)), 2, 4, "exact", g(), progress=False),
                 (ValueError, "holds NaN"), id="NaN output"),
    pytest.param(lambda: ancestral_sample(Spoiled(lambda mu: mu[..., :-1]), 2, 4, 3, "float32", g(), progress=False),
                 (ValueError, r"returned shape \(2, 4, 4\), expected \(2, 4, 5\)"), id="output of a wrong shape"),
    pytest.param(lambda: exact_sample(Spoiled(lambda mu: (mu > 0.5).long()), 2, 4, 3, g(), progress=False),
                 (ValueError, "floating-point"), id="integer output"),
    pytest.param(lambda: exact_sample(Spoiled(lambda mu: mu.tolist()), 2, 4, 3, g(), progress=False),
                 (TypeError, "must return a tensor"), id="output not a tensor"),
    pytest.param(lambda: ancestral_sample(Spoiled(_off_by(1e-3)), 2, 4, 3, "float32", g(), progress=False),
                 (ValueError, "sums to 1.001"), id="float32 row off by 1e-3 at V = 5 (tolerance 1.2e-6)"),
    pytest.param(lambda: ancestral_sample(Spoiled(_off_by(1e-8)), 2, 4, 3, "float64", g(), progress=False),
                 fully_sampled, id="float32 row off by 1e-8 at V = 5: within 2 V eps"),
    pytest.param(lambda: ancestral_sample(Fixed(1, 3), 1, 3, 20, "float32", g(), progress=False),
                 gpt2_tokens, id="float32 softmax over 50,257 tokens is accepted"),
    pytest.param(lambda: ancestral_sample(ZeroWhereUnmasked(), 3, 5, 6, "float32", g(), progress=False),
                 fully_sampled, id="zeros at unmasked positions are not read, so not refused"),
    pytest.param(lambda: draw_tokens(torch.full((3, 4), 2.5), "float32", g()), (ValueError, "row 0 sums to 10"), id="draw_tokens, rows x10"),
    pytest.param(lambda: dense_step(torch.full((2, 4), 2.5), 1.0, 0.9, "float32", g()), (ValueError, "row 0 sums to 10"), id="dense_step, rows x10"),
    pytest.param(lambda: _sparse(FLAT * 10, FLAT.amax(-1) * 10), (ValueError, "sums to 10"), id="sparse_step, rows x10"),
    pytest.param(lambda: _sparse(FLAT * 0, FLAT.amax(-1) * 0), (ValueError, "sums to 0"), id="sparse_step, all-zero row"),
    # mu_max: an upper bound is the same law, a value below the maximum is refused
    pytest.param(lambda: _sparse(FLAT, FLAT.amax(-1) * 0), (ValueError, "below the row's maximum"), id="sparse_step, mu_max 0 (never leaves)"),
    pytest.param(lambda: _sparse(FLAT, FLAT.amax(-1) * (1 - 1e-6)), (ValueError, "below the row's maximum"), id="sparse_step, mu_max just below the maximum"),
    pytest.param(lambda: _sparse(FLAT, torch.ones(1, 1, dtype=torch.float64)), leaves_at_rate(0.1), id="sparse_step, mu_max overstated: the law kept"),
    pytest.param(lambda: _sparse(FLAT, FLAT.amax(-1)), leaves_at_rate(0.1), id="sparse_step, mu_max the maximum"),
    # weights that overflow the line's dtype: refused by the lines, rescaled by the exact sampler
    pytest.param(lambda: exponential_race(torch.tensor([1e32, 1.0], dtype=torch.float64), g(), torch.float32), (ValueError, "overflow torch.float32 in exponential_race"),
                 id="float32 race, weights whose score overflows"),
    pytest.param(lambda: exponential_race(torch.tensor([1e39, 1e39], dtype=torch.float64), g(), torch.float32), (ValueError, "overflow torch.float32"),
                 id="float32 race, weights beyond float32"),
    pytest.param(lambda: gumbel_max(torch.tensor([1e39, 1.0], dtype=torch.float64), g(), torch.float32), (ValueError, "overflow torch.float32 in gumbel_max"),
                 id="float32 Gumbel line, weights beyond float32"),
    pytest.param(lambda: gumbel_max(torch.full((20_000, 2), 1e38, dtype=torch.float64), g(), torch.float32), both_classes_about_half,
                 id="float32 Gumbel line, large weights that fit: both classes drawn"),
    pytest.param(lambda: exponential_race(torch.full((20_000, 2), 1e30, dtype=torch.float64), g(), torch.float32), both_classes_about_half,
                 id="float32 race, large weights that fit: both classes drawn"),
    pytest.param(lambda: truncated_race(torch.tensor([1e302, 1e302], dtype=torch.float64), g(), 2.0**-24), (ValueError, "overflow torch.float64 in truncated_race"),
                 id="truncated race, weights whose score overflows float64"),
    pytest.param(lambda: law_on_grid(torch.tensor([1e32, 1.0], dtype=torch.float64), torch.float32), (ValueError, "overflow torch.float32"),
                 id="grid law of weights the line refuses"),
    pytest.param(lambda: inverse_cdf(torch.full((3,), 1e308, dtype=torch.float64), g(), (30_000,)), thirds, id="exact sampler, weights whose sum overflows: rescaled"),
    # caching a time-conditioned denoiser
    pytest.param(lambda: ancestral_sample(Spoiled(time_conditioned=True), 2, 4, 3, "float32", g(), progress=False), (ValueError, "stale times"),
                 id="time-conditioned, per-sequence caching by default"),
    pytest.param(lambda: ancestral_sample(Spoiled(time_conditioned=True), 2, 4, 3, "float32", g(), caching="per_batch", progress=False), (ValueError, "stale times"),
                 id="time-conditioned, per-batch caching"),
    pytest.param(_called(Spoiled(time_conditioned=True), lambda d: ancestral_sample(d, 2, 4, 6, "float64", g(), caching="none", progress=False)),
                 one_call_a_step(6), id="time-conditioned, no caching: a call at every step's time"),
    pytest.param(lambda: ancestral_sample(Spoiled(time_conditioned=True), 2, 4, 3, "float32", g(), allow_stale_time=True, progress=False), fully_sampled,
                 id="time-conditioned, caching asked for by name"),
    pytest.param(lambda: ancestral_sample(Spoiled(time_conditioned=True), 2, 4, 3, "float32", g(), allow_stale_time="yes", progress=False),
                 (TypeError, "allow_stale_time must be True or False"), id="allow_stale_time not a bool"),
    pytest.param(lambda: exact_sample(TimedWithShortcuts(), 3, 5, 7, g(), progress=False), fully_sampled,
                 id="exact sampler, time-conditioned: exact, its shortcut unused"),
    pytest.param(lambda: first_hitting_sample(TimedWithShortcuts(), 3, 5, "float64", g(), progress=False), fully_sampled,
                 id="first hitting, time-conditioned: outputs_at unused"),
    # memory counted before anything is allocated
    pytest.param(lambda: exact_sample(DEN, 1, 1, 10**9, g(), progress=False), (MemoryError, r"steps=1,000,000,000\) with V = 5 would need at least 24.0 GB"),
                 id="exact sampler, 10^9 steps"),
    pytest.param(lambda: ancestral_sample(DEN, 10**6, 10**4, 10, "float32", g(), progress=False), (MemoryError, "would need at least 360.0 GB"),
                 id="ancestral sampler, 10^10 positions"),
    pytest.param(lambda: first_hitting_sample(DEN, 10**6, 10**4, "float32", g(), progress=False), (MemoryError, "would need at least 320.0 GB"),
                 id="first hitting, 10^10 positions"),
    pytest.param(lambda: expected_nfe(10**12, 10), (MemoryError, "24.0 TB"), id="expected NFE of 10^12 steps"),
    pytest.param(lambda: MarkovLanguage(LanguageSpec(vocab_size=10**8, num_classes=1000)), (MemoryError, "2.4 TB"), id="a language of 10^8 tokens"),
    pytest.param(lambda: DEN(torch.full((1, 1), V).expand(10**4, 10**3)), (MemoryError, "400.0 MB, more than 100.0 MB"), id="exact denoiser on 10^7 positions"),
    pytest.param(_budget("lots", lambda: exact_sample(DEN, 1, 1, 10**9, g(), progress=False)), (ValueError, "MDMLIB_MEMORY_BUDGET must be a number"),
                 id="a budget that is not a number"),
    pytest.param(lambda: exact_sample(DEN, 2, 3, 10**6, g(), progress=False), fully_sampled, id="exact sampler, 10^6 steps within the budget"),
]


@pytest.fixture(autouse=True)
def _budget_of_100_mb(monkeypatch):
    monkeypatch.setenv(BUDGET_VARIABLE, BUDGET)


@pytest.mark.parametrize("call, expected", CASES)
def test_hostile_sampling_input(call, expected):
    if isinstance(expected, tuple):
        error, words = expected
        with pytest.raises(error, match=words):
            call()
    else:
        expected(call())
