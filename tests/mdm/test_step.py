import math

import pytest
import torch

from mdmlib.precision.categorical import race_score
from mdmlib.precision.grid_law import law_on_grid
from mdmlib.mdm.step import PRECISIONS, _score, _uniform_from_index, candidate_window, dense_step, sparse_step, step_categories
from mdmlib.stats.significance import ALPHA, chi_square_power, chi_square_test
from mdmlib.precision.truncation import truncated_law
from power_checks import require_power

# One masked position, stepping from t (m_t = 1) to s (m_s = 1 - h), with eight tokens
# spanning two decades. h = 0.02: the mask's score is far above every token's, so the
# sparse step draws candidate tokens only; h = 0.5: the largest token is half the mask,
# so most positions (77%) take the path that draws all V uniforms.
MU = torch.tensor([0.5, 0.2, 0.1, 0.1, 0.05, 0.03, 0.015, 0.005], dtype=torch.float64)
STEPS = (0.02, 0.5)
COARSE_EPS = 2.0**-8  # bfloat16's gap below one: truncation moves this law by far more than the test resolves
N = 200_000  # draws per step size


def _categories(h: float, dtype=torch.float64) -> torch.Tensor:
    """[mu h, 1 - h] from the definition, rounded to the sampler's dtype as it holds them."""
    m_s = torch.tensor(1.0 - h, dtype=torch.float64).to(dtype)
    return torch.cat([MU.to(dtype) * (1 - m_s), m_s.reshape(1)]).to(torch.float64)


def _laws(precision: str):
    """Per step size: the law the precision must follow, and the nearest wrong law."""
    laws, wrong = [], []
    for h in STEPS:
        cats = _categories(h)
        exact, truncated = cats / cats.sum(), truncated_law(cats, eps=COARSE_EPS)
        if precision == "float64+trunc":
            laws.append(truncated), wrong.append(exact)  # the truncation factor dropped
        elif precision == "float64":
            laws.append(exact), wrong.append(truncated)  # truncation where there should be none
        else:
            # The float32 line departs from the exact law only by its cap and grid, ~2^-24 / p
            # relative (p >= 1e-4 here): the closed form at float32's cap, a bound on that size,
            # moves the chi-square statistic by a non-centrality far below one.
            c32 = _categories(h, torch.float32)
            capped = truncated_law(c32, eps=2.0**-24)
            assert N * float(((capped - exact) ** 2 / exact).sum()) < 1e-3
            laws.append(exact)
            wrong.append(law_on_grid(c32, torch.float16))  # the same line in the next coarser format
    return torch.cat(laws) / len(STEPS), torch.cat(wrong) / len(STEPS)


def _replicas(n: int):
    mu = MU.to(torch.float32).expand(1, n, -1)  # n copies of one position, never materialised
    return mu, mu.max(-1).values, torch.zeros(n, dtype=torch.int64), torch.arange(n)


def _counts(draw) -> torch.Tensor:
    """Class counts (V tokens, then the mask) at each step size, concatenated."""
    V = MU.numel()
    return torch.cat([torch.bincount(draw(h), minlength=V + 1) for h in STEPS])


@pytest.mark.parametrize("precision", PRECISIONS)
def test_sparse_and_dense_steps_follow_the_law_of_their_precision(precision):
    law, wrong = _laws(precision)
    require_power(chi_square_power(law, wrong, len(STEPS) * N), f"{precision}: the nearest wrong law")
    g = torch.Generator().manual_seed(PRECISIONS.index(precision))

    def sparse(h):
        mu, mu_max, rows, cols = _replicas(N)
        return sparse_step(mu, mu_max, rows, cols, 1.0, 1.0 - h, precision, g, eps=COARSE_EPS)

    def dense(h):
        return dense_step(MU.to(torch.float32).expand(N, -1), 1.0, 1.0 - h, precision, g, eps=COARSE_EPS)

    assert chi_square_test(_counts(sparse), law).p_value > ALPHA
    assert chi_square_test(_counts(dense), law).p_value > ALPHA


@pytest.mark.parametrize("precision", PRECISIONS)
def test_sparse_step_keeps_its_law_for_any_upper_bound_on_mu_max(precision):
    # A larger bound only widens the window of candidate uniforms, each candidate still
    # scored by the literal line: mu_max = 1 (twice the largest token) gives the same law.
    # A bound below the maximum would miss candidates, so it is refused.
    law, wrong = _laws(precision)
    require_power(chi_square_power(law, wrong, len(STEPS) * N), f"{precision}: the nearest wrong law")
    g = torch.Generator().manual_seed(10 + PRECISIONS.index(precision))

    def sparse(h):
        mu, mu_max, rows, cols = _replicas(N)
        return sparse_step(mu, torch.ones_like(mu_max), rows, cols, 1.0, 1.0 - h, precision, g, eps=COARSE_EPS)

    assert chi_square_test(_counts(sparse), law).p_value > ALPHA
    mu, mu_max, rows, cols = _replicas(10)
    with pytest.raises(ValueError, match="below the row's maximum"):
        sparse_step(mu, mu_max * 0.99, rows, cols, 1.0, 0.98, precision, g, eps=COARSE_EPS)


# Flat tokens so many that several share the best uniform: V = 2^22 tokens of probability
# 0.25 / V (one float32 grid cell, 2^-24, each) against a mask of 0.75. Tokens can only
# win with a uniform among the top few grid values, where ties between tokens are common
# and argmax gives them to the first index: the lower half of the vocabulary wins more.
FLAT_V, FLAT_H, FLAT_N = 2**22, 0.25, 100_000


