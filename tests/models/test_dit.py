"""The networks: published layout, forward pass against a slow reference, the causal
twin, precision paths, and the denoisers with mdmlib's samplers."""
import itertools
import math

import pytest
import torch

from mdmlib.models import (
    MDLM_OWT,
    SEDD_SMALL,
    AutoregressiveModel,
    CausalTransformer,
    DiT,
    DiTConfig,
    ScoreDenoiser,
    SubsDenoiser,
    build_network,
)
from mdmlib.models.dit import architecture_of
from mdmlib.mdm.samplers import ancestral_sample, ar_sample, exact_sample
from mdmlib.stats.significance import ALPHA, chi_square_power, chi_square_test
from reference_dit import published_layout, random_published_state, reference_logits

SMALL = dict(hidden_dim=32, n_heads=4, n_blocks=2, cond_dim=16, model_length=16)
U32 = 2.0**-24  # float32's unit roundoff


def small_network(kind="mdlm", time_conditioning=True, vocab_size=11, seed=0, **changes):
    """A small network with random weights in the published layout (so adaLN and the
    output layer are not the zero of the public initialisation)."""
    config = DiTConfig(vocab_size=vocab_size, kind=kind, time_conditioning=time_conditioning and kind != "ar", **{**SMALL, **changes})
    network = build_network(config).eval()
    g = torch.Generator().manual_seed(seed)
    state = random_published_state(config.hidden_dim, config.cond_dim, vocab_size, config.n_blocks, config.n_heads, g, kind)
    network.load_state_dict({k.removeprefix("backbone."): v for k, v in state.items()})
    return network.requires_grad_(False)


def float32_tolerance(config: DiTConfig, scale: float) -> float:
    """A first-order rounding bound for the float32 forward: each inner product of
    length n <= 4D is off by at most about n u relative to its scale (Higham's gamma_n),
    and the longest path chains 6 per block (qkv, scores, weighted sum, attn_out, two
    MLP layers) plus 4 (time MLP, adaLN, final adaLN and projection); the layers have
    about unit gain, so the errors add."""
    return 4 * config.hidden_dim * (6 * config.n_blocks + 4) * U32 * scale


# --- layout ---------------------------------------------------------------------------
@pytest.mark.parametrize("config", [MDLM_OWT, SEDD_SMALL, MDLM_OWT.replace(kind="ar")], ids=["mdlm", "sedd", "ar"])
def test_full_size_names_shapes_and_order_are_the_published_ones(config):
    with torch.device("meta"):  # no memory, no full-size file
        network = build_network(config)
    prefix = "" if config.kind == "sedd" else "backbone."
    ours = [(prefix + k, tuple(v.shape)) for k, v in network.state_dict().items()]
    published = published_layout(768, 128, 50_258, 12, 64, config.kind)
    assert ours == published
    # an EMA's shadow list follows the order of the parameters (every entry but the buffer)
    assert [prefix + k for k, _ in network.named_parameters()] == [k for k, _ in published if not k.endswith("inv_freq")]
    n_params = sum(p.numel() for p in network.parameters())
    assert n_params == sum(math.prod(s) for k, s in published if not k.endswith("inv_freq"))
    print(f"{config.kind}: {n_params:,} parameters")
    if config.kind != "ar":
        assert abs(n_params - 170e6) < 0.01 * 170e6  # the paper's "~170M parameters"


def test_published_initialisation_and_inv_freq():
    network = build_network(DiTConfig(vocab_size=11, **SMALL))
    half = SMALL["hidden_dim"] // SMALL["n_heads"] // 2
    expected = [10000 ** (-2 * j / (2 * half)) for j in range(half)]
    assert torch.allclose(network.rotary_emb.inv_freq.double(), torch.tensor(expected, dtype=torch.float64), rtol=4 * U32)
    # adaLN-Zero: the modulations and the output projection start at zero, so the logits are zero
    logits = network(torch.zeros(2, 5, dtype=torch.int64), torch.tensor([0.5, 1.0]))
    assert torch.equal(logits, torch.zeros_like(logits))


