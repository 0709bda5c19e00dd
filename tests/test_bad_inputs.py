"""Every public function names what is wrong with its input: one row per bad input,
with the error type it must raise and words its message must contain."""
import math

import pytest
import torch

from mdmlib.stats import metrics

from mdmlib.infra import results

from mdmlib.stats import significance as stats

from mdmlib.precision import symbolic
from mdmlib.precision.categorical import check_probabilities, exponential_race, gumbel_max, inverse_cdf, truncated_race
from mdmlib.precision.grid_law import law_on_grid, rand_grid
from mdmlib.mdm.step import dense_step, sparse_step
from mdmlib.stats.montecarlo import count_classes
from mdmlib.precision.formats import as_dtype, gumbel_cap, probe_rand
from mdmlib.mdm.samplers import ancestral_sample, ar_sample, exact_sample
from mdmlib.mdm.schedules import mask_probability, time_grid, unmask_step_probabilities
from mdmlib.language.synthetic import ExactDenoiser, LanguageSpec, MarkovLanguage
from mdmlib.precision.truncation import truncated_law, truncated_law_reference

G = torch.Generator()
P = torch.tensor([0.1, 0.9], dtype=torch.float64)
LANG = MarkovLanguage(LanguageSpec(vocab_size=5, num_classes=2))
DEN = ExactDenoiser(LANG)
MU2 = torch.full((2, 3), 1 / 3)  # two masked positions, three tokens
MU3 = torch.full((1, 2, 3), 1 / 3)  # a (B, L, V) cache
ROWS, COLS = torch.tensor([0, 0]), torch.tensor([0, 1])


def _with(t: torch.Tensor, index, value) -> torch.Tensor:
    t = t.clone()
    t[index] = value
    return t


def _sparse(mu=MU3, mu_max=None, rows=ROWS, cols=COLS, move_t=1.0, move_s=0.5, precision="float32", **kw):
    mu_max = mu.max(-1).values if mu_max is None else mu_max
    return sparse_step(mu, mu_max, rows, cols, move_t, move_s, precision, torch.Generator().manual_seed(0), **kw)


class _Broken:
    """A denoiser whose output is spoiled by `fn`."""

    mask_id = LANG.mask_id

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, x, t):
        return self.fn(DEN(x, t))


def _sum_to_one_except(M: torch.Tensor, row: int, factor: float) -> torch.Tensor:
    return _with(M, row, M[row] * factor)


