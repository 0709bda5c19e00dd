"""Checkers for the exercises of notebook 05 (entropy collapse)."""
from __future__ import annotations

import math

import torch

from mdmlib.language.exact_laws import all_sequences, ancestral_law, language_law
from mdmlib.stats.metrics import sentence_entropy
from mdmlib.mdm.samplers import expected_nfe
from mdmlib.language.synthetic import ExactDenoiser, LanguageSpec, MarkovLanguage
from mdmlib.exercises import WrongAnswer, exercise
from mdmlib.exercises.answer_types import function, number

# float32 arithmetic is allowed: its relative rounding (6e-8) summed over at most 64 tokens stays far below this
_ENTROPY_RTOL, _ENTROPY_ATOL = 1e-5, 1e-6


def _entropy_cases() -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(5)
    return [
        ("a constant sequence", torch.full((1, 8), 5)),
        ("a sequence of 8 distinct tokens", torch.arange(8)[None]),
        ("two sequences, [0 0 0 0] and [0 1 2 3]", torch.tensor([[0, 0, 0, 0], [0, 1, 2, 3]])),
        ("a sequence with token ids above the quick language's vocabulary", torch.tensor([[50_000, 50_000, 7, 7]])),
        ("a random batch of 16 sequences of length 64", torch.randint(0, 30, (16, 64), generator=g)),
    ]


@exercise("05.1")
def sentence_entropy_of_batch(answer) -> str:
    fn = function(answer, "05.1")
    for name, x in _entropy_cases():
        want = sentence_entropy(x)
        try:
            got = torch.as_tensor(fn(x.clone()), dtype=torch.float64)
        except NotImplementedError:
            raise
        except Exception as e:  # the student's code: report whatever it raised
            raise WrongAnswer(f"Exercise 05.1: on {name} your function raised {type(e).__name__}: {e}") from None
        if got.shape != want.shape:
            raise WrongAnswer(f"Exercise 05.1: on {name} (shape {tuple(x.shape)}) the answer should hold one entropy per sequence, shape {tuple(want.shape)}; got shape {tuple(got.shape)}")
        if torch.allclose(got, want, rtol=_ENTROPY_RTOL, atol=_ENTROPY_ATOL):
            continue
        hint = ""
        if torch.allclose(got * math.log(2), want, rtol=_ENTROPY_RTOL, atol=_ENTROPY_ATOL):
            hint = " These are bits: the paper's entropy is in nats (natural log)."
        elif x.shape[0] > 1 and torch.allclose(got, sentence_entropy(x.reshape(1, -1)).expand_as(got), rtol=_ENTROPY_RTOL, atol=_ENTROPY_ATOL):
            hint = " That is the entropy of the whole batch's histogram: count each sequence's tokens on its own."
        raise WrongAnswer(f"Exercise 05.1: on {name} expected {[round(v, 6) for v in want.tolist()]}, got {[round(v, 6) for v in got.tolist()]}.{hint}")
    return "Per-sequence histogram entropy, in nats, on 5 batches (constant, all distinct, large ids, random)."


_NFE_CASES = [(1, 5, "linear"), (8, 1, "linear"), (128, 128, "linear"), (10_000, 1_024, "linear"), (2_048, 128, "cosine"), (100, 64, "loglinear"), (3, 200, "cosine")]


@exercise("05.2")
def expected_calls(answer) -> str:
    fn = function(answer, "05.2")
    for steps, length, schedule in _NFE_CASES:
        want = expected_nfe(steps, length, schedule)
        try:
            got = number(fn(steps, length, schedule), "05.2")
        except (WrongAnswer, NotImplementedError):
            raise
        except Exception as e:
            raise WrongAnswer(f"Exercise 05.2: expected_calls({steps}, {length}, {schedule!r}) raised {type(e).__name__}: {e}") from None
        # float64 sums of at most 10,000 terms: rounding is near 1e-12 relative
        if math.isclose(got, want, rel_tol=1e-9):
            continue
        hint = ""
        if math.isclose(got, steps * (1 - (1 - 1 / steps) ** length), rel_tol=1e-9):
            hint = " That is the linear schedule's count: under other schedules a position's unmask step is not uniform over the N steps."
        elif math.isclose(got, steps, rel_tol=1e-9):
            hint = " That is the count without caching: a cached sampler skips the steps in which no token unmasks."
        elif schedule == "loglinear" and abs(got / want - 1) < 1e-2:
            hint = " Close: under the log-linear schedule m(1) = 1 - 1e-3 < 1; the sampler starts fully masked, so divide the step probabilities by m(1)."
        raise WrongAnswer(f"Exercise 05.2: for N = {steps}, L = {length}, {schedule} schedule expected {want:.10g}, got {got:.10g}.{hint}")
    return f"E[NFE] = sum_n 1 - (1 - p_n)^L on {len(_NFE_CASES)} cases, three schedules (N = 10,000, L = 1,024: {expected_nfe(10_000, 1_024):.1f})."


def _tiny_language() -> MarkovLanguage:
    return MarkovLanguage(LanguageSpec(vocab_size=3, num_classes=2, seed=2))


@exercise("05.3")
def one_step_nll(answer) -> str:
    value = number(answer, "05.3")
    language, length = _tiny_language(), 4
    nll = -language.log_likelihood(all_sequences(3, length))
    q = ancestral_law(ExactDenoiser(language, torch.float64), 3, length, 1)  # one step: every position from its marginal
    p = language_law(language, length)
    want = float((q * nll).sum()) / length
    rate = float((p * nll).sum()) / length
    own = float(-(q * q.log()).sum()) / length
    # float64 sums of 81 terms: 1e-9 relative leaves room for any order of summation
    if math.isclose(value, want, rel_tol=1e-9):
        return f"one step: {want:.6f} nats per token, above the data's {rate:.6f} by {want - rate:.6f}."
    hints = {
        rate: "That is the data's own NLL per token, E_p[-log p(x)] / L: the one-step sampler draws from another law.",
        own: "That scores the samples under the sampler's own law q; Gen PPL scores them under the true language p.",
        want * length: "That is per sequence: divide by L = 4.",
        rate * length: "That is the data's NLL per sequence.",
    }
    hint = next((h for v, h in hints.items() if math.isclose(value, v, rel_tol=1e-6)), "")
    raise WrongAnswer(f"Exercise 05.3: expected E_q[-log p(x)] / L with q the one-step law (the product of the all-mask marginals); got {value:.10g}. {hint}".rstrip())
