import itertools
import math

import pytest
import torch

from mdmlib.precision.argmax_law import argmax_law, law_of_grid_line
from mdmlib.precision.categorical import gumbel_score, race_score
from mdmlib.precision.grid_law import law_on_grid, rand_grid


def _grid(dtype):
    values, probs = rand_grid(dtype)
    return values, torch.round(probs * 2**24).to(torch.int64)


def _race_noise(u):
    return 1e-10 - torch.log(u + 1e-10)


def _log_minus_log(u):
    return torch.log(-torch.log(u))


# the sweep with the noise and combine of categorical's two scores
LINES = {
    "exponential_race": (_race_noise, lambda p, e: p / e),
    "gumbel_max": (_log_minus_log, lambda p, n: torch.log(p) - n),
}


def test_combines_reproduce_the_scores_of_categorical():
    u, _ = _grid(torch.bfloat16)
    p = torch.full_like(u, 0.01)
    for name, score in (("exponential_race", race_score), ("gumbel_max", gumbel_score)):
        noise, combine = LINES[name]
        assert torch.equal(combine(p, noise(u)), score(p, u))


CASES = [
    ([0.001, 0.009, 0.09, 0.9], None),  # four classes, as in notebook 03
    ([1e-3 / 50, 0.3e-3, 1 - 1.3e-3], [50, 3, 1]),  # blocks of tokens, the mask last
    ([1 - 1.3e-3, 1e-3 / 50, 0.3e-3], [1, 50, 3]),  # the mask first
    ([0.9, 0.001 / 7, 0.099], [1, 7, 1]),
    ([0.25, 0.25, 0.25, 0.25], None),  # equal classes: ties everywhere
]


@pytest.mark.parametrize("sampler", sorted(LINES))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_sweep_equals_law_on_grid(sampler, dtype, case):
    """Two independent algorithms for the same exact law: every block against every other
    at every grid value (law_on_grid), and one sweep over the sorted atoms."""
    p, copies = CASES[case]
    p = torch.tensor(p, dtype=torch.float64)
    reference = law_on_grid(p, dtype, sampler, copies=copies)
    noise, combine = LINES[sampler]
    values, counts = _grid(dtype)
    got = law_of_grid_line(p.to(dtype), noise(values), counts, 2**24, combine, copies=copies)
    # float64 sums of up to 2^24 terms: 1e-12 is ~1,000 roundings of 1e-16 on values of order 1
    assert (got.law - reference).abs().max() < 1e-12
    assert got.unresolved <= 1e-12  # the default tolerance: only all-minus-infinity events are left out


def test_sweep_equals_law_on_grid_at_float32_and_gpt2_vocabulary():
    """The float32 grid (2^24 values), 50,257 flat tokens and the mask at h = 1e-3:
    notebook 04's case, where the sweep lumps the mask's atoms between the tokens'."""
    V, h = 50_257, 1e-3
    p = torch.tensor([h / V, 1 - h], dtype=torch.float64)
    reference = law_on_grid(p, torch.float32, copies=[V, 1])
    values, counts = _grid(torch.float32)
    got = law_of_grid_line(p.to(torch.float32), _race_noise(values), counts, 2**24, lambda a, e: a / e, copies=[V, 1])
    assert (got.law - reference).abs().max() < 1e-12


def _brute_force(atoms, copies):
    """Law of the first maximal class by enumerating every joint outcome of every class."""
    classes = [b for b, c in enumerate(copies) for _ in range(c)]
    out = [0.0] * len(copies)
    for outcome in itertools.product(*[atoms[b] for b in classes]):
        scores = [v for v, _ in outcome]
        winner = classes[scores.index(max(scores))]
        out[winner] += math.prod(q for _, q in outcome)
    return torch.tensor(out, dtype=torch.float64)


