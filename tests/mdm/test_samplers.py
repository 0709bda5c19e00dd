"""The samplers' output laws, computed exactly on a tiny language and compared with draws.

With 3 tokens and length 3 there are 4^3 partial sequences, so the law of the ancestral
sampler is a short dynamic program over them: at each step every masked position draws,
independently, from the step's law of [mu (m_t - m_s), m_s], with mu the exact denoiser's
output for the current sequence. Everything here is written from the definitions (the
schedule is m(t) = t or 1 - cos(pi t / 2), t_n = n / N), not from the samplers' code.
"""
import itertools
import math
from collections import defaultdict

import pytest
import torch

from mdmlib.mdm.samplers import ancestral_sample, ar_sample, exact_sample
from mdmlib.stats.significance import ALPHA, chi_square_power, chi_square_test
from mdmlib.language.synthetic import ExactDenoiser, LanguageSpec, MarkovLanguage
from mdmlib.precision.truncation import truncated_law
from power_checks import DIFFERS_ALPHA, require_power

L = 3
SCHEDULES = {"linear": lambda t: t, "cosine": lambda t: 1 - math.cos(0.5 * math.pi * t)}
COARSE_EPS = 2.0**-8  # truncation at bfloat16's gap: the sample law moves far beyond the test's resolution


def _exact(cats: torch.Tensor) -> torch.Tensor:
    return cats / cats.sum()


@pytest.fixture(scope="module")
def tiny():
    lang = MarkovLanguage(LanguageSpec(vocab_size=3, num_classes=2, seed=2))  # strongly correlated tokens
    return lang, ExactDenoiser(lang, dtype=torch.float64)


def _code(x) -> int:
    return sum(int(v) * 3 ** (L - 1 - i) for i, v in enumerate(x))


def _sequence_counts(x: torch.Tensor) -> torch.Tensor:
    return torch.bincount((x * torch.tensor([9, 3, 1])).sum(1), minlength=27)


def _language_law(lang) -> torch.Tensor:
    xs = torch.tensor(list(itertools.product(range(3), repeat=L)))
    return torch.exp(lang.log_likelihood(xs))


def _ancestral_law(den, steps: int, step_law=_exact, schedule: str = "linear", refresh: bool = True) -> torch.Tensor:
    """Exact law of the ancestral sampler's sequences. refresh=False: a cache that is never
    updated after the first call (every step uses the all-mask output)."""
    V, m = den.mask_id, SCHEDULES[schedule]
    outputs = {}

    def mu_of(x):
        key = x if refresh else (V,) * L
        if key not in outputs:
            outputs[key] = den(torch.tensor([key]))[0]
        return outputs[key]

    states = {(V,) * L: 1.0}
    for n in range(steps, 0, -1):
        m_t, m_s = m(n / steps), m((n - 1) / steps)
        after = defaultdict(float)
        for x, w in states.items():
            masked = [l for l in range(L) if x[l] == V]
            mu = mu_of(x)
            laws = [step_law(torch.cat([mu[l] * (m_t - m_s), torch.tensor([m_s], dtype=torch.float64)])).tolist() for l in masked]
            for choice in itertools.product(range(V + 1), repeat=len(masked)):
                pr = w * math.prod(law[c] for law, c in zip(laws, choice))
                if pr == 0:
                    continue  # e.g. staying masked in the last step
                y = list(x)
                for l, c in zip(masked, choice):
                    y[l] = c
                after[tuple(y)] += pr
        states = after
    out = torch.zeros(3**L, dtype=torch.float64)
    for x, w in states.items():
        out[_code(x)] += w  # after the last step (m_s = 0) nothing is masked
    return out


def _any_order_law(den) -> torch.Tensor:
    """Law of filling the positions one at a time in a uniformly random order, each from the
    denoiser's output: the exact sampler's law when no two positions share a step."""
    V = den.mask_id
    out = torch.zeros(3**L, dtype=torch.float64)
    orders = list(itertools.permutations(range(L)))
    for order in orders:
        states = {(V,) * L: 1.0}
        for pos in order:
            after = defaultdict(float)
            for x, w in states.items():
                mu = den(torch.tensor([x]))[0, pos]
                for v in range(V):
                    after[x[:pos] + (v,) + x[pos + 1 :]] += w * mu[v].item()
            states = after
        for x, w in states.items():
            out[_code(x)] += w / len(orders)
    return out