@pytest.mark.parametrize("bad", [dict(hidden_dim=30), dict(n_heads=5), dict(hidden_dim=12, n_heads=4), dict(kind="bert"), dict(vocab_size=2), dict(dropout=1.0), dict(n_blocks=0)])
def test_bad_configs_are_refused(bad):
    with pytest.raises(ValueError):
        DiTConfig(**{**dict(vocab_size=11, **SMALL), **bad})
    with pytest.raises(ValueError, match="time"):
        DiTConfig(vocab_size=11, kind="sedd", time_conditioning=False)


@pytest.mark.parametrize("kind", ["mdlm", "sedd", "ar"])
@pytest.mark.parametrize("sizes", [dict(vocab_size=11, hidden_dim=32, n_heads=4, n_blocks=2, cond_dim=16),
                                   dict(vocab_size=50_258, hidden_dim=768, n_heads=12, n_blocks=12, cond_dim=128),
                                   dict(vocab_size=5, hidden_dim=12, n_heads=3, n_blocks=7, cond_dim=3)])
def test_the_sizes_read_back_from_names_and_shapes_alone(kind, sizes):
    config = DiTConfig(kind=kind, time_conditioning=kind == "sedd", **sizes)
    with torch.device("meta"):
        state = build_network(config).state_dict()
    expected = {k: v for k, v in sizes.items() if kind != "ar" or k != "cond_dim"}  # the causal twin has no time input
    assert architecture_of(state) == expected
    assert architecture_of({k: tuple(v.shape) for k, v in state.items()}) == expected  # shapes alone, as a file's header gives them
    assert architecture_of({})["n_blocks"] == 0


def test_bad_inputs_are_refused():
    network = small_network()
    with pytest.raises(ValueError, match="lie in"):
        network(torch.full((1, 4), 11), torch.zeros(1))
    with pytest.raises(ValueError, match="model_length"):
        network(torch.zeros(1, 17, dtype=torch.int64), torch.zeros(1))
    with pytest.raises(ValueError, match="sigma"):
        network(torch.zeros(2, 4, dtype=torch.int64), torch.zeros(3))
    with pytest.raises(ValueError, match="integer"):
        network(torch.zeros(2, 4), torch.zeros(2))
    with pytest.raises(ValueError, match="CausalTransformer"):
        DiT(DiTConfig(vocab_size=11, kind="ar", **SMALL))


# --- the forward pass against the slow reference --------------------------------------------------
@pytest.mark.parametrize(
    "kind, time_conditioning", [("mdlm", True), ("mdlm", False), ("sedd", True), ("ar", False)], ids=["mdlm-timed", "mdlm-agnostic", "sedd", "ar"]
)
def test_forward_agrees_with_the_slow_reference(kind, time_conditioning):
    network = small_network(kind, time_conditioning)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 11, (2, 7), generator=g)
    sigma = torch.tensor([0.3, 2.5])
    got = network(ids) if kind == "ar" else network(ids, sigma)
    state = {k.removeprefix("backbone."): v for k, v in network.state_dict().items()}
    want = reference_logits(state, ids, sigma, SMALL["n_heads"], time_conditioning=time_conditioning, causal=kind == "ar")
    assert got.dtype == torch.float32 and got.shape == want.shape
    tol = float32_tolerance(network.config, float(want.abs().max()))
    err = float((got.double() - want).abs().max())
    print(f"{kind}: max |logit| {float(want.abs().max()):.2f}, max error {err:.2e}, bound {tol:.2e}")
    assert err < tol


def test_the_mlp_activation_is_gelus_tanh_form():
    """Exact GELU differs from the tanh form by at most ~5e-4, too little for the whole-network
    comparison above to resolve, so the activation is checked on its own."""
    z = torch.linspace(-6, 6, 2001)
    got = small_network().blocks[0].mlp[1](z).double()
    zd = z.double()
    tanh_form = 0.5 * zd * (1 + torch.tanh(math.sqrt(2 / math.pi) * (zd + 0.044715 * zd**3)))
    exact = 0.5 * zd * (1 + torch.erf(zd / math.sqrt(2)))
    tol = 8 * U32 * 6  # a few roundings of values up to 6
    assert float((got - tanh_form).abs().max()) < tol < float((exact - tanh_form).abs().max())