def test_argmax_law_by_enumeration_with_ties_copies_and_a_window():
    D = 16
    # (value, count) per block; values shared between blocks make ties
    atoms = [[(0.0, 3), (1.0, 5), (2.0, 8)], [(1.0, 6), (2.0, 2), (3.0, 8)], [(-1.0, 4), (2.0, 12)]]
    copies = [1, 2, 1]
    law = _brute_force([[(v, c / D) for v, c in a] for a in atoms], copies)
    flat = [(v, c, b) for b, a in enumerate(atoms) for v, c in a]
    values, counts, blocks = (torch.tensor(x) for x in zip(*flat))
    got = argmax_law(values.double(), counts, blocks, torch.zeros(3, dtype=torch.int64), D, copies)
    assert (got - law).abs().max() < 1e-15
    # list only the window [1, inf): the mass below goes into `below`; wins at or above 1 are unchanged
    keep = values >= 1.0
    below = torch.zeros(3, dtype=torch.int64).index_add_(0, blocks[~keep], counts[~keep])
    window = argmax_law(values[keep].double(), counts[keep], blocks[keep], below, D, copies)
    low_wins = _brute_force([[(v if v >= 1 else -10.0, c / D) for v, c in a] for a in atoms], copies)
    # in the window the law is the same; what is missing is the event that every class is below 1
    assert (window - law).abs().max() < 1e-15 or abs(float(law.sum() - window.sum()) - float((low_wins - window).sum())) < 1e-15
    everyone_below = math.prod((sum(c for v, c in a if v < 1) / D) ** k for a, k in zip(atoms, copies))
    assert abs(float(window.sum()) - (1 - everyone_below)) < 1e-15


def test_minus_infinity_is_resolved_window_by_window():
    """Gumbel noise without a guard is -inf at u = 0 (probability 2^-9 in bfloat16): the
    events where the likeliest class scores -inf are resolved below it, as law_on_grid has it."""
    p = torch.tensor([0.001, 0.009, 0.09, 0.9], dtype=torch.float64)
    values, counts = _grid(torch.bfloat16)
    assert counts[0] == 2**15 + 1  # u = 0: k = 0 and the values that round up to 1
    got = law_of_grid_line(p.to(torch.bfloat16), _log_minus_log(values), counts, 2**24, lambda a, n: torch.log(a) - n)
    assert (got.law - law_on_grid(p, torch.bfloat16, "gumbel_max")).abs().max() < 1e-12
    # stopped early, it reports a bound on what it left out, and the rest is exact
    early = law_of_grid_line(p.to(torch.bfloat16), _log_minus_log(values), counts, 2**24, lambda a, n: torch.log(a) - n, tol=1e-2)
    assert early.unresolved == pytest.approx((2**15 + 1) / 2**24)
    assert 0 <= float((got.law - early.law).sum()) <= early.unresolved


def test_bad_input():
    values, counts = _grid(torch.bfloat16)
    with pytest.raises(ValueError, match="add up to the denominator"):
        law_of_grid_line(torch.ones(2, dtype=torch.bfloat16), _race_noise(values), counts, 2**23, lambda a, e: a / e)
    with pytest.raises(ValueError, match="non-decreasing"):
        law_of_grid_line(torch.tensor([0.5, 0.5], dtype=torch.bfloat16), _race_noise(values), counts, 2**24, lambda a, e: e / a)
    with pytest.raises(ValueError, match="same value twice"):
        argmax_law(torch.tensor([1.0, 1.0]), torch.tensor([1, 1]), torch.tensor([0, 0]), torch.zeros(1, dtype=torch.int64), 2)
    with pytest.raises(ValueError, match="more than the denominator"):
        argmax_law(torch.tensor([1.0]), torch.tensor([3]), torch.tensor([0]), torch.zeros(1, dtype=torch.int64), 2)
    with pytest.raises(ValueError, match="copies"):
        argmax_law(torch.tensor([1.0]), torch.tensor([1]), torch.tensor([0]), torch.zeros(1, dtype=torch.int64), 2, copies=[0])
