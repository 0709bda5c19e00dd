"""Notebook 11's exercise checks accept the right answers and reject plausible wrong ones."""
import pytest
import torch

from mdmlib.exercises import WrongAnswer, check, verify


def float64_race(probs, generator):
    u = torch.rand(probs.shape, generator=generator, dtype=torch.float64, device=probs.device)
    return (probs.to(torch.float64) / -torch.log(u)).argmax(-1)


def half_race(probs, generator):  # the uniforms in the probabilities' float16
    u = torch.rand(probs.shape, generator=generator, dtype=probs.dtype, device=probs.device)
    return (probs / (1e-10 - torch.log(u + 1e-10))).argmax(-1)


def cast_too_late(probs, generator):  # float16 uniforms, cast to float64 afterwards
    u = torch.rand(probs.shape, generator=generator, dtype=probs.dtype, device=probs.device).to(torch.float64)
    return (probs.to(torch.float64) / -torch.log(u)).argmax(-1)


def test_11_1_exact_line():
    assert "correct" in verify("11.1", float64_race)
    for wrong in (half_race, cast_too_late):
        with pytest.raises(WrongAnswer, match="biased"):
            check("11.1", wrong)
    with pytest.raises(WrongAnswer, match="could not run"):
        check("11.1", lambda probs, generator: probs.sum())


def test_11_2_bfloat16_noise():
    assert "correct" in verify("11.2", (548, 5.53125, -3.828125))
    with pytest.raises(WrongAnswer, match="number of bfloat16 uniforms"):
        check("11.2", (2304, 5.53125, -3.828125))
    with pytest.raises(WrongAnswer, match="exact arithmetic"):
        check("11.2", (548, 5.5432, -3.828125))
