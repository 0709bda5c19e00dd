"""Calibration: it recovers a language's own parameters from that language's Gen PPL and
sentence entropy, lands on the targets, and refuses targets no language can reach."""
import math

import pytest
import torch

from mdmlib.language.calibration import Infeasible, calibrate, sentence_entropy_by_sorting, solve_transition_spread
from mdmlib.language.clustered import ClusteredLanguage, ClusteredSpec, chain_entropy_rate, chain_noise, emissions, stationary, transitions
from mdmlib.stats.metrics import sentence_entropy


def test_sentence_entropy_by_sorting_is_the_metric():
    g = torch.Generator().manual_seed(0)
    for V in (2, 50, 5000):
        x = torch.randint(0, V, (7, 33), generator=g) ** 2 // V  # repeats, skewed
        assert torch.allclose(sentence_entropy_by_sorting(x), sentence_entropy(x), atol=1e-13, rtol=0)
    assert float(sentence_entropy_by_sorting(torch.zeros(2, 9, dtype=torch.int64)).abs().max()) < 1e-15
    with pytest.raises(ValueError, match="integer tensor"):
        sentence_entropy_by_sorting(torch.zeros(2, 3))


def test_transition_spread_hits_the_rate_or_says_which_way_to_go():
    noise = chain_noise(400, 8, 1)
    e = emissions(noise, 1.0, 1.8)
    target = float(e.entropy.mean()) + 1.0
    spread = solve_transition_spread(noise, e, target, 100)
    T = transitions(noise, spread)
    assert math.isclose(chain_entropy_rate(T, stationary(T), e, 100), target, rel_tol=1e-12)
    with pytest.raises(Infeasible) as above:
        solve_transition_spread(noise, e, math.log(8) + float(e.entropy.max()) + 1, 100)  # beyond uniform class transitions
    assert above.value.direction == -1
    with pytest.raises(Infeasible) as below:
        solve_transition_spread(noise, e, 0.1, 100)  # below the emissions' own entropy
    assert below.value.direction == +1


def test_calibration_recovers_a_languages_parameters():
    V, K, L, s = 512, 16, 256, 0.9
    truth = ClusteredLanguage(ClusteredSpec(V, K, seed=5, zipf_exponent=s, emission_spread=1.8 * s, transition_spread=2.0))
    ppl = math.exp(truth.entropy_rate(L))
    entropy = float(sentence_entropy_by_sorting(truth.sample(4096, L, torch.Generator().manual_seed(9))).mean())  # SE 0.0013
    found = calibrate(V, L, gen_ppl=ppl, entropy=entropy, num_classes=K, seed=5, progress=False)
    assert math.isclose(found.gen_ppl, ppl, rel_tol=1e-12)
    assert math.isclose(math.exp(found.language().entropy_rate(L)), ppl, rel_tol=1e-12)
    # the search's estimate carries SE ~0.0035 nats, about 0.003 in the exponent
    assert abs(found.spec.zipf_exponent - s) < 0.03 and abs(found.spec.transition_spread - 2.0) < 0.1, found.report()
    assert math.isclose(found.spec.emission_spread, 1.8 * found.spec.zipf_exponent)
    assert abs(found.entropy.mean - entropy) < 4 * math.hypot(found.entropy.se, found.search_entropy.se, 0.0013), found.report()
    assert "zipf_exponent = 0.9" in found.report() or "zipf_exponent = 0.8" in found.report()


def test_unreachable_targets_are_refused():
    with pytest.raises(ValueError, match="exceeds the vocabulary size"):
        calibrate(100, 64, gen_ppl=150.0, progress=False)
    with pytest.raises(ValueError, match="no Zipf exponent"):
        calibrate(100, 64, gen_ppl=20.0, entropy=6.5, num_classes=4, progress=False)  # above log 64: no sequence of 64 tokens has it
    with pytest.raises(ValueError, match="gen_ppl must be positive"):
        calibrate(100, 64, gen_ppl=-1.0, progress=False)
