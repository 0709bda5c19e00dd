"""The check of denoiser outputs: correctly normalised rows pass in every format at every
vocabulary size, rows off by more than the tolerance are refused and named, only the rows
asked for are judged, and an expanded view is reduced over its stored rows only."""
import math

import pytest
import torch
from hypothesis import given, strategies as st

from mdmlib.mdm.denoiser_outputs import MAX_TOLERANCE, _stored_rows, check_laws, row_statistics, sum_tolerance

DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)


def _check(mu, read=None):
    total, low, _ = row_statistics(mu)
    check_laws(total, low, mu.dtype, mu.shape[-1], read=read)


def test_tolerance_is_twice_v_eps_capped_at_a_half():
    assert sum_tolerance(5, torch.float32) == 10 * 2.0**-23
    assert sum_tolerance(50_257, torch.float64) == 2 * 50_257 * 2.0**-52
    assert sum_tolerance(50_257, torch.bfloat16) == MAX_TOLERANCE == 0.5


@given(st.integers(2, 70_000), st.sampled_from(DTYPES), st.floats(0.1, 30.0), st.integers(0, 2**31 - 1), st.booleans())
def test_rows_normalised_in_their_dtype_pass(vocab, dtype, spread, seed, softmax):
    # a softmax, or weights over their sum, computed in the output's own format (the bound's case)
    g = torch.Generator().manual_seed(seed)
    logits = spread * torch.randn(3, vocab, generator=g, dtype=torch.float64)
    if softmax:
        mu = torch.softmax(logits.to(dtype), -1)
    else:
        w = torch.exp(logits - logits.max()).to(dtype)
        mu = w / w.sum(-1, keepdim=True)
    total, _, _ = row_statistics(mu)
    err = float((total.double() - 1).abs().max())
    assert err <= sum_tolerance(vocab, dtype)
    _check(mu)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("vocab", [3, 1000, 50_257])
def test_rows_off_by_more_than_the_tolerance_are_refused(dtype, vocab):
    mu = torch.full((4, vocab), 1.0 / vocab, dtype=torch.float64)
    tol = sum_tolerance(vocab, dtype)
    mu[2, 0] += 2.5 * tol if tol < MAX_TOLERANCE else 0.75  # a half plus: refused in every format
    mu = mu.to(dtype)
    with pytest.raises(ValueError, match="at row 2 sums to"):
        check_laws(*row_statistics(mu)[:2], dtype, vocab, where=lambda i: f"row {i[0]}")


def test_each_problem_is_named_at_its_row():
    mu = torch.full((2, 3, 4), 0.25)
    for value, words in ((math.nan, "holds NaN"), (-0.25, r"holds a negative value \(-0.25\)"), (math.inf, "holds an infinite value")):
        bad = mu.clone()
        bad[1, 2, 0] = value
        if value == -0.25:
            bad[1, 2, 1] = 0.75  # the sum stays 1: only the sign gives it away
        with pytest.raises(ValueError, match=f"output at sequence 1, position 2 {words}"):
            _check(bad)
    zero = mu.clone()
    zero[0, 1] = 0
    with pytest.raises(ValueError, match="sequence 0, position 1 sums to 0, not 1"):
        _check(zero)


def test_only_the_rows_read_are_judged():
    mu = torch.full((2, 3, 4), 0.25)
    mu[0, 1] = 0.0  # an unmasked position, say: the sampler never reads it
    read = torch.ones(2, 3, dtype=torch.bool)
    read[0, 1] = False
    _check(mu, read)
    read[0, 1] = True
    with pytest.raises(ValueError, match="sequence 0, position 1"):
        _check(mu, read)


def test_an_expanded_view_is_reduced_over_its_stored_rows():
    # a million copies of one row of 10,000 tokens: 10^10 entries in the view, 10^4 stored
    row = torch.full((1, 1, 10_000), 1e-4)
    view = row.expand(3, 10**6, 10_000)
    assert _stored_rows(view).numel() == 10_000
    total, low, high = row_statistics(view)
    assert total.shape == low.shape == high.shape == (3, 10**6)
    assert torch.allclose(total[2, -1], torch.tensor(1.0)) and float(high[0, 0]) == float(low[1, 5]) == float(row[0, 0, 0])
    _check(view)
    # a stride-0 dimension of size one and the last dimension stay whole
    assert _stored_rows(torch.full((1,), 0.5).expand(2)).numel() == 2
