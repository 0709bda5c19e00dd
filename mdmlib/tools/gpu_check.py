"""Checks that need a GPU: `python -m mdmlib.tools.gpu_check [name ...]`.

Each check is a function `check_<name>(device) -> dict` registered in CHECKS: it
prints what it measured beside the model and returns its findings with `passed`.
Without CUDA the command says so and exits 0; nothing else in the project needs a
GPU. To add a check (a loader, bf16 autocast, a sampler at length 1,024, a judge),
write the function and add it to CHECKS.

  rand_lattice   torch.rand on CUDA per dtype against the lattice modelled in
                 mdmlib.precision.grid_law from PyTorch's source: the frequency of 0 and of the
                 largest values, the top values' probabilities alternating by the
                 parity of their rank (float32), as a chi-square of top-bin counts
                 with its power against the nearest wrong models (the CPU lattice;
                 a generator that keeps 1.0 instead of returning 0). float64: the
                 spacing of the top binade (2^-52 on CUDA, 2^-53 on the CPU).
  literal_line   the literal float32 line of one masked-diffusion step (10,000 flat
                 tokens, a mask of 1 - 1e-3) on the GPU, against the grid law on the
                 CUDA lattice and the truncation closed form.
  dit_forward    the full-size MDLM network (random weights, the published config):
                 saved and loaded through the project's loader, then timed forward at
                 length 1,024, batch 1 to 8, in float32 and under bfloat16 autocast,
                 with the gap between the two outputs.
  samplers       at length 1,024 with that network: the ancestral sampler (float32 and
                 float64, a few steps; network on the GPU, categorical arithmetic on the
                 CPU), the literal categorical line of a step on the GPU with its own
                 generator (float32, float64, float64 + truncation), and the
                 first-hitting sampler over its first events; seconds per step / event.
  judge_forward  a judge of GPT-2 Large's size (random weights, no download) scoring
                 1,024-token sequences in float32 and bfloat16: seconds per sequence.

`python -m mdmlib.tools.gpu_check [names] --out FILE` runs them (all by default), each in
its own try/except (an error is recorded and the next check runs), and writes every
result, with the device and versions, to FILE as one JSON written whole. The timing
checks take sizes as arguments, so the tests run them on the CPU at tiny sizes.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from mdmlib.precision.categorical import exponential_race
from mdmlib.precision.grid_law import law_on_grid, rand_grid, zero_probability
from mdmlib.mdm.step import PRECISIONS, dense_step
from mdmlib.models import MDLM_OWT, DiTConfig, SubsDenoiser, build_network, load_pretrained, save_pretrained
from mdmlib.precision.formats import as_dtype, float_format
from mdmlib.infra.provenance import provenance
from mdmlib.infra.results import _to_json, write_atomically
from mdmlib.mdm.samplers import ancestral_sample, first_hitting_sample
from mdmlib.mdm.schedules import mask_probability, time_grid
from mdmlib.stats.significance import ALPHA, binomial_z, chi_square_power, chi_square_test
from mdmlib.precision.truncation import truncated_law

_DRAWS_PER_CALL = 1 << 28
SINGLES, PAIRED = 8, 1 << 12  # top values binned one by one, then in two groups by rank parity


def _bin_of(u: torch.Tensor, top: torch.Tensor, paired: torch.Tensor) -> torch.Tensor:
    """Bin of each value: 0 -> 0; the i-th of the `top` values -> 1 + i; one of the
    `paired` values -> SINGLES + 1 (odd rank from the top) or SINGLES + 2 (even);
    anything else -> SINGLES + 3."""
    s = top.numel()
    pos_t = torch.searchsorted(top, u).clamp(max=s - 1)
    pos_p = torch.searchsorted(paired, u).clamp(max=paired.numel() - 1)
    on_top, on_pair = top[pos_t] == u, paired[pos_p] == u
    odd_rank = (paired.numel() - pos_p) % 2 == 1
    rest = torch.full_like(pos_t, s + 3)
    b = torch.where(on_pair, torch.where(odd_rank, s + 1, s + 2), rest)
    b = torch.where(on_top, 1 + pos_t, b)
    return torch.where(u == 0, torch.zeros_like(b), b)


def binned_lattice(values: torch.Tensor, probs: torch.Tensor, top: torch.Tensor, paired: torch.Tensor) -> torch.Tensor:
    """A lattice's probabilities in the bins of `_bin_of`."""
    return torch.zeros(top.numel() + 4, dtype=torch.float64).index_add_(0, _bin_of(values.double(), top, paired), probs)