def test_time_agnostic_network_gives_every_sigma_the_same_output():
    ids = torch.randint(0, 11, (2, 6), generator=torch.Generator().manual_seed(2))
    agnostic, timed = small_network(time_conditioning=False), small_network(time_conditioning=True)
    assert torch.equal(agnostic(ids, torch.tensor([0.1, 0.1])), agnostic(ids, torch.tensor([3.0, 5.0])))
    assert not torch.allclose(timed(ids, torch.tensor([0.1, 0.1])), timed(ids, torch.tensor([3.0, 5.0])))
    # sigma = 0 given to the time-conditioned network is what the agnostic one computes
    same_weights = small_network(time_conditioning=True)
    same_weights.config = same_weights.config.replace(time_conditioning=False)
    assert torch.equal(same_weights(ids, torch.tensor([2.0, 4.0])), timed(ids, torch.zeros(2)))


def test_causal_twin_never_looks_ahead():
    network = small_network("ar")
    bidirectional = small_network("mdlm")
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 10, (3, 9), generator=g)
    for j in range(1, 9):
        y = x.clone()
        y[:, j:] = (x[:, j:] + 1 + torch.randint(0, 9, x[:, j:].shape, generator=g)) % 10  # every later token changes
        before, after = network(x), network(y)
        assert torch.equal(before[:, :j], after[:, :j]), f"an output before position {j} saw a later token"
        assert not torch.allclose(before[:, j:], after[:, j:])
        # the control: the bidirectional network's earlier outputs do change
        assert not torch.allclose(bidirectional(x, torch.zeros(3))[:, :j], bidirectional(y, torch.zeros(3))[:, :j])


def test_dropout_acts_in_training_mode_only():
    network = small_network(dropout=0.5)
    ids = torch.randint(0, 11, (2, 6), generator=torch.Generator().manual_seed(4))
    assert torch.equal(network(ids, torch.ones(2)), network(ids, torch.ones(2)))
    network.train()
    torch.manual_seed(0)
    assert not torch.equal(network(ids, torch.ones(2)), network(ids, torch.ones(2)))


# --- precision -------------------------------------------------------------------------------------
def _bf16_tolerance(config: DiTConfig, scale: float) -> float:
    """The same first-order bound with bfloat16's unit roundoff 2^-8 for the matrix products."""
    return float32_tolerance(config, scale) * 2.0**-8 / U32