class _ShiftedLanguage(MarkovLanguage):
    """A denoiser bug: every distance to an unmasked neighbour one too long."""

    def _power(self, d):
        return super()._power(d + 1)


def test_any_order_filling_with_the_exact_denoiser_is_the_language(tiny):
    # exact, no sampling: the denoiser's conditionals chained in any order give the joint law
    lang, den = tiny
    assert torch.allclose(_any_order_law(den), _language_law(lang), rtol=0, atol=1e-15)


def test_exact_sampler_with_many_steps_samples_the_language(tiny):
    # With the optimal denoiser and steps >> L^2, tokens unmask one at a time: any-order
    # autoregression with exact conditionals, i.e. exact samples of the language.
    lang, den = tiny
    law, n = _language_law(lang), 30_000
    shifted = _any_order_law(ExactDenoiser(_ShiftedLanguage.from_matrices(lang.A, lang.B), dtype=torch.float64))
    require_power(chi_square_power(law, shifted, n), "a denoiser with distances off by one")
    s = exact_sample(den, n, L, 10**7, torch.Generator().manual_seed(0), progress=False)
    assert chi_square_test(_sequence_counts(s.tokens), law).p_value > ALPHA
    assert (s.nfe == L).all()  # one denoiser call per unmasked token


def test_one_step_unmasks_everything_independently(tiny):
    # With a single step every token is drawn at once from its marginal: not the language.
    lang, den = tiny
    n = 30_000
    independent = (lang.pi[:, None, None] * lang.pi[None, :, None] * lang.pi[None, None, :]).flatten()
    require_power(chi_square_power(independent, _language_law(lang), n), "the language law")
    require_power(chi_square_power(_language_law(lang), independent, n, alpha=DIFFERS_ALPHA), "the language law, at the 'differs' level")
    s = exact_sample(den, n, L, 1, torch.Generator().manual_seed(1), progress=False)
    assert chi_square_test(_sequence_counts(s.tokens), independent).p_value > ALPHA
    assert chi_square_test(_sequence_counts(s.tokens), _language_law(lang)).p_value < DIFFERS_ALPHA
    assert (s.nfe == 1).all()


@pytest.mark.parametrize("sampler", ["ancestral float64", "exact"])
def test_two_steps_follow_the_exact_law(tiny, sampler):
    # Two steps: positions that unmask together are drawn independently, so the law is
    # neither the language nor the marginals; one step more or fewer, or a cache that is
    # never refreshed, gives a law the test must tell apart.
    lang, den = tiny
    steps, n = 2, 30_000
    law = _ancestral_law(den, steps)
    for name, wrong in (("one step fewer", _ancestral_law(den, steps - 1)), ("one step more", _ancestral_law(den, steps + 1)), ("a stale cache", _ancestral_law(den, steps, refresh=False))):
        require_power(chi_square_power(law, wrong, n), f"{sampler}, {steps} steps: {name}")
    g = torch.Generator().manual_seed(2)
    if sampler == "exact":
        s = exact_sample(den, n, L, steps, g, progress=False)
    else:
        s = ancestral_sample(den, n, L, steps, "float64", g, progress=False)
    assert chi_square_test(_sequence_counts(s.tokens), law).p_value > ALPHA


def _nfe_laws(steps: int, schedule: str, grid=lambda n, N: n / N):
    """Law of the denoiser calls per sequence: with a per-sequence cache, the number of distinct
    steps at which its positions unmask (they do so independently, at step n with probability
    (m(t_n) - m(t_{n-1})) / m(1)); without a cache, every step until the last unmasking."""
    m = SCHEDULES[schedule]
    ms = [m(grid(n, steps)) for n in range(steps, -1, -1)]
    q = [(ms[i] - ms[i + 1]) / ms[0] for i in range(steps)]  # index i: step n = steps - i
    cached, uncached = torch.zeros(steps + 1, dtype=torch.float64), torch.zeros(steps + 1, dtype=torch.float64)
    for when in itertools.product(range(steps), repeat=L):
        w = math.prod(q[i] for i in when)
        cached[len(set(when))] += w
        uncached[max(when) + 1] += w
    return cached, uncached


