import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mdmlib.precision.formats import float_format
from mdmlib.precision.truncation import truncated_law, truncated_law_reference

M32 = float_format(torch.float32).gumbel_cap
EPS = torch.finfo(torch.float64).eps  # 2^-52: float64's relative rounding is at most half of it
TINY = torch.finfo(torch.float64).tiny  # below this (subnormals) there is no relative precision

probabilities = st.lists(
    st.one_of(st.just(0.0), st.floats(min_value=1e-30, max_value=1.0)), min_size=1, max_size=40
).filter(lambda xs: sum(xs) > 0)
caps = st.floats(min_value=0.05, max_value=40.0)


def _rounding_steps(K: int, reference: bool = False) -> int:
    """Roundings that feed one entry: the closed form's cumulative sums (plain up to 256 terms,
    two-level above: 256 + K / 256), normalising and the exponent (3); the reference adds its
    sums over the K classes and over at most ~K + 80 Gauss-Legendre panels of 20 nodes."""
    steps = (K if K <= 256 else 256 + math.ceil(K / 256)) + 3
    return steps + (2 * K + 100 if reference else 0)


def _rtol(p: torch.Tensor, M: float, reference: bool = False) -> torch.Tensor:
    """Relative error bound per entry. Class n's law carries exp(-delta D_n / p_n),
    D_n = sum_k (p_k - p_n)^+: a relative error r in the sums behind the exponent A_n becomes a
    relative error |A_n| r in the law, so the bound is (2 + |A_n|) (rounding steps) eps."""
    q = p.to(torch.float64) / p.sum()
    s = torch.sort(q).values  # D_n = (mass above q_n) - (classes above q_n) q_n, in float64
    above = s.numel() - torch.searchsorted(s, q, right=True)
    mass_above = torch.cat([torch.flip(torch.cumsum(torch.flip(s, [0]), 0), [0]), torch.zeros(1, dtype=s.dtype)])
    D = (mass_above[s.numel() - above] - above * q).clamp(min=0)
    A = math.exp(-M) * D / torch.where(q > 0, q, torch.ones_like(q))
    return (2 + A) * _rounding_steps(p.shape[-1], reference) * EPS


def _close(a: torch.Tensor, b: torch.Tensor, rtol: torch.Tensor) -> bool:
    return bool(((a - b).abs() <= rtol * torch.maximum(a.abs(), b.abs()) + TINY).all())


def _random_case(K, seed):
    g = torch.Generator().manual_seed(seed)
    # log-uniform over 30 decades, so tiny and large probabilities meet
    p = torch.exp(-69.0 * torch.rand(K, generator=g, dtype=torch.float64))
    p[torch.rand(K, generator=g) < 0.05] = 0.0
    p[0] = max(p[0].item(), 1e-3)
    M = float(0.5 + 20 * torch.rand(1, generator=g, dtype=torch.float64))
    return p, M


@pytest.mark.parametrize("K, seed", [(1, 0), (2, 1), (3, 2), (7, 3), (50, 4), (300, 5), (1000, 6)])
def test_closed_form_matches_numerical_integration(K, seed):
    p, M = _random_case(K, seed)
    closed, reference = truncated_law(p, M), truncated_law_reference(p, M)
    assert _close(closed, reference, _rtol(p, M, reference=True))


@pytest.mark.parametrize("M", [0.1, 5.54, 16.6, M32])
def test_closed_form_matches_reference_with_ties_and_zeros(M):
    p = torch.tensor([0.0, 0.1, 0.1, 0.3, 0.0, 0.3, 0.2, 1e-12], dtype=torch.float64)
    assert _close(truncated_law(p, M), truncated_law_reference(p, M), _rtol(p, M, reference=True))


@settings(max_examples=200, deadline=None)
@given(probabilities, caps)
def test_sums_to_one(xs, M):
    p = torch.tensor(xs, dtype=torch.float64)
    law = truncated_law(p, M)
    assert torch.isfinite(law).all() and (law >= 0).all()
    assert abs(law.sum().item() - 1.0) <= float((_rtol(p, M) * law).sum()) + len(xs) * EPS


@settings(max_examples=200, deadline=None)
@given(probabilities, caps)
def test_zero_classes_get_exactly_zero(xs, M):
    p = torch.tensor(xs, dtype=torch.float64)
    assert (truncated_law(p, M)[p == 0] == 0).all()


