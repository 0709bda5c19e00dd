import itertools

import pytest
import torch

from mdmlib.metrics import sentence_entropy
from mdmlib.sampling import ancestral_sample, ar_sample, exact_sample
from mdmlib.schedules import mask_probability, time_grid, unmask_step_probabilities
from mdmlib.stats import chi_square_test, chi_square_two_sample
from mdmlib.synthetic import ExactDenoiser, LanguageSpec, MarkovLanguage

L = 3


@pytest.fixture(scope="module")
def tiny():
    lang = MarkovLanguage(LanguageSpec(vocab_size=3, num_classes=2, seed=2))  # strongly correlated tokens
    return lang, ExactDenoiser(lang, dtype=torch.float64)


def _sequence_counts(x, V):
    codes = (x * torch.tensor([V**2, V, 1])).sum(1)
    return torch.bincount(codes, minlength=V**L)


def _true_law(lang):
    xs = torch.tensor(list(itertools.product(range(lang.vocab_size), repeat=L)))
    return torch.exp(lang.log_likelihood(xs))


def test_exact_sampler_with_many_steps_samples_the_language(tiny):
    # With the optimal denoiser and steps >> L^2, tokens unmask one at a time: any-order
    # autoregression with exact conditionals, i.e. exact samples of the language.
    lang, den = tiny
    s = exact_sample(den, 30_000, L, 10**7, torch.Generator().manual_seed(0), progress=False)
    assert chi_square_test(_sequence_counts(s.tokens, 3), _true_law(lang)).p_value > 1e-3
    assert (s.nfe == L).all()  # one denoiser call per unmasked token


def test_one_step_unmasks_everything_independently(tiny):
    # With a single step every token is drawn at once from its marginal: not the language.
    lang, den = tiny
    s = exact_sample(den, 30_000, L, 1, torch.Generator().manual_seed(1), progress=False)
    independent = (lang.pi[:, None, None] * lang.pi[None, :, None] * lang.pi[None, None, :]).flatten()
    assert chi_square_test(_sequence_counts(s.tokens, 3), independent).p_value > 1e-3
    assert chi_square_test(_sequence_counts(s.tokens, 3), _true_law(lang)).p_value < 1e-6
    assert (s.nfe == 1).all()


@pytest.mark.parametrize("steps", [2, 5])
def test_ancestral_float64_has_the_law_of_the_exact_sampler(tiny, steps):
    lang, den = tiny
    a = ancestral_sample(den, 30_000, L, steps, "float64", torch.Generator().manual_seed(2), progress=False)
    b = exact_sample(den, 30_000, L, steps, torch.Generator().manual_seed(3), progress=False)
    assert chi_square_two_sample(_sequence_counts(a.tokens, 3), _sequence_counts(b.tokens, 3)).p_value > 1e-3
    # NFE per sequence is a random count: compare the two histograms of its values
    width = int(max(a.nfe.max(), b.nfe.max())) + 1
    assert chi_square_two_sample(torch.bincount(a.nfe, minlength=width), torch.bincount(b.nfe, minlength=width)).p_value > 1e-3


@pytest.mark.parametrize("precision", ["float32", "float64+trunc"])
def test_ancestral_sparse_and_dense_agree(precision):
    lang = MarkovLanguage(LanguageSpec(vocab_size=40, num_classes=3, seed=4))
    den = ExactDenoiser(lang)
    runs = {impl: ancestral_sample(den, 3000, 8, 400, precision, torch.Generator().manual_seed(i), implementation=impl, progress=False) for i, impl in enumerate(["sparse", "dense"])}
    for stat in (lambda x: x[:, 0], lambda x: x[:, 5]):
        assert chi_square_two_sample(torch.bincount(stat(runs["sparse"].tokens), minlength=40), torch.bincount(stat(runs["dense"].tokens), minlength=40)).p_value > 1e-3


def test_schedules():
    for name in ("linear", "loglinear", "cosine"):
        p = unmask_step_probabilities(name, 50)
        assert abs(p.sum().item() - 1) < 1e-12 and (p >= 0).all()
    assert torch.allclose(unmask_step_probabilities("loglinear", 50), unmask_step_probabilities("linear", 50))
    m = mask_probability("cosine", time_grid(4))
    assert abs(m[0] - 1) < 1e-15 and m[-1] == 0
    with pytest.raises(ValueError, match="unknown schedule"):
        mask_probability("sigmoid", time_grid(4))
    with pytest.raises(ValueError, match="positive"):
        time_grid(0)


def test_ar_sampler_temperature():
    lang = MarkovLanguage(LanguageSpec(vocab_size=5, num_classes=2, seed=5))
    g = torch.Generator().manual_seed(6)
    x = ar_sample(lang, 20_000, 2, 1.0, g)
    joint = (lang.pi[:, None] * lang.transition_rows(torch.arange(5))).flatten()
    assert chi_square_test(torch.bincount(x[:, 0] * 5 + x[:, 1], minlength=25), joint).p_value > 1e-3
    cold = ar_sample(lang, 2000, 30, 0.3, g)
    warm = ar_sample(lang, 2000, 30, 1.0, g)
    assert sentence_entropy(cold).mean() < sentence_entropy(warm).mean()
    assert (lang.nll_per_token(cold).mean() < lang.nll_per_token(warm).mean())
    with pytest.raises(ValueError, match="temperature"):
        ar_sample(lang, 2, 2, 0.0, g)


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


def test_a_broken_denoiser_is_named():
    lang = MarkovLanguage(LanguageSpec(vocab_size=5, num_classes=2))
    good = ExactDenoiser(lang)

    class Wrong:
        mask_id = lang.mask_id

        def __init__(self, fn):
            self.fn = fn

        def __call__(self, x, t):
            return self.fn(good(x, t))

    with pytest.raises(ValueError, match="shape"):
        ancestral_sample(Wrong(lambda mu: mu[..., :-1]), 2, 4, 3, "float32", torch.Generator(), progress=False)
    with pytest.raises(ValueError, match="NaN"):
        exact_sample(Wrong(lambda mu: mu * float("nan")), 2, 4, 3, torch.Generator(), progress=False)
