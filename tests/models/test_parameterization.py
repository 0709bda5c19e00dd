"""The network denoisers as the samplers see them: they declare whether they read the time,
the samplers refuse to cache a time-conditioned one unless asked by name, their outputs
pass the samplers' checks (laws at masked positions within 2 V eps), and an output too
large for memory is refused before the network runs."""
import pytest
import torch

from mdmlib.infra.memory import BUDGET_VARIABLE
from mdmlib.mdm.denoiser_outputs import row_statistics, sum_tolerance
from mdmlib.mdm.samplers import ancestral_sample, exact_sample, first_hitting_sample
from mdmlib.mdm.schedules import time_grid
from mdmlib.models import DiTConfig, ScoreDenoiser, SubsDenoiser, build_network

SMALL = dict(hidden_dim=32, n_heads=4, n_blocks=2, cond_dim=16, model_length=16)


def network(kind="mdlm", time_conditioning=False, vocab_size=11, seed=0):
    """A small network with random weights everywhere (the published initialisation zeroes
    the output layer, whose softmax would then be flat and say nothing about t)."""
    config = DiTConfig(vocab_size=vocab_size, kind=kind, time_conditioning=time_conditioning, **SMALL)
    net = build_network(config).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return net.requires_grad_(False)


def test_network_denoisers_declare_whether_they_read_the_time():
    assert SubsDenoiser(network(time_conditioning=False)).time_conditioned is False
    assert SubsDenoiser(network(time_conditioning=True)).time_conditioned is True
    assert ScoreDenoiser(network("sedd", time_conditioning=True)).time_conditioned is True


def test_a_timed_network_really_depends_on_t():
    # what the refusal protects: the same x at two times gives two outputs
    den = SubsDenoiser(network(time_conditioning=True))
    x = torch.full((1, 6), den.mask_id)
    assert not torch.allclose(den(x, torch.tensor([0.9])), den(x, torch.tensor([0.2])))


@pytest.mark.parametrize("caching", ["per_sequence", "per_batch"])
def test_caching_a_time_conditioned_network_needs_to_be_asked_for(caching):
    den = SubsDenoiser(network(time_conditioning=True), max_batch=64)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=f"caching '{caching}' reuses a denoiser output.*stale times.*allow_stale_time=True"):
        ancestral_sample(den, 2, 6, 10, "float32", g, caching=caching, progress=False)
    out = ancestral_sample(den, 2, 6, 10, "float32", g, caching=caching, allow_stale_time=True, progress=False)
    assert ((out.tokens >= 0) & (out.tokens < den.mask_id)).all()


class Recorded:
    """A network denoiser with the times of its calls recorded."""

    def __init__(self, den):
        self.den, self.mask_id, self.time_conditioned, self.times = den, den.mask_id, den.time_conditioned, []

    def __call__(self, x, t):
        self.times.append(torch.as_tensor(t).clone())
        return self.den(x, t)


def test_uncached_sampling_of_a_timed_network_calls_it_at_every_step():
    den = Recorded(SubsDenoiser(network(time_conditioning=True), max_batch=64))
    out = ancestral_sample(den, 3, 6, 10, "float64", torch.Generator().manual_seed(1), caching="none", progress=False)
    assert ((out.tokens >= 0) & (out.tokens < den.mask_id)).all()
    calls = len(den.times)
    assert [float(t[0]) for t in den.times] == time_grid(10)[:calls].tolist()  # each step at its own time
    assert int(out.nfe.max()) == calls
    # the time-agnostic network under the default cache: no more calls than tokens to unmask
    agnostic = Recorded(SubsDenoiser(network(time_conditioning=False), max_batch=64))
    cached = ancestral_sample(agnostic, 3, 6, 200, "float64", torch.Generator().manual_seed(1), progress=False)
    assert (cached.nfe <= 6).all() and len(agnostic.times) <= 18


def test_exact_and_first_hitting_samplers_take_a_timed_network_as_is():
    # both evaluate every sequence afresh at the time of each step or event that reads it
    den = SubsDenoiser(network(time_conditioning=True), max_batch=64)
    g = torch.Generator().manual_seed(2)
    exact = exact_sample(den, 3, 6, 20, g, progress=False)
    fhs = first_hitting_sample(den, 3, 6, "float32", g, progress=False)
    assert (fhs.nfe == 6).all() and ((exact.nfe >= 1) & (exact.nfe <= 6)).all()


@pytest.mark.parametrize("kind", ["mdlm", "sedd"])
def test_network_outputs_are_laws_within_the_samplers_tolerance(kind):
    # peaked softmaxes over 1,000 tokens, at masked and unmasked positions alike
    net = network(kind, time_conditioning=kind == "sedd", vocab_size=1001, seed=3)
    net.output_layer.linear.bias.data *= 8
    den = (SubsDenoiser if kind == "mdlm" else ScoreDenoiser)(net)
    x = torch.randint(0, 1001, (4, 16), generator=torch.Generator().manual_seed(4))
    x[:, ::2] = den.mask_id
    mu = den(x, torch.full((4,), 0.7))
    total, low, _ = row_statistics(mu)
    assert mu.dtype == torch.float32 and (low >= 0).all()
    assert ((total.double() - 1).abs() <= sum_tolerance(1000, torch.float32)).all()


def test_an_output_too_large_for_memory_is_refused_before_the_network_runs(monkeypatch):
    monkeypatch.setenv(BUDGET_VARIABLE, "1e8")
    den = SubsDenoiser(network(time_conditioning=False))
    x = torch.full((1, 1), den.mask_id).expand(10**6, 16)  # a view: 16 million positions of 10 tokens, no memory
    with pytest.raises(MemoryError, match="network's float32 output .* would need at least 640.0 MB, more than 100.0 MB"):
        den(x)
