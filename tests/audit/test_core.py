import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mdmlib.audit.core import (
    AuditError,
    GPT2_VOCAB,
    Probe,
    _mean_log_mu,
    audit,
    default_probes,
    detectable_bias,
    fit_eps,
    fit_threshold,
    load_function,
    mu_of,
    parse_seconds,
    run_line,
    sample_size,
    temperature_of_mean,
)
from mdmlib.precision.categorical import exponential_race, inverse_cdf, truncated_race
from mdmlib.precision.grid_law import law_on_grid
from mdmlib.audit.public_lines import LINES, grid_line_law, sampling_line
from mdmlib.stats.significance import binomial_power, binomial_z

QUIET = dict(show_progress=False)


def _undeclared(f):
    """The same function without its declaration: the audit must measure it."""
    return lambda p, g: f(p, g)


# ---- must show -----------------------------------------------------------------------

def test_exact_sampler_is_reported_exact_with_its_power():
    probes = [Probe("flat", 0.1, 100), Probe("zipf", 0.01, 100), Probe("peaked", 0.01, 100, "first")]
    report = audit(_undeclared(lambda p, g: inverse_cdf(p, g)), probes=probes, dtype="float64", budget=600, **QUIET)
    print(report.table())
    assert report.verdict.startswith("exact within the power of the test: no bias larger than")
    assert not report.out_of_time
    for r in report.results:
        assert r.n == r.target_n and r.power >= 0.99 and r.detectable <= 0.1 and r.p_value > 1e-3
    assert report.eps_fit["low"] == 0.0 and report.threshold_fit["low"] == 0.0  # exact sampling fits both families


def test_float32_race_leaves_at_its_grid_laws_rate():
    """The 32-bit race measured, not declared: 1,000 flat tokens of probability 2e-8 each
    (h = 2e-5). The grid law of the real line leaves at 0.159 of the exact rate, and its
    leave rate lies in the measured interval; at this sample the test has power >= 0.99
    against the exact rate (separating the grid law from the closed form, 0.051 here,
    takes about 2e10 uniforms: notebook 11 does it with the O(1) sampler of the same law)."""
    probe = Probe("flat", 2e-5, 1_000)
    report = audit(_undeclared(lambda p, g: exponential_race(p, g, torch.float32)), probes=[probe], bias=1.0, budget=900,
                   compare=("mdlm_sedd_race",), **QUIET)
    print(report.table())
    r = report.results[0]
    grid = r.compared["mdlm_sedd_race"]
    assert not report.out_of_time and abs(grid["leave"] / probe.h - 0.1586) < 1e-3
    # agreement at the project's level (the grid law lies in the 99.9% interval), with power against exact
    assert grid["p_value"] > 1e-3 and grid["power"] >= 0.99
    print(f"{r.leaves} leaves in {r.n:,}; grid law inside the 99% interval: {grid['inside']}; "
          f"z against the exact rate {binomial_z(r.leaves, r.n, probe.h):+.1f}")


TAU = 3e-5


def _drops_small_tokens(p, g):
    """A deliberately broken line: tokens below TAU are never drawn."""
    return inverse_cdf(torch.where(p >= TAU, p, torch.zeros_like(p)), g)


def test_threshold_of_a_broken_sampler_is_recovered():
    probes = [Probe("flat", 1e-2, 100), Probe("flat", 2e-3, 100), Probe("zipf", 1e-2, 100), Probe("peaked", 1e-2, 100)]
    report = audit(_drops_small_tokens, probes=probes, dtype="float64", budget=600, **QUIET)
    print(report.table())
    # the interval at 1 - 1e-6 rather than the report's 99%: a wrong exclusion must be negligible here
    fit = fit_threshold(report.results, confidence=1 - 1e-6)
    print("threshold interval at 1 - 1e-6:", fit)
    assert fit["low"] < TAU <= fit["high"] and fit["high"] / fit["low"] < 2
    assert report.threshold_fit["deviance_p"] > 1e-3 and report.eps_fit["deviance_p"] < 1e-6  # a threshold, not a Gumbel truncation
    dropped = report.results[1]  # 2e-5 per token: all dropped
    z = binomial_z(dropped.leaves, dropped.n, dropped.probe.h)
    print(f"flat tokens of 2e-5: {dropped.leaves} leaves in {dropped.n:,}, z = {z:.0f}")
    assert dropped.leaves == 0 and z < -20 and report.verdict.startswith("biased: leaves the mask at 0 ")


def test_eps_of_a_truncated_race_is_recovered():
    eps = 2.0**-12
    probes = [Probe("flat", 2e-2, 50), Probe("zipf", 2e-2, 50), Probe("flat", 5e-3, 50)]
    report = audit(_undeclared(lambda p, g: truncated_race(p, g, eps)), probes=probes, dtype="float64", budget=600, **QUIET)
    print(report.table())
    fit = fit_eps(report.results, confidence=1 - 1e-6)  # a wrong exclusion must be negligible
    print("eps interval at 1 - 1e-6:", fit)
    assert fit["low"] <= eps <= fit["high"] and fit["low"] > 0 and report.eps_fit["deviance_p"] > 1e-3