def check_rand_lattice(device, draws: dict | None = None, seed: int = 0) -> dict:
    """torch.rand on `device` against the modelled CUDA lattice, per dtype."""
    draws = draws or {torch.float32: 1 << 32, torch.float16: 1 << 30, torch.bfloat16: 1 << 30}
    found, passed = {}, True
    for dtype, n in draws.items():
        dtype = as_dtype(dtype)
        values, probs = rand_grid(dtype, "cuda", top=SINGLES + PAIRED)
        top, paired = values[-SINGLES:].double(), values[:-SINGLES].double()
        p0 = zero_probability(dtype, "cuda")
        model = binned_lattice(values, probs, top, paired)
        model[0] = p0
        model[-1] = 1 - model[:-1].sum()
        cpu_values, cpu_probs = rand_grid(dtype, "cpu")
        wrong = {"CPU lattice": binned_lattice(cpu_values, cpu_probs, top, paired)}
        kept_one = model.clone()  # the same generator without the remap: its 0s are 1.0s ("rest")
        kept_one[-1] += kept_one[0]
        kept_one[0] = 0.0
        wrong["1.0 kept, not mapped to 0"] = kept_one
        counts = torch.zeros(top.numel() + 4, dtype=torch.int64)
        g = torch.Generator(device).manual_seed(seed)
        top_d, paired_d = top.to(device), paired.to(device)
        for start in range(0, n, _DRAWS_PER_CALL):
            u = torch.rand(min(_DRAWS_PER_CALL, n - start), generator=g, dtype=dtype, device=device).double()
            counts += torch.bincount(_bin_of(u, top_d, paired_d), minlength=top.numel() + 4).cpu()
        test = chi_square_test(counts, model)
        power = {name: chi_square_power(model, alt, n) for name, alt in wrong.items()}
        fmt = float_format(dtype)
        print(f"{fmt.name:9s} {n:>14,d} draws: zeros {int(counts[0]):,d} (model {n * p0:,.1f}, CPU lattice {n * float(wrong['CPU lattice'][0]):,.1f}); "
              f"largest {float(top[-1]):.10f} seen {int(counts[SINGLES]):,d} times (model {n * float(model[SINGLES]):,.1f}, "
              f"CPU {n * float(wrong['CPU lattice'][SINGLES]):,.1f}); top-bin chi-square p = {test.p_value:.3g}; power against: "
              + ", ".join(f"{k} {v:.4f}" for k, v in power.items()))
        # the nearest wrong model the sample can tell apart must be rejected with power >= 0.99
        ok = test.p_value > ALPHA and max(power.values()) >= 0.99
        passed &= ok
        found[fmt.name] = {"draws": n, "zeros": int(counts[0]), "p_value": test.p_value, "power": power, "passed": ok}
    # float64: too many values to enumerate, but the top binade's spacing tells CUDA (2^-52) from the CPU (2^-53)
    n64 = 1 << 26
    u = torch.rand(n64, generator=torch.Generator(device).manual_seed(seed + 1), dtype=torch.float64, device=device)
    high = u[u >= 0.5]
    odd = int((torch.remainder(high * 2.0**53, 2) != 0).sum())
    ok64 = odd == 0 and high.numel() > n64 // 4
    print(f"float64   {n64:>14,d} draws: {high.numel():,d} in [1/2, 1), {odd} of them odd multiples of 2^-53 "
          f"(CUDA model: none; CPU: about half); largest {float(u.max()):.17f} (model at most 1 - 2^-52)")
    found["float64"] = {"draws": n64, "top_binade": high.numel(), "odd_multiples": odd, "passed": ok64}
    found["passed"] = passed and ok64
    return found