@pytest.fixture(scope="module")
def flat_law():
    """Exact law of the float32 line on [lower half, upper half, mask] (the CPU grid)."""
    p_tok, m_s = step_categories(torch.full((1, 1), 1.0 / FLAT_V), 1.0, 1.0 - FLAT_H, "float32")[0].double()
    return p_tok.item(), m_s.item(), law_on_grid(torch.tensor([p_tok, p_tok, m_s]), torch.float32, copies=[FLAT_V // 2, FLAT_V // 2, 1])


def test_sparse_float32_follows_the_grid_law_and_breaks_ties_like_argmax(flat_law):
    p_tok, m_s, law = flat_law
    V = FLAT_V
    exact = torch.tensor([V / 2 * p_tok, V / 2 * p_tok, m_s], dtype=torch.float64)
    exact /= exact.sum()
    # The closed form (truncation at float32's cap, continuous uniforms), by the race picture:
    # the V token clocks start together at delta / p as one clock of rate V p, the mask's at
    # delta / m_s; the mask fires first before the tokens start, else by rate.
    delta = -math.log1p(-(2.0**-24))
    late = math.exp(-m_s * delta * (1 / p_tok - 1 / m_s)) * V * p_tok / (V * p_tok + m_s)
    closed = torch.tensor([late / 2, late / 2, 1 - late], dtype=torch.float64)
    last_index = law[[1, 0, 2]]  # ties to the last index instead: the halves swap
    for name, other in (("the exact law", exact), ("the closed form", closed), ("ties to the last index", last_index)):
        require_power(chi_square_power(law, other, FLAT_N), f"flat float32 step: {name}")
    mu = torch.full((1, 1, V), 1.0 / V, dtype=torch.float32).expand(1, FLAT_N, V)
    new = sparse_step(mu, torch.full((1, FLAT_N), 1.0 / V), torch.zeros(FLAT_N, dtype=torch.int64), torch.arange(FLAT_N), 1.0, 1.0 - FLAT_H, "float32", torch.Generator().manual_seed(7))
    counts = torch.stack([(new < V // 2).sum(), ((new >= V // 2) & (new < V)).sum(), (new == V).sum()])
    assert chi_square_test(counts, law).p_value > ALPHA


def test_race_score_is_monotone_on_the_float32_grid():
    # the sparse step relies on it: a larger uniform never lowers a score
    u = _uniform_from_index(torch.arange(1 << 24), "float32", 0.5)
    for p in (1e-9, 3e-7, 0.25, 0.999):
        score = race_score(torch.tensor(p, dtype=torch.float32).expand_as(u), u)
        assert (score[1:] >= score[:-1]).all()


@pytest.mark.parametrize("precision", PRECISIONS)
def test_candidate_window_contains_every_possible_winner(precision):
    # Brute force over the top 2^16 grid values: every uniform whose literal token score
    # reaches the mask's score must lie within the window the sparse step draws from,
    # and the window must not be much wider than the reach (the step is O(1) per position).
    # The truncated sampler's uniforms stop at 1 - eps, so its scores need -log u <= E* - delta:
    # its window, computed from E*, is wider by the delta 2^53 grid values no token can use.
    bits = 24 if precision == "float32" else 53
    dtype = torch.float32 if precision == "float32" else torch.float64
    delta = -math.log1p(-COARSE_EPS) if precision == "float64+trunc" else 0.0
    g = torch.Generator().manual_seed(0)
    j = torch.arange(1, 1 << 16)
    u = _uniform_from_index(2**bits - j, precision, COARSE_EPS)
    informative = 0
    for _ in range(100):
        m_s = torch.tensor(1.0 - 0.9 * torch.rand(1, generator=g, dtype=torch.float64).item(), dtype=dtype)
        s_mask = _score(m_s, _uniform_from_index(torch.randint(0, 2**bits, (1,), generator=g), precision, COARSE_EPS), precision)
        # a token probability that reaches between half a grid value and 2^15 grid values
        reach_target = 2.0 ** (-1 + 16 * torch.rand(1, generator=g, dtype=torch.float64).item())
        p_max = (s_mask.double() * (delta + reach_target * 2.0**-bits)).to(dtype)
        reach = torch.nonzero(_score(p_max.expand_as(u), u, precision) >= s_mask).flatten()
        J = candidate_window(p_max, s_mask, precision).item()
        if reach.numel():
            informative += 1
            assert j[reach].max().item() <= J
            assert J <= (j[reach].max().item() + delta * 2.0**bits) * (1 + 2e-4) + 16
    assert informative >= 75  # most cases have winners to miss


def test_sparse_step_reads_only_positions_it_is_given():
    # rows/cols select positions of a (B, L, V) cache; unmasked tokens come back as V
    mu = torch.zeros(2, 3, 4)
    mu[1, 2, 3] = 1.0  # the only position with a certain token
    mu[..., 0] += 1e-30  # other positions: a token of negligible probability
    mu_max = mu.max(-1).values
    new = sparse_step(mu, mu_max, torch.tensor([1]), torch.tensor([2]), 1.0, 0.0, "float64", torch.Generator().manual_seed(0))
    assert new.tolist() == [3]  # m_s = 0: the position must unmask, to its only token
