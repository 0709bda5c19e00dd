"""Checkers for the exercises of notebook 09 (trained networks)."""
from __future__ import annotations

import math

import torch
from scipy import stats as sps

from mdmlib.exercises import WrongAnswer, exercise


@exercise("09.1")
def masked_count_weight(answer) -> str:
    """answer(n, L, t_min) -> the weight c_n the continuous-time loss over t in [t_min, 1]
    puts on the term with n masked tokens, linear schedule m(t) = t, w(t) = 1/t."""
    from mdmlib.mdm.losses import masked_count_weights

    if not callable(answer):
        raise WrongAnswer("09.1 expects a function count_weight(n, L, t_min) returning a float")
    for L in (1, 4, 16, 64):
        for t_min in (0.0, 1e-3, 0.1, 0.5):
            truth = masked_count_weights("linear", L, t_min)
            for n in range(1, L + 1):
                got = float(answer(n, L, t_min))
                want = float(truth[n - 1])
                if math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-15):
                    continue
                hint = ""
                if math.isclose(got, 1 / n, rel_tol=1e-9):
                    hint = " You returned 1/n, the ELBO's weight over [0, 1]: the interval [0, t_min] is cut off."
                elif math.isclose(got, n * want, rel_tol=1e-9):
                    hint = " Your value is n times too large: w(t) = 1/t = m'(t)/m(t), and the integral of t^(n-1) (1-t)^(L-n) brings a Beta function."
                elif math.isclose(got, 1 / n - want, rel_tol=1e-9, abs_tol=1e-15):
                    hint = " You integrated over [0, t_min] instead of [t_min, 1]."
                raise WrongAnswer(f"for n = {n}, L = {L}, t_min = {t_min}: expected {want:.12g}, got {got:.12g}.{hint}")
    c1 = float(masked_count_weights("linear", 64, 1e-3)[0])
    return f"At L = 64, t_min = 1e-3 one masked token keeps {c1:.4f} of its weight 1 ((1 - t_min)^L); 64 masked tokens keep all of theirs."


@exercise("09.2")
def ar_nll_per_token(answer) -> str:
    """answer(network, x) -> (B,) NLL per token of x (B, L) under a causal twin that reads the
    start id (network.config.extra_id) and x_1..x_{L-1}."""
    from mdmlib.models import AutoregressiveModel, DiTConfig, build_network

    if not callable(answer):
        raise WrongAnswer("09.2 expects a function nll_per_token(network, x) returning a (B,) tensor")
    config = DiTConfig(vocab_size=13, model_length=10, hidden_dim=16, n_heads=2, n_blocks=1, cond_dim=8, kind="ar")
    network = build_network(config).eval()
    generator = torch.Generator().manual_seed(9)
    with torch.no_grad():  # random weights everywhere (the output layer starts at zero): outputs that depend on the context
        for p in network.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=generator))
    x = torch.randint(0, config.extra_id, (6, config.model_length), generator=torch.Generator().manual_seed(2))
    want = AutoregressiveModel(network).nll_per_token(x)
    with torch.no_grad():
        got = answer(network, x.clone())
    got = torch.as_tensor(got)
    if got.shape != want.shape:
        raise WrongAnswer(f"expected shape {tuple(want.shape)} (one value per sequence), got {tuple(got.shape)}")
    # float32 logits: each of the L terms may be off by a few float32 ulps of its size
    tolerance = 8 * torch.finfo(torch.float32).eps * float(want.abs().max()) * config.model_length
    if (got.double() - want).abs().max() > tolerance:
        with torch.no_grad():  # the usual slip: scoring x_l with the logits that already read it
            logits = network(x)[..., : config.extra_id].float()
            unshifted = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x, reduction="none").double().mean(1)
            start = torch.full((x.shape[0], 1), config.extra_id, dtype=torch.int64)
            all_ids = network(torch.cat([start, x[:, :-1]], 1)).float()  # the start id's column kept
            with_start = torch.nn.functional.cross_entropy(all_ids.transpose(1, 2), x, reduction="none").double().mean(1)
        hint = ""
        if (got.double() - unshifted).abs().max() <= tolerance:
            hint = " The logits at position l predict token l + 1: feed [start id, x_1, ..., x_{L-1}], not x itself."
        elif (got.double() - with_start).abs().max() <= tolerance:
            hint = " The start id is never a target: drop its logit (the last column) before the softmax."
        raise WrongAnswer(f"expected {want.tolist()}, got {got.tolist()}.{hint}")
    return "The trained AR judge of notebook 09 scores samples the same way (mdmlib.models.AutoregressiveModel)."


@exercise("09.3")
def batch_for_a_difference(answer) -> str:
    """answer(difference, sd_a, sd_b, threshold, fail) -> the smallest batch B (the same for
    both samplers) at which a check |z| > threshold, z the difference of two means of B
    sequences each, fails with chance at most `fail` when the true difference is `difference`."""
    if not callable(answer):
        raise WrongAnswer("09.3 expects a function batch(difference, sd_a, sd_b, threshold, fail) returning a whole number")
    cases = [(-0.18, 0.25, 0.30, 5.0, 1e-3), (-0.08, 0.13, 0.14, 5.0, 1e-3), (0.05, 0.2, 0.2, 3.0, 1e-6), (-1.0, 1.0, 0.0, 5.0, 0.5)]
    for difference, sd_a, sd_b, threshold, fail in cases:
        # expected z = |d| sqrt(B) / sqrt(sd_a^2 + sd_b^2) must reach threshold + z_{1 - fail}
        need = (threshold + sps.norm.isf(fail)) * math.hypot(sd_a, sd_b) / abs(difference)
        want = max(1, math.ceil(need**2 - 1e-9))
        got = answer(difference, sd_a, sd_b, threshold, fail)
        if not isinstance(got, int) or isinstance(got, bool):
            raise WrongAnswer(f"the batch must be a whole number (int), got {got!r}")
        if got != want:
            hint = ""
            if got == math.ceil(((threshold + sps.norm.isf(fail)) * math.hypot(sd_a, sd_b) / abs(difference)) ** 2 / 2):
                hint = " Each of the two means has variance sd^2 / B: the variances add, they are not averaged."
            elif got == math.ceil((threshold * math.hypot(sd_a, sd_b) / abs(difference)) ** 2):
                hint = " That batch gives an expected z right at the threshold: a rerun then fails half the time."
            raise WrongAnswer(f"difference {difference}, sd {sd_a} and {sd_b}, threshold {threshold}, fail {fail}: expected {want}, got {got}.{hint}")
    return "Notebook 09 prints the chance that a rerun fails its collapse check from the same formula."