# ---- exact laws and their confirmation ---------------------------------------------------

def _race_noise(u):
    return 1e-10 - torch.log(u + 1e-10)


@sampling_line(takes="probs", dtype=torch.bfloat16, law=grid_line_law(_race_noise, lambda p, e: p / e, "probs", torch.bfloat16, "race"))
def bfloat16_race(p, g):
    return exponential_race(p, g, torch.bfloat16)


@pytest.mark.parametrize("mask", ["last", "first"])
def test_declared_law_gives_the_exact_leave_rate(mask):
    """The audit's exact path against law_on_grid, an independent algorithm."""
    probe = Probe("peaked", 0.05, 30, mask)
    r = audit(bfloat16_race, probes=[probe], **QUIET).results[0]
    p, copies, _, mask_block = probe.blocks()
    reference = 1 - float(law_on_grid(p, torch.bfloat16, copies=copies)[mask_block])
    assert r.method == "exact law" and abs(r.leave - reference) < 1e-12


def test_confirmation_of_a_declared_law_has_power():
    line = LINES["maskgit_gumbel_bfloat16"]
    probe = Probe("zipf", 0.05, 20)
    report = audit(line, probes=[probe], confirm=[probe], budget=300, **QUIET)
    print(report.table())
    assert report.results[0].method == "exact law" and report.results[0].ratio < 0.62
    c = report.confirm[0].compared["declared"]
    assert c["p_value"] > 1e-3 and c["power"] >= 0.99  # power against the exact rate
    assert report.verdict.startswith("biased")


def test_public_lines_of_the_notebook_table():
    """Two headline numbers of notebook 11, from the declared laws: at GPT-2's vocabulary
    and h = 1e-4 the float32 race never leaves a flat mask, while torch.multinomial on the
    CPU is exact (its exponentials come from 53-bit uniforms)."""
    probe = Probe("flat", 1e-4, GPT2_VOCAB)
    race = audit(LINES["mdlm_sedd_race"], probes=[probe], **QUIET).results[0]
    multinomial = audit(LINES["torch_multinomial_float32"], probes=[probe], **QUIET).results[0]
    assert race.leave == 0.0 and abs(multinomial.ratio - 1) < 1e-6


# ---- pieces --------------------------------------------------------------------------

def test_probes():
    assert len(default_probes()) == 21
    p = Probe("zipf", 1e-3, 10, "first")
    c = p.categories()
    assert c[0] == 1 - 1e-3 and abs(float(c.sum()) - 1) < 1e-15 and p.mask_index == 0
    probs, copies, log_mu, mask_block = Probe("flat", 1e-3, 10).blocks()
    assert copies.tolist() == [10, 1] and mask_block == 1
    assert torch.allclose(torch.repeat_interleave(probs, copies), Probe("flat", 1e-3, 10).categories(), rtol=0, atol=1e-18)
    for bad in (dict(mu="uniform"), dict(h=0.0), dict(h=1.0), dict(vocab=1), dict(mask="middle")):
        with pytest.raises(ValueError):
            Probe(**{**dict(mu="flat", h=0.1, vocab=10), **bad})


