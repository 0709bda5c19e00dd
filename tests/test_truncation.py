import math
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mdmlib.precision import float_format
from mdmlib.truncation import truncated_law, truncated_law_reference

M32 = float_format(torch.float32).gumbel_cap

probabilities = st.lists(
    st.one_of(st.just(0.0), st.floats(min_value=1e-30, max_value=1.0)), min_size=1, max_size=40
).filter(lambda xs: sum(xs) > 0)
caps = st.floats(min_value=0.05, max_value=40.0)


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
    assert (closed - reference).abs().max() < 1e-9


@pytest.mark.parametrize("M", [0.1, 5.54, 16.6, M32])
def test_closed_form_matches_reference_with_ties_and_zeros(M):
    p = torch.tensor([0.0, 0.1, 0.1, 0.3, 0.0, 0.3, 0.2, 1e-12], dtype=torch.float64)
    assert (truncated_law(p, M) - truncated_law_reference(p, M)).abs().max() < 1e-9


@settings(max_examples=200, deadline=None)
@given(probabilities, caps)
def test_sums_to_one(xs, M):
    law = truncated_law(torch.tensor(xs, dtype=torch.float64), M)
    assert torch.isfinite(law).all() and (law >= 0).all()
    assert abs(law.sum().item() - 1.0) < 1e-12


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
    assert torch.allclose(truncated_law(p, 700.0), p, rtol=1e-12, atol=0)


@settings(max_examples=200, deadline=None)
@given(probabilities, caps)
def test_larger_to_smaller_ratios_never_shrink(xs, M):
    p = torch.tensor(xs, dtype=torch.float64)
    p = p / p.sum()
    law = truncated_law(p, M)
    i, j = torch.nonzero(p > 0).flatten().tolist()[0], torch.argmax(p).item()
    big, small = (i, j) if p[i] >= p[j] else (j, i)
    if law[small] > 0:  # ratios of classes the law can still resolve
        assert law[big] / law[small] >= (p[big] / p[small]) * (1 - 1e-12)
    order = torch.argsort(p)
    ratio = (law / torch.where(p > 0, p, torch.ones_like(p)))[order][p[order] > 0]
    assert (ratio[1:] >= ratio[:-1] * (1 - 1e-12)).all()  # pi'_n / pi_n grows with pi_n


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
        assert abs(law.sum().item() - 1.0) < 1e-12
    flat = torch.full((K,), 1.0 / K, dtype=torch.float64)  # ties everywhere: no spurious shift
    assert torch.allclose(truncated_law(flat, M32), flat, rtol=1e-12, atol=0)


def test_eps_and_cap_agree_and_exactly_one_is_given():
    p = torch.tensor([0.1, 0.9], dtype=torch.float64)
    f = float_format(torch.bfloat16)
    assert torch.equal(truncated_law(p, eps=f.gap_below_one), truncated_law(p, f.gumbel_cap))
    with pytest.raises(ValueError, match="exactly one"):
        truncated_law(p)
    with pytest.raises(ValueError, match="exactly one"):
        truncated_law(p, 3.0, eps=0.1)
    with pytest.raises(ValueError, match="eps must lie"):
        truncated_law(p, eps=0.0)
    with pytest.raises(ValueError, match="NaN"):
        truncated_law(p, float("nan"))
    with pytest.raises(ValueError, match="negative"):
        truncated_law(torch.tensor([0.5, -0.5]), 3.0)


def test_two_classes_first_order_shift():
    # For K = 2 the closed form gives pi'_1 = pi_1 exp(-delta (1 - 2 pi_1) / pi_1),
    # so to first order in delta = e^-M the small class loses delta (pi_2 - pi_1).
    p1, M = 0.2, 12.0
    delta = math.exp(-M)
    law = truncated_law(torch.tensor([p1, 1 - p1], dtype=torch.float64), M)
    assert math.isclose(law[0].item(), p1 * math.exp(-delta * (1 - 2 * p1) / p1), rel_tol=1e-14)
