import pytest
import torch

from mdmlib.categorical import check_probabilities, exponential_race, gumbel_max, inverse_cdf, truncated_race
from mdmlib.montecarlo import count_classes
from mdmlib.stats import chi_square_test
from mdmlib.truncation import truncated_law

SAMPLERS = [
    lambda p, g: gumbel_max(p, g, torch.float64),
    lambda p, g: exponential_race(p, g, torch.float64),
    lambda p, g: exponential_race(p, g, torch.float32),
    lambda p, g: truncated_race(p, g, 2.0**-53),
    inverse_cdf,
]


@pytest.mark.parametrize(
    "p, message",
    [
        ([0.5, float("nan")], "NaN"),
        ([0.5, float("inf")], "infinite"),
        ([0.5, -0.1], "negative"),
        ([[0.5, 0.5], [0.0, 0.0]], "all zero"),
        (torch.tensor([1, 2]), "floating-point"),
        (torch.zeros(3, 0), "non-empty"),
    ],
)
def test_bad_probabilities_are_named(p, message):
    with pytest.raises(ValueError, match=message):
        check_probabilities(p)
    with pytest.raises(ValueError, match=message):
        exponential_race(p, torch.Generator())


def test_bad_dtype_and_eps():
    with pytest.raises(ValueError, match="unknown dtype"):
        gumbel_max(torch.ones(3), torch.Generator(), dtype=torch.int32)
    with pytest.raises(ValueError, match="eps must lie"):
        truncated_race(torch.ones(3), torch.Generator(), eps=1.5)


def test_underflow_in_the_sampling_dtype_is_an_error():
    with pytest.raises(ValueError, match="underflow"):
        exponential_race(torch.tensor([1e-300, 1e-300], dtype=torch.float64), torch.Generator(), torch.float32)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_any_batch_shape(sampler):
    p = torch.rand(2, 3, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    idx = sampler(p, torch.Generator().manual_seed(0))
    assert idx.shape == (2, 3) and idx.dtype == torch.int64 and (idx >= 0).all() and (idx < 5).all()


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_zero_probability_classes_are_never_drawn(sampler):
    p = torch.tensor([0.0, 1e-3, 0.0, 1.0, 0.0], dtype=torch.float64)
    idx = sampler(p.expand(200_000, 5), torch.Generator().manual_seed(0))
    counts = torch.bincount(idx, minlength=5)
    assert counts[[0, 2, 4]].sum() == 0


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_samplers_follow_pi_where_precision_does_not_matter(sampler):
    # pi >= 0.01: neither float32's nor float64's cap moves the law by more than ~1e-6.
    p = torch.tensor([0.01, 0.09, 0.2, 0.3, 0.4], dtype=torch.float64)
    n = 400_000
    counts = count_classes(sampler, p, n, torch.Generator().manual_seed(3))
    assert chi_square_test(counts, p).p_value > 1e-3


def test_truncated_race_follows_the_closed_form():
    p = torch.tensor([0.02, 0.08, 0.2, 0.7], dtype=torch.float64)
    eps = 2.0**-6  # a coarse cap, so the law is far from p
    n = 400_000
    counts = count_classes(truncated_race, p, n, torch.Generator().manual_seed(4), eps=eps)
    assert chi_square_test(counts, truncated_law(p, eps=eps)).p_value > 1e-3
    assert chi_square_test(counts, p).p_value < 1e-12
