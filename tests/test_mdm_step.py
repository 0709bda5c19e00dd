import math

import pytest
import torch

from mdmlib.categorical import race_score
from mdmlib.grid_law import law_on_grid
from mdmlib.mdm_step import _uniform_from_index, dense_step, sparse_step, step_categories
from mdmlib.stats import binomial_z, chi_square_test
from mdmlib.truncation import truncated_law


def _replicas(mu_row: torch.Tensor, n: int):
    """n copies of one position, laid out as a (1, n, V) cache."""
    mu = mu_row.to(torch.float32).expand(1, n, -1).contiguous()
    return mu, mu.max(-1).values, torch.zeros(n, dtype=torch.int64), torch.arange(n)


def test_race_score_is_monotone_on_the_float32_grid():
    # the sparse step relies on it: a larger uniform never lowers a score
    u = _uniform_from_index(torch.arange(1 << 24), "float32", 0.5)
    for p in (1e-9, 3e-7, 0.25, 0.999):
        score = race_score(torch.tensor(p, dtype=torch.float32).expand_as(u), u)
        assert (score[1:] >= score[:-1]).all()


@pytest.mark.parametrize("precision", ["float32", "float64", "float64+trunc"])
def test_candidate_window_contains_every_possible_winner(precision):
    # Brute force over the top of the grid: any uniform whose token score reaches the
    # mask's score must lie within the top J values the sparse step draws from.
    bits = 24 if precision == "float32" else 53
    dtype = torch.float32 if precision == "float32" else torch.float64
    g = torch.Generator().manual_seed(0)
    j = torch.arange(1, 1 << 16)
    u = _uniform_from_index(2**bits - j, precision, 2.0**-24)
    for _ in range(200):
        p_max = torch.tensor(10 ** (-9 * torch.rand(1, generator=g).item()), dtype=torch.float64).to(dtype)
        u_mask = _uniform_from_index(torch.randint(0, 2**bits, (1,), generator=g), precision, 2.0**-24)
        m_s = torch.tensor(1 - 1e-3, dtype=dtype)
        score = (p_max / -torch.log(u)) if precision == "float64+trunc" else race_score(p_max.expand_as(u), u)
        s_mask = (m_s / -torch.log(u_mask)) if precision == "float64+trunc" else race_score(m_s, u_mask)
        reach = torch.nonzero(score >= s_mask).flatten()
        e_star = p_max.double() / s_mask.double()
        J = math.floor(-math.expm1(-e_star.item() * (1 + 1e-4)) * 2.0**bits) + 8
        if reach.numel():
            assert j[reach].max().item() <= J


@pytest.mark.parametrize("precision", ["float32", "float64", "float64+trunc"])
def test_sparse_and_dense_steps_have_the_same_law(precision):
    # tokens in blocks of equal probability, so the exact float32 law is cheap to enumerate
    mu = torch.tensor([0.55] + [0.05] * 5 + [0.02] * 10, dtype=torch.float64)
    move_t, move_s = 1.0, 1.0 - 3e-3
    n = 400_000
    cats = step_categories(mu[None], move_t, move_s, precision)[0].to(torch.float64)
    if precision == "float32":
        blocks = law_on_grid(torch.tensor([cats[0], cats[1], cats[6], cats[-1]]), torch.float32, copies=[1, 5, 10, 1])
    elif precision == "float64+trunc":
        law = truncated_law(cats, eps=2.0**-24)
        blocks = torch.stack([law[0], law[1:6].sum(), law[6:16].sum(), law[16]])
    else:
        law = cats / cats.sum()
        blocks = torch.stack([law[0], law[1:6].sum(), law[6:16].sum(), law[16]])

    def block_counts(new):
        c = torch.bincount(new, minlength=17)
        return torch.stack([c[0], c[1:6].sum(), c[6:16].sum(), c[16]])

    mu_c, mu_max, rows, cols = _replicas(mu, n)
    sparse = block_counts(sparse_step(mu_c, mu_max, rows, cols, move_t, move_s, precision, torch.Generator().manual_seed(1)))
    dense = block_counts(dense_step(mu_c[0], move_t, move_s, precision, torch.Generator().manual_seed(2)))
    assert chi_square_test(sparse, blocks).p_value > 1e-3
    assert chi_square_test(dense, blocks).p_value > 1e-3


def test_sparse_float32_in_the_flat_regime_of_notebook_03():
    # 10,000 flat tokens of 1e-7 against a mask of 1 - 1e-3: the real float32 sampler
    # leaves at 0.731 of the exact rate; the sparse step must reproduce it.
    V, leave = 10_000, 1e-3
    law = law_on_grid(torch.tensor([leave / V, 1 - leave], dtype=torch.float64), torch.float32, copies=[V, 1])[0].item()
    n = 4_000_000
    mu = torch.full((1, 1, V), 1.0 / V, dtype=torch.float32)
    mu_max = mu.max(-1).values
    hits = 0
    g = torch.Generator().manual_seed(3)
    for _ in range(4):
        rows, cols = torch.zeros(n // 4, dtype=torch.int64), torch.zeros(n // 4, dtype=torch.int64)
        hits += int((sparse_step(mu, mu_max, rows, cols, 1.0, 1 - leave, "float32", g) != V).sum())
    assert abs(binomial_z(hits, n, law)) < 4
    assert binomial_z(hits, n, leave) < -10


def test_bad_precision_and_eps():
    mu = torch.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match="unknown precision"):
        dense_step(mu, 1.0, 0.5, "float16", torch.Generator())
    with pytest.raises(ValueError, match="eps"):
        dense_step(mu, 1.0, 0.5, "float64+trunc", torch.Generator(), eps=0.0)