CASES = {
    # categorical samplers and their validation
    "probabilities with NaN": (lambda: check_probabilities([0.5, math.nan]), ValueError, "NaN"),
    "probabilities with inf": (lambda: exponential_race([0.5, math.inf], G), ValueError, "infinite"),
    "negative probability": (lambda: exponential_race([0.5, -0.1], G), ValueError, "negative"),
    "all-zero row": (lambda: exponential_race([[0.5, 0.5], [0.0, 0.0]], G), ValueError, "all zero"),
    "integer probabilities": (lambda: exponential_race(torch.tensor([1, 2]), G), ValueError, "floating-point"),
    "no classes": (lambda: exponential_race(torch.zeros(3, 0), G), ValueError, "non-empty"),
    "probabilities as a string": (lambda: check_probabilities("0.5"), TypeError, "tensor or a nested list"),
    "integer sampling dtype": (lambda: gumbel_max(torch.ones(3), G, dtype=torch.int32), ValueError, "unknown dtype"),
    "eps above 1": (lambda: truncated_race(torch.ones(3), G, eps=1.5), ValueError, "eps must lie"),
    "eps as a string": (lambda: truncated_race(torch.ones(3), G, eps="0.1"), TypeError, "eps must be a real number"),
    "underflow in the dtype": (lambda: exponential_race(torch.tensor([1e-300, 1e-300], dtype=torch.float64), G, torch.float32), ValueError, "underflow"),
    "non-integer sample shape": (lambda: inverse_cdf(P, G, (2.5,)), ValueError, "sample_shape"),
    # float formats
    "unknown dtype name": (lambda: as_dtype("float8"), ValueError, "unknown dtype"),
    "integer dtype": (lambda: as_dtype(torch.int64), ValueError, "unknown dtype"),
    "dtype None": (lambda: as_dtype(None), ValueError, "unknown dtype"),
    "eps 0": (lambda: gumbel_cap(0.0), ValueError, "eps must lie in"),
    "eps 1": (lambda: gumbel_cap(1.0), ValueError, "eps must lie in"),
    "eps NaN": (lambda: gumbel_cap(math.nan), ValueError, "eps must lie in"),
    "eps a string": (lambda: gumbel_cap("0.1"), TypeError, "real number"),
    "probe with one draw": (lambda: probe_rand(torch.float32, 1, G), ValueError, "n must be a whole number >= 2"),
    "probe with 2.5 draws": (lambda: probe_rand(torch.float32, 2.5, G), ValueError, "n must be a whole number >= 2"),
    # the closed form
    "neither M nor eps": (lambda: truncated_law(P), ValueError, "exactly one"),
    "both M and eps": (lambda: truncated_law(P, 3.0, eps=0.1), ValueError, "exactly one"),
    "closed form eps 0": (lambda: truncated_law(P, eps=0.0), ValueError, "eps must lie"),
    "M NaN": (lambda: truncated_law(P, math.nan), ValueError, "NaN"),
    "M -inf": (lambda: truncated_law(P, -math.inf), ValueError, "overflows"),
    "M -1000": (lambda: truncated_law(P, -1000.0), ValueError, "overflows"),
    "M a string": (lambda: truncated_law(P, "3"), TypeError, "real number"),
    "closed form of negative p": (lambda: truncated_law(torch.tensor([0.5, -0.5]), 3.0), ValueError, "negative"),
    "reference with decades 0": (lambda: truncated_law_reference(P, 3.0, decades=0), ValueError, "decades"),
    "reference of a batch": (lambda: truncated_law_reference(P.expand(2, 2), 3.0), ValueError, "one probability vector"),
    # the grid law
    "float64 grid": (lambda: rand_grid(torch.float64), ValueError, r"2\^53"),
    "grid law of inverse_cdf": (lambda: law_on_grid(torch.ones(2), torch.float16, "inverse_cdf"), ValueError, "unknown sampler"),
    "zero copies": (lambda: law_on_grid(torch.ones(2), torch.float16, copies=[1, 0]), ValueError, "positive integers"),
    "infinite copies": (lambda: law_on_grid(torch.ones(2), torch.float16, copies=[1, math.inf]), ValueError, "positive integers"),
    "grid law of a batch": (lambda: law_on_grid(torch.ones(2, 2), torch.float16), ValueError, "one probability vector"),
    "grid law underflow": (lambda: law_on_grid(torch.tensor([1e-30, 1e-30], dtype=torch.float64), torch.float16), ValueError, "underflow"),
    # schedules
    "zero steps": (lambda: time_grid(0), ValueError, "positive whole number"),
    "2.5 steps": (lambda: time_grid(2.5), ValueError, "positive whole number"),
    "negative steps": (lambda: time_grid(-3), ValueError, "positive whole number"),
    "steps as a string": (lambda: time_grid("4"), TypeError, "real number"),
    "unknown schedule": (lambda: mask_probability("sigmoid", time_grid(4)), ValueError, "unknown schedule"),
    "time above 1": (lambda: mask_probability("linear", torch.tensor([1.5])), ValueError, r"\[0, 1\]"),
    "unmask steps 2.5": (lambda: unmask_step_probabilities("linear", 2.5), ValueError, "positive whole number"),
    # one step
    "unknown precision": (lambda: dense_step(MU2, 1.0, 0.5, "float16", G), ValueError, "unknown precision"),
    "step eps 0": (lambda: dense_step(MU2, 1.0, 0.5, "float64+trunc", G, eps=0.0), ValueError, "eps"),
    "move_s above move_t": (lambda: dense_step(MU2, 0.5, 1.0, "float32", G), ValueError, "exceeds move_t"),
    "move_t NaN": (lambda: dense_step(MU2, math.nan, 0.5, "float32", G), ValueError, "mask probability"),
    "move_t a string": (lambda: dense_step(MU2, "1", 0.5, "float32", G), TypeError, "real number"),
    "dense mu of one position": (lambda: dense_step(MU2[0], 1.0, 0.5, "float32", G), ValueError, r"floating \(n, V\)"),
    "dense mu with NaN": (lambda: dense_step(_with(MU2, (0, 1), math.nan), 1.0, 0.5, "float32", G), ValueError, "NaN"),
    "sparse mu with NaN": (lambda: _sparse(_with(MU3, (0, 1, 2), math.nan)), ValueError, "mu_max is NaN"),
    "sparse move_s above move_t": (lambda: _sparse(move_t=0.3, move_s=0.5), ValueError, "exceeds move_t"),
    "sparse mu_max below mu": (lambda: _sparse(mu_max=MU3.max(-1).values / 2, move_s=0.0), ValueError, "below the row's maximum"),
    "sparse mu_max of another shape": (lambda: _sparse(mu_max=torch.ones(2)), ValueError, "mu_max must be"),
    "sparse mu without batch": (lambda: _sparse(mu=MU2, mu_max=torch.ones(1, 2)), ValueError, r"floating \(B, L, V\)"),
    "sparse float rows": (lambda: _sparse(rows=ROWS.double()), ValueError, "rows must be a 1-D integer tensor"),
    "sparse row out of range": (lambda: _sparse(rows=torch.tensor([0, 1])), ValueError, r"rows must lie in \[0, 1\)"),
    "sparse rows and cols differ": (lambda: _sparse(cols=torch.tensor([0])), ValueError, "one entry per masked position"),
    "sparse dense_fraction 0": (lambda: _sparse(dense_fraction=0.0), ValueError, "dense_fraction"),
    # samplers
    "batch 0": (lambda: ancestral_sample(DEN, 0, 4, 3, "float32", G, progress=False), ValueError, "batch must be a positive whole number"),
    "steps 2.5": (lambda: ancestral_sample(DEN, 2, 4, 2.5, "float32", G, progress=False), ValueError, "steps must be a positive whole number"),
    "sampler precision": (lambda: ancestral_sample(DEN, 2, 4, 3, "bfloat16", G, progress=False), ValueError, "unknown precision"),
    "implementation": (lambda: ancestral_sample(DEN, 2, 4, 3, "float32", G, implementation="fast", progress=False), ValueError, "implementation"),
    "exact sampler steps 0": (lambda: exact_sample(DEN, 2, 4, 0, G, progress=False), ValueError, "steps must be a positive whole number"),
    "not a denoiser": (lambda: exact_sample(object(), 2, 4, 3, G, progress=False), TypeError, "denoiser"),
    "denoiser output of a wrong shape": (lambda: ancestral_sample(_Broken(lambda mu: mu[..., :-1]), 2, 4, 3, "float32", G, progress=False), ValueError, "shape"),
    "denoiser output NaN": (lambda: exact_sample(_Broken(lambda mu: mu * math.nan), 2, 4, 3, G, progress=False), ValueError, "NaN"),
    "AR length 0": (lambda: ar_sample(LANG, 2, 0, 1.0, G), ValueError, "length must be a positive whole number"),
    "AR temperature 0": (lambda: ar_sample(LANG, 2, 2, 0.0, G), ValueError, "temperature"),
    "AR temperature inf": (lambda: ar_sample(LANG, 2, 2, math.inf, G), ValueError, "temperature"),
    "AR without a model": (lambda: ar_sample(object(), 2, 2, 1.0, G), TypeError, "transition_rows"),
    # Monte Carlo counts
    "2.5 draws": (lambda: count_classes(exponential_race, P, 2.5, G), ValueError, "n must be a positive whole number"),
    "no draws": (lambda: count_classes(exponential_race, P, 0, G), ValueError, "n must be a positive whole number"),
    "count a batch": (lambda: count_classes(exponential_race, P.expand(2, 2), 10, G), ValueError, "one probability vector"),
    "count without a sampler": (lambda: count_classes("gumbel", P, 10, G), TypeError, "sampler must be a function"),
    # statistics
    "negative counts": (lambda: stats.chi_square_test([1, -2], [0.5, 0.5]), ValueError, "negative"),
    "fractional counts": (lambda: stats.chi_square_test([1.5, 2], [0.5, 0.5]), ValueError, "whole numbers"),
    "NaN law": (lambda: stats.chi_square_test([1, 2], [0.5, math.nan]), ValueError, "NaN"),
    "counts and law differ": (lambda: stats.chi_square_test([1, 2], [1.0]), ValueError, "differ in shape"),
    "no counts": (lambda: stats.chi_square_test([0, 0], [0.5, 0.5]), ValueError, "all zero"),
    "zero law": (lambda: stats.chi_square_test([1, 2], [0.0, 0.0]), ValueError, "all zero"),
    "too few draws": (lambda: stats.chi_square_test([1, 1, 1], [1 / 3] * 3), ValueError, "too few draws"),
    "two samples of two shapes": (lambda: stats.chi_square_two_sample([1, 2], [1, 2, 3]), ValueError, "differ in shape"),
    "an empty sample": (lambda: stats.chi_square_two_sample([0, 0], [1, 2]), ValueError, "at least one count"),
    "power at n = 0": (lambda: stats.chi_square_power([0.5, 0.5], [0.4, 0.6], 0), ValueError, "positive whole number"),
    "power at n = 10.5": (lambda: stats.chi_square_power([0.5, 0.5], [0.4, 0.6], 10.5), ValueError, "positive whole number"),
    "alternative p above 1": (lambda: stats.binomial_power(0.5, 1.5, 10), ValueError, "alternative_p"),
    "binomial z with no trials": (lambda: stats.binomial_z(3, 0, 0.5), ValueError, "trials"),
    "more successes than trials": (lambda: stats.binomial_z(11, 10, 0.5), ValueError, "successes"),
    "fractional successes": (lambda: stats.binomial_z(2.5, 10, 0.5), ValueError, "successes"),
    "binomial p 1": (lambda: stats.binomial_z(3, 10, 1.0), ValueError, "p must lie"),
    "one value": (lambda: stats.mean_and_se([1.0]), ValueError, "at least two"),
    "infinite value": (lambda: stats.mean_and_se([1.0, math.inf]), ValueError, "infinite"),
    # metrics
    "entropy of one sequence": (lambda: metrics.sentence_entropy(torch.zeros(4, dtype=torch.int64)), ValueError, "shape"),
    "entropy of float tokens": (lambda: metrics.sentence_entropy(torch.zeros(2, 4)), ValueError, "integers"),
    "entropy of negative tokens": (lambda: metrics.sentence_entropy(-torch.ones(2, 4, dtype=torch.int64)), ValueError, "non-negative"),
    "Gen PPL overflow": (lambda: metrics.gen_ppl(torch.tensor([800.0, 801.0], dtype=torch.float64)), OverflowError, "overflows"),
    "Gen PPL of one sequence": (lambda: metrics.gen_ppl(torch.tensor([1.0])), ValueError, "at least two"),
    "run without entropy": (lambda: metrics.summarize({"nll": [1.0, 2.0]}), ValueError, "entropy"),
    "run of ragged values": (lambda: metrics.summarize({"nll": [1.0, 2.0, 3.0], "entropy": [1.0, 2.0]}), ValueError, "one entry per sequence"),
    "unreachable entropy": (lambda: metrics.temperature_with_entropy(torch.ones(10) / 10, math.log(1000)), ValueError, "not reached"),
    "entropy NaN": (lambda: metrics.temperature_with_entropy(torch.ones(10) / 10, math.nan), ValueError, "entropy must be finite"),
    "temperature bracket": (lambda: metrics.temperature_with_entropy(torch.ones(10) / 10, 1.0, lo=0.0), ValueError, "lo < hi"),
    "entropy of a negative law": (lambda: metrics.categorical_entropy(torch.tensor([-1.0, 2.0])), ValueError, "negative"),
    # the synthetic language
    "vocabulary of one": (lambda: LanguageSpec(vocab_size=1, num_classes=2), ValueError, "vocab_size"),
    "vocabulary of 2.5": (lambda: LanguageSpec(vocab_size=2.5, num_classes=2), ValueError, "vocab_size"),
    "negative spread": (lambda: LanguageSpec(vocab_size=5, num_classes=2, emission_spread=-1.0), ValueError, "emission_spread"),
    "language of a dict": (lambda: MarkovLanguage({"vocab_size": 5}), TypeError, "LanguageSpec"),
    "rows not summing to 1": (lambda: MarkovLanguage.from_matrices(_sum_to_one_except(LANG.A, 2, 1.01), LANG.B), ValueError, "sum to 1"),
    "matrices of other shapes": (lambda: MarkovLanguage.from_matrices(LANG.A, LANG.B.T), ValueError, "V x H"),
    "negative transition": (lambda: MarkovLanguage.from_matrices(LANG.A, _with(LANG.B, (0, 0), -0.1)), ValueError, "negative"),
    "likelihood of a mask": (lambda: LANG.log_likelihood(torch.tensor([[0, LANG.mask_id]])), ValueError, "masked positions have no likelihood"),
    "likelihood of one sequence": (lambda: LANG.log_likelihood(torch.tensor([0, 1])), ValueError, "shape"),
    "language sample of length 0": (lambda: LANG.sample(2, 0, G), ValueError, "length must be a positive whole number"),
    "entropy rate of 1.5 tokens": (lambda: LANG.entropy_rate(1.5), ValueError, "length must be a positive whole number"),
    "denoise an unknown token": (lambda: DEN(torch.tensor([[0, LANG.mask_id + 1]])), ValueError, "token ids must lie"),
    "denoiser of a spec": (lambda: ExactDenoiser(LANG.spec), TypeError, "MarkovLanguage"),
    "changed outputs of two shapes": (lambda: DEN.changed_outputs(torch.full((1, 3), LANG.mask_id), torch.full((1, 4), LANG.mask_id)), ValueError, "differ in shape"),
    # results and the cache
    "result name with a folder": (lambda: results.save_json({"a": 1}, "../elsewhere"), ValueError, "plain file name"),
    "NaN in a table": (lambda: results.save_json({"a": math.nan}, "table"), ValueError, "JSON compliant"),
    "cache parameters as a list": (lambda: results.cached("thing", [1, 2], lambda: {}), ValueError, "must be a dict"),
    "cache parameters not JSON": (lambda: results.cached("thing", {"f": object()}, lambda: {}), ValueError, "JSON values"),
    "cache result not a dict": (lambda: results.cached("thing", {"a": 1}, lambda: 3), ValueError, "must return a dict"),
    "cache parameter named environment": (lambda: results.cached("thing", {"environment": 1}, lambda: {}), ValueError, "environment"),
    # symbolic
    "no classes in SymPy": (lambda: symbolic.law_from_definition(0), ValueError, "K must be a positive whole number"),
    "paper formula of nothing": (lambda: symbolic.law_from_paper([]), ValueError, "at least one"),
}


@pytest.fixture(autouse=True)
def _tmp_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("MDMLIB_FIGURES", str(tmp_path / "fig"))
    monkeypatch.setenv("MDMLIB_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_is_named(case):
    call, error, message = CASES[case]
    with pytest.raises(error, match=message):
        call()
