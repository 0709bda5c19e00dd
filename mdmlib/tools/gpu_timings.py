"""The GPU checks that are timings (mdmlib.tools.gpu_check runs them): the full-size network
forward in float32 and under bfloat16 autocast, the samplers at length 1,024, and a judge of
GPT-2 Large's size. Sizes are arguments, so the tests run them on the CPU at tiny sizes."""
from __future__ import annotations

import math
import statistics
import tempfile
import time

import torch

from mdmlib.mdm.step import PRECISIONS, dense_step
from mdmlib.models import MDLM_OWT, DiTConfig, SubsDenoiser, build_network, load_pretrained, save_pretrained
from mdmlib.mdm.samplers import ancestral_sample, first_hitting_sample
from mdmlib.mdm.schedules import mask_probability, time_grid


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
        self.time_conditioned = getattr(denoiser, "time_conditioned", False)  # so the sampler still refuses stale caching

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