def test_sample_size_reaches_the_power_it_is_asked_for():
    for h in (0.1, 1e-3):
        n = sample_size(h, 0.1, 0.99)
        assert binomial_power(h, 0.9 * h, n) >= 0.99 and binomial_power(h, 1.1 * h, n) >= 0.99
        assert binomial_power(h, 0.9 * h, int(n / 1.2)) < 0.99 or binomial_power(h, 1.1 * h, int(n / 1.2)) < 0.99
        assert detectable_bias(h, n, 0.99) <= 0.1 < detectable_bias(h, n // 4, 0.99)
    assert detectable_bias(1e-4, 10, 0.99) == math.inf


def test_temperature_of_the_mean_inverts_it():
    log_mu = torch.log(mu_of("zipf", 1_000))
    for T in (0.3, 0.86, 1.0, 2.0):
        assert temperature_of_mean(log_mu, _mean_log_mu(log_mu, T)) == pytest.approx(T, rel=1e-9)
    assert temperature_of_mean(log_mu, float(log_mu.max())) == 0.0  # only the likeliest token


def test_parse_seconds():
    assert parse_seconds("60s") == 60 and parse_seconds("2m") == 120 and parse_seconds("1.5h") == 5400 and parse_seconds("90") == 90
    with pytest.raises(ValueError, match="budget"):
        parse_seconds("soon")


def test_bad_lines_get_clear_messages():
    x = torch.full((4, 11), 1 / 11)
    g = torch.Generator().manual_seed(0)
    cases = [
        (lambda p, g: torch.multinomial(p, 1, generator=g), "shape \\(4, 1\\).*squeeze"),
        (lambda p, g: torch.full((4,), 11), "outside \\[0, 10\\]"),
        (lambda p, g: torch.zeros(4), "dtype torch.float32"),
        (lambda p, g: [0, 1, 2, 3], "returned list"),
        (lambda p, g: 1 / 0, "raised ZeroDivisionError"),
    ]
    for f, message in cases:
        with pytest.raises(AuditError, match=message):
            run_line(f, x, g)
    with pytest.raises(AuditError, match="shape"):  # checked before any long run
        audit(lambda p, g: p.argmax(-1, keepdim=True), probes=[Probe("flat", 0.1, 10)], **QUIET)


def test_a_line_on_the_global_generator_is_seeded_and_leaves_it_alone():
    x = torch.full((50, 11), 1 / 11)
    before = torch.get_rng_state()
    a = run_line(lambda p: torch.multinomial(p, 1).squeeze(-1), x, torch.Generator().manual_seed(4))
    assert torch.equal(before, torch.get_rng_state())
    assert torch.equal(a, run_line(lambda p: torch.multinomial(p, 1).squeeze(-1), x, torch.Generator().manual_seed(4)))


def test_bad_arguments():
    line = LINES["project_inverse_cdf"]
    probe = [Probe("flat", 0.1, 10)]
    with pytest.raises(ValueError, match="unknown line"):
        audit(line, probes=probe, compare=("nobody",), **QUIET)
    with pytest.raises(ValueError, match="budget"):
        audit(line, probes=probe, budget=0, **QUIET)
    with pytest.raises(ValueError, match="unknown dtype"):
        audit(line, probes=probe, dtype="float8", **QUIET)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            audit(line, probes=probe, device="cuda", **QUIET)


def test_time_budget_stops_early_and_says_so():
    report = audit(_undeclared(lambda p, g: inverse_cdf(p, g)), probes=[Probe("flat", 1e-3, 1_000)], dtype="float64", budget=0.5,
                   chunk_elems=1 << 16, **QUIET)
    r = report.results[0]
    assert report.out_of_time and 0 < r.n < r.target_n and r.power < 0.99
    assert "ran out" in report.table()


def test_report_writes_json_and_a_figure(tmp_path, monkeypatch):
    monkeypatch.setenv("MDMLIB_FIGURES", str(tmp_path))
    from mdmlib.infra.results import save_figure, save_json

    report = audit(LINES["project_truncated_race"], probes=[Probe("zipf", 1e-2, 100), Probe("flat", 1e-3, 100)], **QUIET)
    data = json.loads(save_json(report.to_json(), "audit_test").read_text())
    assert data["verdict"] == report.verdict and len(data["probes"]) == 2
    assert save_figure(report.figure(), "audit_test").stat().st_size > 0


# ---- the command line -------------------------------------------------------------------

USER_FILE = '''
import torch

def race(probs, generator):
    u = torch.rand(probs.shape, generator=generator, dtype=probs.dtype)
    return (probs / -torch.log(u)).argmax(-1)

def keepdim(probs, generator):
    return torch.multinomial(probs, 1, generator=generator)

def too_far(probs, generator):
    return torch.full(probs.shape[:-1], probs.shape[-1])

def fails(probs, generator):
    raise RuntimeError("no sampler here")

not_a_function = 3
'''


def _cli(*args, cwd, env_extra=None):
    env = {**os.environ, "MDMLIB_PROGRESS": "0", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "mdmlib.audit.core", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_command_line_on_a_users_file(tmp_path):
    (tmp_path / "my_sampler.py").write_text(textwrap.dedent(USER_FILE))
    out = tmp_path / "out"
    small = ["--vocab", "100", "--steps", "1e-1", "--mu", "flat,zipf", "--budget", "60s"]
    env = {"MDMLIB_CACHE": str(tmp_path / "cache")}
    done = _cli("my_sampler.py:race", *small, "--out", str(out), cwd=tmp_path, env_extra=env)
    assert done.returncode == 0, done.stderr
    assert "verdict: exact within the power of the test" in done.stdout
    data = json.loads((out / "audit_race.json").read_text())
    assert data["takes"] == "probs" and len(data["probes"]) == 2 and (out / "audit_race.png").stat().st_size > 0
    for target, message in [
        ("my_sampler.py:keepdim", "returned shape (3, 1) for 3 rows of 101 classes"),
        ("my_sampler.py:too_far", "outside [0, 100]"),
        ("my_sampler.py:fails", "raised RuntimeError: no sampler here"),
        ("my_sampler.py:nothing", "has no attribute 'nothing'"),
        ("my_sampler.py:not_a_function", "is not a function"),
        ("missing.py:race", "no such file"),
        ("my_sampler.py", "package.module:function or path/to/file.py:function"),
        ("no_such_package.module:f", "importing no_such_package.module failed"),
    ]:
        done = _cli(target, *small, cwd=tmp_path, env_extra=env)
        assert done.returncode == 2 and message in done.stderr, (target, done.stderr)
        assert "Traceback" not in done.stderr


def test_command_line_on_a_module_function(tmp_path):
    done = _cli("mdmlib.audit.public_lines:torch_multinomial_float64", "--vocab", "1000", "--steps", "1e-3", "--mu", "flat",
                "--out", str(tmp_path), cwd=Path(__file__).resolve().parents[2], env_extra={"MDMLIB_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    assert "exact law" in done.stdout and (tmp_path / "audit_torch_multinomial_float64.json").exists()