def test_bf16_autocast_runs_on_cpu():
    network = small_network()
    ids = torch.randint(0, 11, (2, 7), generator=torch.Generator().manual_seed(5))
    sigma = torch.tensor([0.5, 1.5])
    full = network(ids, sigma)
    network.bf16_autocast = True
    try:
        half = network(ids, sigma)
    except RuntimeError as e:  # a CPU without bfloat16 kernels
        pytest.skip(f"bfloat16 autocast unavailable on this CPU: {e}")
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    assert not torch.equal(half, full)  # it really ran in bfloat16
    assert float((half - full).abs().max()) < _bf16_tolerance(network.config, float(full.abs().max()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_forward_runs_under_bf16_autocast():
    network = small_network()
    ids = torch.randint(0, 11, (2, 7), generator=torch.Generator().manual_seed(6))
    sigma = torch.tensor([0.5, 1.5])
    on_cpu = network(ids, sigma)
    on_gpu = network.cuda()(ids.cuda(), sigma.cuda())
    assert on_gpu.dtype == torch.float32 and on_gpu.device.type == "cuda"
    assert not torch.equal(on_gpu.cpu(), on_cpu)  # bfloat16 blocks by default on CUDA
    assert float((on_gpu.cpu() - on_cpu).abs().max()) < _bf16_tolerance(network.config, float(on_cpu.abs().max()))
    network.bf16_autocast = False
    assert float((network(ids.cuda(), sigma.cuda()).cpu() - on_cpu).abs().max()) < float32_tolerance(network.config, float(on_cpu.abs().max()))


# --- denoisers ---------------------------------------------------------------------------------------
def test_subs_denoiser_is_mdlm_subs():
    network = small_network(time_conditioning=True)
    denoiser = SubsDenoiser(network, max_batch=2)  # batches of 2: chunking must not change anything
    assert denoiser.mask_id == 10 and denoiser.vocab_size == 10
    g = torch.Generator().manual_seed(7)
    x = torch.randint(0, 11, (5, 8), generator=g)
    t = torch.rand(5, generator=g, dtype=torch.float64)
    mu = denoiser(x, t)
    assert mu.shape == (5, 8, 10) and mu.dtype == torch.float32
    sigma = -torch.log1p(-(1 - 1e-3) * t)  # MDLM's log-linear noise
    logits = network(x, sigma.float())
    logits[..., 10] = -torch.inf
    want = torch.softmax(logits, -1)[..., :10]
    masked = x == 10
    assert torch.allclose(mu[masked], want[masked], rtol=0, atol=8 * U32)
    assert torch.equal(mu[~masked], torch.nn.functional.one_hot(x[~masked], 10).float())
    assert torch.allclose(mu.sum(-1), torch.ones(5, 8), atol=16 * U32)


def test_time_agnostic_denoiser_ignores_t_and_the_timed_one_needs_it():
    x = torch.full((2, 5), 10)
    agnostic = SubsDenoiser(small_network(time_conditioning=False))
    assert torch.equal(agnostic(x, torch.tensor([0.2, 0.2])), agnostic(x, torch.tensor([0.9, 0.7])))
    assert torch.equal(agnostic(x), agnostic(x, torch.tensor([0.9, 0.7])))
    with pytest.raises(ValueError, match="needs t"):
        SubsDenoiser(small_network(time_conditioning=True))(x)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        agnostic(x, torch.tensor([1.5, 0.5]))
    with pytest.raises(ValueError, match="infinite"):
        SubsDenoiser(small_network(time_conditioning=True), schedule="linear")(x, torch.ones(2))
    with pytest.raises(ValueError, match="ScoreDenoiser"):
        SubsDenoiser(small_network("sedd"))


def _law_check(counts: torch.Tensor, law: torch.Tensor, wrong_laws: dict) -> None:
    result = chi_square_test(counts, law)
    powers = {name: chi_square_power(law, wrong, int(counts.sum())) for name, wrong in wrong_laws.items()}
    print(f"p = {result.p_value:.3g}, power against {', '.join(f'{k} {v:.4f}' for k, v in powers.items())}")
    assert min(powers.values()) >= 0.99
    assert result.p_value > ALPHA


@pytest.mark.parametrize("time_conditioning", [False, True], ids=["agnostic", "timed"])
def test_samplers_run_with_a_network_and_draw_from_its_output(time_conditioning):
    """One position: every sampler draws the token from mu(all masked, t of its unmasking
    step). For the time-agnostic network that is one law, checked by chi-square."""
    network = small_network(time_conditioning=time_conditioning)
    network.output_layer.linear.bias.data *= 8  # a clearly non-uniform law over the 10 tokens
    denoiser = SubsDenoiser(network, max_batch=4096)
    g = torch.Generator().manual_seed(8)
    caching = "none" if time_conditioning else "per_sequence"  # a timed network is never cached at stale times
    runs = {
        "exact": exact_sample(denoiser, 3, 6, 20, g, progress=False),
        "float32": ancestral_sample(denoiser, 3, 6, 20, "float32", g, caching=caching, progress=False),
        "float64": ancestral_sample(denoiser, 3, 6, 20, "float64", g, caching=caching, progress=False),
    }
    for run in runs.values():
        assert run.tokens.shape == (3, 6) and run.tokens.dtype == torch.int64
        assert ((run.tokens >= 0) & (run.tokens < 10)).all()  # valid tokens, no mask left
        assert ((run.nfe >= 1) & (run.nfe <= 20)).all()
    if time_conditioning:
        return
    n = 4000
    law = denoiser(torch.full((1, 1), 10))[0, 0].double()
    wrong = {"the law one token over": torch.roll(law, 1), "the law at temperature 1.2": law ** (1 / 1.2)}
    for sampler in ("exact", "float64"):
        if sampler == "exact":
            tokens = exact_sample(denoiser, n, 1, 10, g, progress=False).tokens
        else:
            tokens = ancestral_sample(denoiser, n, 1, 10, "float64", g, progress=False).tokens
        _law_check(torch.bincount(tokens.flatten(), minlength=10), law, wrong)


def test_sedd_score_on_a_case_with_a_known_exact_score():
    """Tokens i.i.d. from pi: the exact log score of a masked position is
    log pi_y - log expm1(sigma) whatever the context. A SEDD network whose output is the
    constant log pi + log V (zero output weights) has exactly that score after SEDD's
    scale_by_sigma, and the denoiser must return pi."""
    V = 10
    network = small_network("sedd", vocab_size=V + 1)
    pi = torch.softmax(torch.randn(V, generator=torch.Generator().manual_seed(9), dtype=torch.float64) * 2, -1)
    with torch.no_grad():
        network.output_layer.linear.weight.zero_()
        network.output_layer.linear.bias.copy_(torch.cat([torch.log(pi) + math.log(V), torch.zeros(1, dtype=torch.float64)]).float())
    denoiser = ScoreDenoiser(network)
    x = torch.tensor([[10, 3, 10, 10, 7], [10, 10, 10, 10, 10]])
    for t in (0.05, 0.5, 1.0):
        tt = torch.full((2,), t, dtype=torch.float64)
        sigma = denoiser.sigma(tt, 2)
        score = denoiser.log_score(x, sigma).double()
        masked = x == 10
        exact = torch.log(pi) - torch.log(torch.expm1(sigma))[:, None, None]
        assert torch.allclose(score[..., :V][masked], exact.expand(2, 5, V)[masked], atol=64 * U32 * float(exact.abs().max()))
        # the exact score's identity: expm1(sigma) * sum_y s_y = 1
        total = torch.expm1(sigma)[:, None] * score[..., :V].exp().sum(-1)
        assert torch.allclose(total[masked], torch.ones_like(total[masked]), atol=1e-5)
        assert torch.equal(score[~masked].gather(-1, x[~masked][:, None]), torch.zeros(int((~masked).sum()), 1, dtype=torch.float64))
        mu = denoiser(x, tt).double()
        assert torch.allclose(mu[masked], pi.expand(int(masked.sum()), V), atol=16 * U32)
        assert torch.equal(mu[~masked], torch.nn.functional.one_hot(x[~masked], V).double())
    with pytest.raises(ValueError, match="sigma = 0"):
        denoiser(x, torch.zeros(2, dtype=torch.float64))


# --- the causal twin as a language model -----------------------------------------------------------
def test_autoregressive_model_is_a_normalised_law_and_its_nll_matches_its_conditionals():
    V, L = 4, 3
    model = AutoregressiveModel(small_network("ar", vocab_size=V + 1))
    every = torch.tensor(list(itertools.product(range(V), repeat=L)))
    logp = model.log_likelihood(every)
    assert abs(float(torch.logsumexp(logp, 0))) < 64 * U32  # sum over all V^L sequences is 1
    # the shifted full-sequence pass against one call per prefix
    nll = model.token_nll(every)
    for l in range(L):
        p = model.next_token_probabilities(every[:, :l]).double()
        assert torch.allclose(nll[:, l], -torch.log(p.gather(1, every[:, l : l + 1])).squeeze(1), atol=64 * U32)
    assert torch.allclose(model.nll_per_token(every), nll.mean(1))
    with pytest.raises(ValueError, match="tokens"):
        model.token_nll(torch.tensor([[0, V]]))


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_ar_sample_draws_from_the_networks_law(temperature):
    V, L, n = 4, 2, 20_000
    model = AutoregressiveModel(small_network("ar", vocab_size=V + 1, seed=10), max_batch=n)
    model.network.output_layer.linear.bias.data *= 4
    every = torch.tensor(list(itertools.product(range(V), repeat=L)))

    def joint(T):
        logq = torch.zeros(every.shape[0], dtype=torch.float64)
        for l in range(L):
            p = model.next_token_probabilities(every[:, :l]).double() ** (1 / T)
            logq += torch.log((p / p.sum(1, keepdim=True)).gather(1, every[:, l : l + 1]).squeeze(1))
        return logq.exp()

    x = ar_sample(model, n, L, temperature, torch.Generator().manual_seed(11))
    counts = torch.bincount(x[:, 0] * V + x[:, 1], minlength=V**L)
    _law_check(counts, joint(temperature), {"another temperature": joint(temperature * 1.15)})


def test_autoregressive_model_wants_the_causal_twin():
    with pytest.raises(TypeError):
        AutoregressiveModel(small_network("mdlm"))
    assert isinstance(small_network("ar"), CausalTransformer)