@settings(max_examples=200, deadline=None)
@given(probabilities)
def test_large_cap_recovers_pi(xs):
    p = torch.tensor(xs, dtype=torch.float64)
    p = p / p.sum()
    # delta = e^-700 ~ 1e-304: the shift of every class is far below float64 resolution
    assert _close(truncated_law(p, 700.0), p, _rtol(p, 700.0))


@settings(max_examples=200, deadline=None)
@given(probabilities, caps)
def test_larger_to_smaller_ratios_never_shrink(xs, M):
    p = torch.tensor(xs, dtype=torch.float64)
    p = p / p.sum()
    law = truncated_law(p, M)
    i, j = torch.nonzero(p > 0).flatten().tolist()[0], torch.argmax(p).item()
    big, small = (i, j) if p[i] >= p[j] else (j, i)
    rtol = _rtol(p, M)
    if law[small] > 0:  # ratios of classes the law can still resolve
        assert law[big] / law[small] >= (p[big] / p[small]) * (1 - rtol[big] - rtol[small])
    order = torch.argsort(p)
    keep = p[order] > 0
    ratio, r = (law / torch.where(p > 0, p, torch.ones_like(p)))[order][keep], rtol[order][keep]
    assert (ratio[1:] >= ratio[:-1] * (1 - r[1:] - r[:-1])).all()  # pi'_n / pi_n grows with pi_n


@settings(max_examples=100, deadline=None)
@given(probabilities, caps, st.randoms(use_true_random=False))
def test_permutation_invariance(xs, M, rnd):
    p = torch.tensor(xs, dtype=torch.float64)
    perm = list(range(len(xs)))
    rnd.shuffle(perm)
    perm = torch.tensor(perm)
    # Sums in another order round differently (~K ulp), and the law of class n,
    # ~exp(-delta D_n / p_n), multiplies a relative rounding of p by delta / p_n (D_n <= 1)
    q = p / p.sum()
    delta = math.exp(-M)
    rtol = len(xs) * 2.0**-52 * (4 + delta / torch.where(q > 0, q, torch.ones_like(q)))
    a, b = truncated_law(p[perm], M), truncated_law(p, M)[perm]
    assert ((a - b).abs() <= rtol[perm] * b).all()


def test_batches_are_rows():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(3, 4, 20, generator=g, dtype=torch.float64) ** 4
    law = truncated_law(p, 4.0)
    for idx in [(0, 0), (1, 2), (2, 3)]:
        assert torch.equal(law[idx], truncated_law(p[idx], 4.0))


def test_large_vocabularies_and_tiny_probabilities_stay_finite():
    g = torch.Generator().manual_seed(0)
    K = 100_000
    p = torch.exp(-69.0 * torch.rand(K, generator=g, dtype=torch.float64))  # down to 1e-30
    for M in (0.5, 5.54, M32, 36.7):
        law = truncated_law(p, M)
        assert torch.isfinite(law).all()
        assert abs(law.sum().item() - 1.0) <= float((_rtol(p, M) * law).sum()) + K * EPS
    flat = torch.full((K,), 1.0 / K, dtype=torch.float64)  # ties everywhere: no spurious shift
    assert _close(truncated_law(flat, M32), flat, _rtol(flat, M32))


def test_two_classes_exact_law_from_eps_and_from_cap():
    # For K = 2 the law is pi'_1 = pi_1 exp(-delta (1 - 2 pi_1) / pi_1) exactly, with
    # delta = -log(1 - eps) = e^-M. Given eps, that is -log1p(-eps); given M, exp(-M).
    p1 = 0.2
    p = torch.tensor([p1, 1 - p1], dtype=torch.float64)
    f = float_format(torch.bfloat16)
    for law, delta in ((truncated_law(p, eps=f.gap_below_one), -math.log1p(-f.gap_below_one)), (truncated_law(p, 12.0), math.exp(-12.0))):
        want = p1 * math.exp(-delta * (1 - 2 * p1) / p1)
        assert _close(law[0], torch.tensor(want, dtype=torch.float64), _rtol(p, -math.log(delta))[0] + 4 * EPS)
        assert _close(law[1], torch.tensor(1 - want, dtype=torch.float64), _rtol(p, -math.log(delta))[1] + 4 * EPS)
    # to first order in delta the small class loses delta (pi_2 - pi_1)
    assert abs(p1 - truncated_law(p, 12.0)[0].item() - math.exp(-12.0) * (1 - 2 * p1)) < (math.exp(-12.0) * (1 - 2 * p1)) ** 2 / p1