@pytest.mark.parametrize("sampler", ["ancestral float64", "exact"])
def test_denoiser_calls_follow_the_caching_law(tiny, sampler):
    # NFE per sequence is a random count: its histogram against its exact law. Three steps of
    # the cosine schedule, where one grid step off (t_n = n / (N + 1)) or the linear schedule
    # changes the law, and a sampler without a per-sequence cache gives another law entirely.
    lang, den = tiny
    steps, n = 3, 30_000
    law, uncached = _nfe_laws(steps, "cosine")
    for name, wrong in (("no per-sequence cache", uncached), ("a time grid one step off", _nfe_laws(steps, "cosine", lambda k, N: k / (N + 1))[0]), ("the linear schedule", _nfe_laws(steps, "linear")[0])):
        require_power(chi_square_power(law, wrong, n), f"{sampler} NFE: {name}")
    g = torch.Generator().manual_seed(3)
    if sampler == "exact":
        s = exact_sample(den, n, L, steps, g, schedule="cosine", progress=False)
    else:
        s = ancestral_sample(den, n, L, steps, "float64", g, schedule="cosine", progress=False)
    assert chi_square_test(torch.bincount(s.nfe, minlength=steps + 1), law).p_value > ALPHA


@pytest.mark.parametrize("implementation", ["sparse", "dense"])
@pytest.mark.parametrize("precision", ["float32", "float64", "float64+trunc"])
def test_ancestral_sampler_follows_the_law_of_its_precision(tiny, precision, implementation):
    # Ten steps with truncation at 2^-8: the truncated sampler's law is far from the exact one.
    # float32's own departure (its cap, 2^-24) moves the law by a non-centrality below 1e-3.
    lang, den = tiny
    steps, n = 10, 20_000
    exact, truncated = _ancestral_law(den, steps), _ancestral_law(den, steps, lambda c: truncated_law(c, eps=COARSE_EPS))
    if precision == "float64+trunc":
        law, wrong, name = truncated, exact, "no truncation"
    elif precision == "float64":
        law, wrong, name = exact, truncated, "truncation"
    else:
        capped = _ancestral_law(den, steps, lambda c: truncated_law(c, eps=2.0**-24))
        assert n * float(((capped - exact) ** 2 / exact).sum()) < 1e-3
        law, wrong, name = exact, _ancestral_law(den, steps, refresh=False), "a stale cache"
    require_power(chi_square_power(law, wrong, n), f"ancestral {precision} {implementation}: {name}")
    s = ancestral_sample(den, n, L, steps, precision, torch.Generator().manual_seed(4), eps=COARSE_EPS, implementation=implementation, progress=False)
    assert chi_square_test(_sequence_counts(s.tokens), law).p_value > ALPHA


def test_ar_sampler_at_a_temperature():
    # First two tokens at T = 0.5: pi^(1/T) and P^(1/T), each renormalised, from the definition.
    lang = MarkovLanguage(LanguageSpec(vocab_size=5, num_classes=2, seed=5))
    n = 20_000

    def joint(T):
        first = lang.pi ** (1 / T)
        rows = lang.transition_rows(torch.arange(5)) ** (1 / T)
        return ((first / first.sum())[:, None] * rows / rows.sum(1, keepdim=True)).flatten()

    law = joint(0.5)
    for name, T in (("T = 1", 1.0), ("T and 1/T swapped", 2.0)):
        require_power(chi_square_power(law, joint(T), n), f"the AR sampler at {name}")
    x = ar_sample(lang, n, 2, 0.5, torch.Generator().manual_seed(6))
    assert chi_square_test(torch.bincount(x[:, 0] * 5 + x[:, 1], minlength=25), law).p_value > ALPHA


class _PlainDenoiser:
    """Only the required interface: called on the sequences that changed."""

    def __init__(self, inner):
        self.inner, self.mask_id = inner, inner.mask_id

    def __call__(self, x, t):
        assert t.shape == (x.shape[0],)
        return self.inner(x, t)


@pytest.mark.parametrize("sampler", ["float32", "exact"])
def test_any_denoiser_callable_gives_the_same_samples(sampler):
    # changed_outputs is only a shortcut: with the same seed, a plain callable gives identical samples
    lang = MarkovLanguage(LanguageSpec(vocab_size=30, num_classes=3, seed=7))
    fast, plain = ExactDenoiser(lang), _PlainDenoiser(ExactDenoiser(lang))
    if sampler == "exact":
        a, b = (exact_sample(d, 16, 12, 50, torch.Generator().manual_seed(0), progress=False) for d in (fast, plain))
    else:
        a, b = (ancestral_sample(d, 16, 12, 50, sampler, torch.Generator().manual_seed(0), progress=False) for d in (fast, plain))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.nfe, b.nfe)
