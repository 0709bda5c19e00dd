"""Tests for mdmlib.runs.trained_networks: the held-out bound and the KL against known answers."""
import pytest
import torch

from mdmlib.runs import trained_networks as tn
from mdmlib.mdm.objectives import Tempered
from mdmlib.stats.significance import mean_and_se
from mdmlib.language.synthetic import ExactDenoiser
from power_checks import require_z_power
from tiny_training import TINY_LENGTH, enumerated


@pytest.fixture(scope="module")
def tiny():
    return enumerated()


@pytest.mark.parametrize("schedule", ["linear", "loglinear"])
def test_masked_count_bound_of_the_exact_conditionals_is_the_exact_nll(tiny, schedule):
    # Prop. 3.1: with exact conditionals E[S_n / n] summed over n is -log p(x), so the
    # per-sequence estimate minus the sequence's exact NLL per token has mean 0. The
    # alternative: dividing S_n by L instead of n (the mean masked NLL per position).
    language, expected_S, entropy = tiny
    L = TINY_LENGTH
    x0 = language.sample(20_000, L, torch.Generator().manual_seed(20))
    bound = tn.masked_count_bound(ExactDenoiser(language, torch.float64), x0, torch.Generator().manual_seed(21), schedule=schedule)
    mean, se = mean_and_se(bound - language.nll_per_token(x0))
    wrong = float(expected_S.sum()) / L**2  # (1/L) sum_n E[S_n] / L
    require_z_power((wrong - entropy / L) / se, 3.0, "S_n / L in place of S_n / n")
    assert abs(mean / se) < 3, f"bound - exact NLL = {mean:.5f} +- {se:.5f}"


def test_masked_count_bound_gives_a_time_conditioned_denoiser_the_time_of_its_count(tiny):
    # given n of L masked, m(t) ~ Beta(n, L - n + 1): a denoiser that records its times
    # sees, at n = L (every position masked), E[m] = L / (L + 1)
    language, _, _ = tiny
    L = TINY_LENGTH
    seen = []
    exact = ExactDenoiser(language, torch.float64)

    class Recorder:  # a time-conditioned interface: no outputs_at, so every call shows its times
        mask_id = exact.mask_id

        def __call__(self, x, t=None):
            seen.append(((x == self.mask_id).sum(1), t.clone()))
            return exact(x, t)

    x0 = language.sample(1, L, torch.Generator().manual_seed(22)).repeat(8000, 1)
    tn.masked_count_bound(Recorder(), x0, torch.Generator().manual_seed(23), schedule="linear")
    (n, t), = seen
    m = t[n == L]
    mean, se = mean_and_se(m)
    require_z_power((0.5 - L / (L + 1)) / se, 3.0, "m(t) uniform whatever n")
    assert abs(mean - L / (L + 1)) < 3 * se


def test_masked_kl_is_zero_for_the_truth_and_matches_a_direct_sum(tiny):
    language, _, _ = tiny
    exact = ExactDenoiser(language, torch.float64)
    x0 = language.sample(50, TINY_LENGTH, torch.Generator().manual_seed(24))
    x = x0.clone()
    x[:, 1:3] = exact.mask_id
    assert torch.equal(tn.masked_kl(exact, exact, x, None), torch.zeros(50, dtype=torch.float64))
    warmer = Tempered(exact, 2.0)
    p, q = exact(x)[:, 1:3], warmer(x)[:, 1:3]
    direct = (p * (p.log() - q.log())).sum(-1).mean(1)
    assert torch.allclose(tn.masked_kl(exact, warmer, x, None), direct, rtol=1e-12, atol=0)
    assert (direct > 0).all()
    with pytest.raises(ValueError, match="at least one masked position"):
        tn.masked_kl(exact, exact, x0, None)


def test_bad_inputs_are_named(tiny):
    language, _, _ = tiny
    exact = ExactDenoiser(language, torch.float64)
    with pytest.raises(ValueError, match=r"shape \(batch, length\)"):
        tn.masked_count_bound(exact, torch.zeros(4, dtype=torch.int64), torch.Generator())