def check_literal_line(device, n: int = 1 << 23, V: int = 10_000, leave: float = 1e-3, seed: int = 0) -> dict:
    """The literal float32 race of one masked-diffusion step (V flat tokens, then the
    mask) on `device`: its leave frequency against the grid law on the CUDA lattice,
    the CPU lattice's law, and the truncation closed form."""
    blocks = torch.tensor([leave / V, 1 - leave], dtype=torch.float64)
    grid_cuda = law_on_grid(blocks, torch.float32, copies=[V, 1], device="cuda")[0].item()
    grid_cpu = law_on_grid(blocks, torch.float32, copies=[V, 1])[0].item()
    step = torch.full((V + 1,), leave / V, dtype=torch.float64)
    step[-1] = 1 - leave
    closed = truncated_law(step, float_format(torch.float32).gumbel_cap)[:-1].sum().item()
    g = torch.Generator(device).manual_seed(seed)
    p = step.to(device=device, dtype=torch.float32)
    rows = max(1, (1 << 28) // (V + 1))
    leaves = 0
    for start in range(0, n, rows):
        leaves += int((exponential_race(p.expand(min(rows, n - start), V + 1), g, torch.float32) != V).sum())
    z = {name: binomial_z(leaves, n, q) for name, q in (("grid law, CUDA lattice", grid_cuda), ("grid law, CPU lattice", grid_cpu), ("closed form", closed))}
    expected_z = (grid_cuda - closed) * n / math.sqrt(n * closed * (1 - closed))
    print(f"literal float32 line on {device}, {V:,d} flat tokens, leave {leave:g}: {leaves:,d} leaves in {n:,d} draws = "
          f"{leaves / n / leave:.4f} of exact; grid law {grid_cuda / leave:.4f} (CUDA lattice), {grid_cpu / leave:.4f} (CPU lattice), "
          f"closed form {closed / leave:.4f}; z: " + ", ".join(f"{k} {v:+.2f}" for k, v in z.items())
          + f"; expected z against the closed form {expected_z:.1f}")
    ok = abs(z["grid law, CUDA lattice"]) < 3 and z["closed form"] > 5 and expected_z > 8
    return {"draws": n, "leaves": leaves, "z": z, "expected_z_closed": expected_z, "passed": ok}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int) -> tuple[float, object]:
    """Median wall seconds of `repeats` calls after one warm-up call, and the last result."""
    out = fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def random_network(config: DiTConfig, device, seed: int = 0):
    """A network of `config` on `device`, every matrix N(0, 0.02^2) from a seeded generator
    (the published initialisation zeroes the adaLN and output layers, which would make
    every output uniform and the bfloat16 comparison empty)."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.device(device):
        torch.manual_seed(seed)  # the default initialisation of the biases
        network = build_network(config)
    g = torch.Generator(device).manual_seed(seed)
    with torch.no_grad():
        for p in network.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.02, generator=g)
    return network.eval()


def _ids(batch: int, length: int, vocab: int, device, seed: int) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator(device).manual_seed(seed), device=device)


def check_dit_forward(device, config: DiTConfig = MDLM_OWT, length: int = 1024, batches=(1, 2, 4, 8), repeats: int = 3, seed: int = 0) -> dict:
    """The MDLM network at `config`'s size: saved and loaded back through the project's
    loader onto `device` (timed), then its forward timed per batch size, float32 against
    bfloat16 autocast, with the largest gap between their log-probabilities."""
    device = torch.device(device)
    network = random_network(config, device, seed)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        save_pretrained(network, folder)
        saved = time.perf_counter() - start
        start = time.perf_counter()
        network = load_pretrained(folder, device)
        _sync(device)
        loaded = time.perf_counter() - start
    parameters = sum(p.numel() for p in network.parameters())
    print(f"MDLM network, {parameters / 1e6:.1f}M parameters: saved in {saved:.2f} s, loaded onto {device} in {loaded:.2f} s")
    found = {"parameters": parameters, "save_seconds": saved, "load_seconds": loaded, "length": length, "forward": {}}
    sigma = torch.zeros(max(batches), device=device)
    with torch.no_grad():
        for batch in batches:
            ids = _ids(batch, length, config.vocab_size - 1, device, seed + batch)
            row = {}
            for name, bf16 in (("float32", False), ("bfloat16", True)):
                network.bf16_autocast = bf16
                seconds, logits = _timed(lambda: network(ids, sigma[:batch]), device, repeats)
                row[name] = {"seconds": seconds, "tokens_per_second": batch * length / seconds, "log_probs": torch.log_softmax(logits[..., :-1].float(), -1)}
            gap = float((row["float32"].pop("log_probs") - row["bfloat16"].pop("log_probs")).abs().max())
            finite = math.isfinite(gap)
            if device.type == "cuda":
                row["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
            print(f"  batch {batch}: float32 {row['float32']['seconds'] * 1e3:8.1f} ms, bfloat16 autocast {row['bfloat16']['seconds'] * 1e3:8.1f} ms "
                  f"(x{row['float32']['seconds'] / row['bfloat16']['seconds']:.2f}); largest |log p| gap {gap:.3g}")
            found["forward"][str(batch)] = {**row, "largest_log_prob_gap": gap, "finite": finite}
    network.bf16_autocast = None
    found["passed"] = all(r["finite"] for r in found["forward"].values())
    return found


class _StopAfter:
    """A denoiser that stops the sampler after `calls` calls: times the first events of a
    sampler whose whole run would take too long for a check."""

    class Stop(Exception):
        pass

    def __init__(self, denoiser, calls: int):
        self.denoiser, self.calls, self.made = denoiser, calls, 0
        self.mask_id = denoiser.mask_id

    def __call__(self, x, t=None):
        if self.made == self.calls:
            raise self.Stop
        self.made += 1
        return self.denoiser(x, t)


def check_samplers(device, config: DiTConfig = MDLM_OWT, length: int = 1024, steps: int = 16, batch: int = 1, fhs_events: int = 32, seed: int = 0) -> dict:
    """The samplers at `length` with a random network of `config` on `device`: MDLM's
    ancestral sampler (float32, float64) for `steps` steps; the literal line of each
    step's categorical draw on `device` with its own generator, for every position of
    a batch still fully masked; the first-hitting sampler timed over `fhs_events` events."""
    device = torch.device(device)
    denoiser = SubsDenoiser(random_network(config, device, seed), "loglinear", max_batch=batch)
    found = {"length": length, "steps": steps, "batch": batch, "ancestral": {}, "literal_line": {}}
    masked = torch.full((batch, length), denoiser.mask_id)
    call, _ = _timed(lambda: denoiser(masked, torch.ones(batch, dtype=torch.float64)), device, 3)
    found["seconds_per_call"] = call  # the network on `batch` sequences, the output brought to the CPU
    print(f"one denoiser call on {batch} x {length} (network on {device}, output to the CPU): {call * 1e3:.1f} ms")
    for precision in ("float32", "float64"):
        start = time.perf_counter()
        out = ancestral_sample(denoiser, batch, length, steps, precision, torch.Generator().manual_seed(seed), schedule="loglinear", progress=False)
        _sync(device)
        seconds = time.perf_counter() - start
        left = int((out.tokens == denoiser.mask_id).sum())
        calls = int(out.nfe.max())  # the batch is evaluated together while any row needs it (at most this many calls)
        categorical = max(seconds - calls * call, 0.0) / steps
        found["ancestral"][precision] = {"seconds": seconds, "seconds_per_step": seconds / steps, "nfe": out.nfe.double().mean().item(),
                                         "categorical_seconds_per_step": categorical, "masks_left": left}
        print(f"ancestral sampler, {precision}, {steps} steps at length {length}: {seconds:.2f} s, {seconds / steps * 1e3:.1f} ms a step, "
              f"NFE {out.nfe.double().mean().item():.1f}, about {categorical * 1e3:.1f} ms a step besides the network; masks left {left}")
    # the literal line on the device: every position still masked, so each step draws length x (V + 1) uniforms per sequence
    x = torch.full((batch, length), denoiser.mask_id, device=device)
    mu = denoiser(x, torch.ones(batch, dtype=torch.float64)).reshape(-1, denoiser.mask_id)
    move = mask_probability("loglinear", time_grid(steps))
    for precision in PRECISIONS:
        g = torch.Generator(device).manual_seed(seed)
        leaves, total = 0, 0
        _sync(device)
        start = time.perf_counter()
        for n in range(steps):
            new = dense_step(mu, float(move[n]), float(move[n + 1]), precision, g)
            leaves += int((new != denoiser.mask_id).sum())
            total += new.numel()
        _sync(device)
        seconds = time.perf_counter() - start
        expected = sum(float((move[n] - move[n + 1]) / move[n]) for n in range(steps)) * mu.shape[0]
        found["literal_line"][precision] = {"seconds_per_step": seconds / steps, "leaves": leaves, "draws": total, "expected_leaves_exact": expected}
        print(f"literal {precision:13s} line on {device}, {mu.shape[0]} positions x {mu.shape[1] + 1} categories: {seconds / steps * 1e3:.2f} ms a step; "
              f"{leaves} left the mask (exact sampler: {expected:.1f} expected)")
    del mu
    events = min(fhs_events, length)
    stopping = _StopAfter(denoiser, events)
    start = time.perf_counter()
    try:
        first_hitting_sample(stopping, batch, length, "float32", torch.Generator().manual_seed(seed), schedule="loglinear", progress=False)
    except _StopAfter.Stop:
        pass
    _sync(device)
    seconds = time.perf_counter() - start
    found["first_hitting"] = {"events_timed": stopping.made, "seconds_per_event": seconds / max(stopping.made, 1),
                              "projected_seconds_for_length": seconds / max(stopping.made, 1) * length}
    print(f"first-hitting sampler, float32 draws: {seconds / max(stopping.made, 1) * 1e3:.1f} ms an event over its first {stopping.made} events "
          f"({length} events make a sample)")
    found["passed"] = all(r["masks_left"] == 0 for r in found["ancestral"].values()) and stopping.made == events
    return found


def check_judge_forward(device, n_embd: int = 1280, n_layer: int = 36, n_head: int = 20, vocab: int = 50257, context: int = 1024,
                        batch: int = 8, repeats: int = 2, seed: int = 0) -> dict:
    """A GPT-2 judge of the given size (default GPT-2 Large's) with random weights built on
    `device` (nothing downloaded), scoring `batch` sequences of `context` tokens through
    mdmlib.judging.judges in float32 and under bfloat16 autocast."""
    import transformers

    from mdmlib.judging.judges import CausalLMJudge

    device = torch.device(device)
    config = transformers.GPT2Config(vocab_size=vocab, n_positions=context, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                                     bos_token_id=vocab - 1, eos_token_id=vocab - 1)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.device(device):
        torch.manual_seed(seed)
        model = transformers.GPT2LMHeadModel(config).eval()
    _sync(device)
    built = time.perf_counter() - start
    parameters = sum(p.numel() for p in model.parameters())
    print(f"GPT-2 judge, {parameters / 1e6:.0f}M parameters, built on {device} in {built:.1f} s")
    ids = _ids(batch, context, vocab - 1, device, seed).cpu()  # no EOS inside: every position but the first is scored
    found = {"parameters": parameters, "build_seconds": built, "batch": batch, "context": context}
    nll = {}
    for dtype in ("float32", "bfloat16"):
        judge = CausalLMJudge(lambda i, m: model(input_ids=i, attention_mask=m).logits, context=context, eos_id=vocab - 1, device=device,
                              dtype=dtype, batch_size=batch, progress=False)
        seconds, scores = _timed(lambda: judge.score(ids), device, repeats)
        nll[dtype] = scores.nll_sum / scores.count
        found[dtype] = {"seconds": seconds, "seconds_per_sequence": seconds / batch, "gen_ppl": scores.gen_ppl().mean}
        print(f"  {dtype:8s}: {seconds:.2f} s for {batch} x {context} tokens ({seconds / batch * 1e3:.0f} ms a sequence), Gen PPL {scores.gen_ppl().mean:.1f}")
    found["largest_nll_gap"] = float((nll["float32"] - nll["bfloat16"]).abs().max())
    print(f"  largest per-sequence NLL gap float32 vs bfloat16: {found['largest_nll_gap']:.3g} nats a token")
    found["passed"] = all(math.isfinite(found[d]["gen_ppl"]) for d in ("float32", "bfloat16"))
    return found


CHECKS = {
    "rand_lattice": check_rand_lattice,
    "literal_line": check_literal_line,
    "dit_forward": check_dit_forward,
    "samplers": check_samplers,
    "judge_forward": check_judge_forward,
}


def run_checks(names, device) -> dict:
    """Run the named checks on `device`, each in its own try/except: an error is recorded
    (with the end of its traceback) as a failed check and the next one runs."""
    found = {}
    for name in names:
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        try:
            found[name] = CHECKS[name](device)
        except Exception as e:  # record it and go on: the other checks still tell something
            lines = traceback.format_exc().strip().splitlines()
            print(f"{name} failed: {type(e).__name__}: {e}")
            found[name] = {"passed": False, "error": f"{type(e).__name__}: {e}", "traceback": lines[-12:]}
        found[name]["seconds"] = time.perf_counter() - start
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m mdmlib.tools.gpu_check", description="Checks that need a GPU; exits 0 without one.")
    parser.add_argument("names", nargs="*", help=f"checks to run (default all): {', '.join(CHECKS)}")
    parser.add_argument("--out", default=None, help="write every result, with the device and versions, to this JSON file")
    args = parser.parse_args(argv)
    names = args.names or list(CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        print(f"unknown check(s) {unknown}; choose from {list(CHECKS)}")
        return 2
    if not torch.cuda.is_available():
        print("no CUDA device here: the GPU checks need one; nothing was checked" + (" and nothing written" if args.out else ""))
        return 0
    device = torch.device("cuda")
    info = provenance(device)
    v = info["versions"]
    print(f"device: {info['device']}, torch {v['torch']} (CUDA {v['cuda']}), transformers {v['transformers']}")
    start = time.perf_counter()
    found = run_checks(names, device)
    failed = [name for name, r in found.items() if not r.get("passed")]
    print("all passed" if not failed else f"failed: {failed}", f"({time.perf_counter() - start:.0f} s)")
    if args.out:
        text = json.dumps(_to_json({"about": info, "checks": found, "failed": failed}), indent=2, sort_keys=True, default=str) + "\n"
        write_atomically(Path(args.out), lambda tmp: Path(tmp).write_text(text))
        print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
