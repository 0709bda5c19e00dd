"""The paper's scale: samples of a masked diffusion checkpoint judged by a causal LM, at the
paper's settings, on the CPU, one GPU or several.

    python -m mdmlib.runs.paper_scale --checkpoint kuleshov-group/mdlm-owt --judge gpt2-large --device cuda
    torchrun --standalone --nproc_per_node=8 -m mdmlib.runs.paper_scale --checkpoint ./mdlm-owt --judge ./gpt2-large

The paper's settings (PAPER.md sections 4-5; `paper_settings`): MDLM's ancestral sampler
with float32 and float64 arithmetic at 100, 500, 1,000, 2,048, 5,000 and 10,000 steps (the
blog's figure and its table), float64 + truncation at 2,048 steps (the blog's ablation), 64
samples of length 1,024 per setting, GPT-2 Large as the judge. Each setting's samples are
cut into shards (mdmlib.infra.distributed): shard k draws with its own seed, so a run on W
processes gives bitwise the samples of one process.

The denoiser is read by the project's loaders (mdmlib.models): a folder in the Hugging Face
layout, local or a hub id (MDLM, SEDD, or the project's own `save_pretrained`), or a
Lightning .ckpt of MDLM's training code (EMA weights). The judge is a `transformers` causal
LM (`TransformersJudge`, MDLM's decode / re-tokenise / chunk protocol) or a folder holding
one of the project's causal networks (model_type "ar"), which scores the generator's own
token ids (`CausalLMJudge` with its start token).

Where the work runs: the network on `device` (under bfloat16 autocast when asked, as the
public code runs it on GPUs); the sampler's categorical arithmetic on the CPU, with
mdmlib.mdm.step.sparse_step, which draws each masked position from the law of MDLM's
literal line on the CPU generator's grid in O(1) (the literal line on a GPU draws from
CUDA's grid, whose law differs slightly: notebook 03, `python -m mdmlib.tools.gpu_check`). The
denoiser's output for a shard is kept on the CPU, samples x 1,024 x 50,257 float32 values
(206 MB a sequence), so choose --shard-size with the machine's memory in mind.

Results are written whole (mdmlib.infra.results) with their provenance: the checkpoint (as named,
its config, the SHA-256 of its weight files), the judge (likewise), the device, the dtypes,
the scale, the seed, the versions of Python, torch, transformers and mdmlib, and the git
commit of the code when it runs from a clone.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mdmlib.infra.provenance import provenance
from mdmlib.infra.distributed import Process, run_sharded, setup, teardown
from mdmlib.judging.judges import DEFAULT_JUDGE, DTYPES, CausalLMJudge, JudgeNotFoundError, Scores, TransformersJudge
from mdmlib.mdm.step import PRECISIONS
from mdmlib.stats.metrics import Estimate, sentence_entropy
from mdmlib.models import (
    AutoregressiveModel,
    CheckpointError,
    CheckpointNotFoundError,
    ScoreDenoiser,
    SubsDenoiser,
    load_lightning_checkpoint,
    load_pretrained,
    resolve_device,
)
from mdmlib.models.checkpoints import CONFIG_NAME, TORCH_WEIGHTS_NAME, WEIGHTS_NAME, _folder
from mdmlib.infra.progress import progress as progress_bar
from mdmlib.infra.results import save_json, write_json
from mdmlib.mdm.samplers import CACHING, ancestral_sample, expected_nfe
from mdmlib.infra.scale import current_scale
from mdmlib.stats.significance import mean_and_se

PAPER_STEPS = (100, 500, 1000, 2048, 5000, 10000)  # the blog's figure, and the table's 2,048
TABLE_STEPS = 2048
PAPER_SAMPLES = 64  # per setting (PAPER.md section 5); the blog's table used 8
PAPER_LENGTH = 1024
# The blog's Table 2: MDLM-OWT, 8 samples, 2,048 steps, judged by GPT-2 Large
PAPER_TABLE = {
    "float32": {"gen_ppl": 31.24, "entropy": 5.17},
    "float64": {"gen_ppl": 126.11, "entropy": 5.66},
    "float64+trunc": {"gen_ppl": 28.64, "entropy": 5.12},
}
SAMPLER_ARITHMETIC = "CPU, mdm_step.sparse_step: the literal line's law on the CPU generator's grid"


@dataclass(frozen=True)
class Setting:
    precision: str  # mdmlib.mdm.step.PRECISIONS
    steps: int

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}: expected one of {PRECISIONS}")
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")

    @property
    def name(self) -> str:
        return f"{self.precision}@{self.steps}"


def grid(steps=PAPER_STEPS, precisions=("float32", "float64"), trunc_steps=(TABLE_STEPS,)) -> list[Setting]:
    """Every precision at every step count, and float64 + truncation at `trunc_steps`."""
    settings = [Setting(p, int(n)) for p in precisions for n in steps]
    settings += [Setting("float64+trunc", int(n)) for n in trunc_steps if Setting("float64+trunc", int(n)) not in settings]
    return settings


def paper_settings() -> list[Setting]:
    """The paper's grid: float32 and float64 at PAPER_STEPS, float64 + truncation at 2,048."""
    return grid()


def setting_seed(seed: int, setting: Setting) -> int:
    """The seed of one setting's run: the run's seed, the precision and the steps mixed by
    numpy's SeedSequence, so no two settings share a stream."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    state = np.random.SeedSequence([seed, PRECISIONS.index(setting.precision), setting.steps]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


def estimated_seconds(settings: list[Setting], *, samples: int, length: int, seconds_per_call: float, seconds_per_step: float,
                      shard_size: int = 8, schedule: str = "loglinear") -> float:
    """The sampling time of a grid by the paper's cost model (App. J.3), for one process:
    each shard of `shard_size` sequences runs every step (`seconds_per_step`, the categorical
    work of a shard) and calls the network E[NFE] times per sequence (per-sequence caching,
    `seconds_per_call` a sequence, the output's trip to the CPU included). Judging is extra."""
    if seconds_per_call < 0 or seconds_per_step < 0:
        raise ValueError("times must be >= 0")
    shards = -(-samples // shard_size)
    return sum(samples * expected_nfe(s.steps, length, schedule) * seconds_per_call + shards * s.steps * seconds_per_step for s in settings)


PUBLIC = {"mdlm": "kuleshov-group/mdlm-owt", "sedd": "louaaron/sedd-small", "judge": DEFAULT_JUDGE}


def locate(name) -> Path | None:
    """A local folder `name`, or the Hugging Face cache's copy of hub id `name`; None when
    neither is on this machine. Never downloads."""
    path = Path(str(name)).expanduser()
    if path.is_dir():
        return path
    try:
        import huggingface_hub
    except ImportError:
        return None
    try:
        return Path(huggingface_hub.snapshot_download(repo_id=str(name), local_files_only=True))
    except Exception:  # not in the cache (or not a valid id): not here
        return None


# --- loading ----------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def _shown_name(source) -> str:
    """A source as results may show it: a hub id as it is, a local path by its last part
    (results carry no machine paths; the files' hashes identify them)."""
    path = Path(str(source)).expanduser()
    return path.name if path.exists() else str(source)


def load_denoiser(source, device="cpu", *, schedule: str = "loglinear", ema: bool = True, max_batch: int = 8):
    """The sampler's denoiser and its provenance, from a folder (local or hub id) or a
    Lightning .ckpt. MDLM networks get the "subs" parameterisation, SEDD networks the
    score's; a causal network is refused (it is a judge)."""
    path = Path(str(source)).expanduser()
    if path.suffix == ".ckpt":
        if not path.is_file():
            raise CheckpointNotFoundError(
                f"no Lightning checkpoint {source}: copy the .ckpt file of MDLM's training code here, "
                "or give a folder in the Hugging Face layout (config.json + model.safetensors), e.g. kuleshov-group/mdlm-owt")
        network, files = load_lightning_checkpoint(path, ema=ema, device=device), [path]
        form = "lightning"
    else:
        folder = _folder(source)
        network = load_pretrained(folder, device)
        files = [folder / n for n in (CONFIG_NAME, WEIGHTS_NAME, TORCH_WEIGHTS_NAME) if (folder / n).is_file()]
        form = "folder"
    kind = network.config.kind
    if kind == "ar":
        raise CheckpointError(f"{source} holds a causal (AR) network: it is a judge (--judge), not a denoiser")
    denoiser = (SubsDenoiser if kind == "mdlm" else ScoreDenoiser)(network, schedule, max_batch=max_batch)
    provenance = {
        "source": _shown_name(source),
        "form": form,
        "kind": kind,
        "ema": ema if form == "lightning" else None,
        "config": dataclasses.asdict(network.config),
        "parameters": sum(p.numel() for p in network.parameters()),
        "sha256": {f.name: _sha256(f) for f in files},
    }
    return denoiser, provenance


def _is_project_causal(source) -> bool:
    config = Path(str(source)).expanduser() / CONFIG_NAME
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "ar"
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def project_judge(network, *, device="cpu", dtype: str = "float32", batch_size: int = 8, progress: bool = True) -> CausalLMJudge:
    """One of the project's causal networks as a judge of the generator's own token ids: every
    token scored, the first given the start token."""
    AutoregressiveModel(network)  # refuses anything but the causal twin

    def logits(ids, mask):
        # a chunk is the start id and model_length tokens; the last token's logits predict
        # nothing, so the network reads the others (at most model_length ids) and that row is 0.
        # The start id is never predicted: its logit is dropped, as AutoregressiveModel does.
        out = network(ids[:, :-1])[..., : network.config.extra_id]
        return torch.cat([out, out.new_zeros(out.shape[0], 1, out.shape[2])], 1)

    return CausalLMJudge(logits, context=network.config.model_length + 1, bos_id=network.config.extra_id,
                         device=device, dtype=dtype, batch_size=batch_size, progress=progress)


def load_judge(source=DEFAULT_JUDGE, device="cpu", *, dtype: str = "float32", batch_size: int = 8, local_files_only: bool = False,
               generator_tokenizer=None, progress: bool = True):
    """The judge and its provenance: a folder of the project's causal network (model_type
    "ar" in its config.json), else a `transformers` causal LM by hub name or folder."""
    if dtype not in DTYPES:
        raise ValueError(f"judge dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
    if _is_project_causal(source):
        network = load_pretrained(source, device)
        folder = Path(str(source)).expanduser()
        files = [folder / n for n in (CONFIG_NAME, WEIGHTS_NAME) if (folder / n).is_file()]
        judge = project_judge(network, device=device, dtype=dtype, batch_size=batch_size, progress=progress)
        return judge, {"source": _shown_name(source), "kind": "project causal network", "config": dataclasses.asdict(network.config),
                       "dtype": dtype, "sha256": {f.name: _sha256(f) for f in files}}
    judge = TransformersJudge.from_pretrained(str(source), generator_tokenizer=generator_tokenizer, local_files_only=local_files_only,
                                              device=device, dtype=dtype, batch_size=batch_size, progress=progress)
    folder = Path(judge.model.name_or_path)
    files = sorted(f for f in folder.glob("*") if f.suffix in (".safetensors", ".bin", ".json", ".txt")) if folder.is_dir() else []
    return judge, {"source": _shown_name(source), "kind": f"transformers {type(judge.model).__name__}", "dtype": dtype,
                   "parameters": sum(p.numel() for p in judge.model.parameters()), "max_length": judge.max_length,
                   "sha256": {f.name: _sha256(f) for f in files}}


def _check_vocabularies(denoiser, judge) -> None:
    """A project judge reads the generator's ids, so their vocabularies must be one."""
    if isinstance(judge, TransformersJudge):
        vocab = len(judge.generator_tokenizer)
        if vocab != denoiser.vocab_size:
            raise ValueError(f"the generator has {denoiser.vocab_size} tokens but the tokenizer that decodes its samples has {vocab}: "
                             "give --generator-tokenizer (MDLM and SEDD: gpt2)")
    elif judge.bos_id is not None and judge.bos_id != denoiser.vocab_size:
        raise ValueError(f"the judge knows {judge.bos_id} tokens, the generator {denoiser.vocab_size}: they do not share a vocabulary")


# --- the run ---------------------------------------------------------------------------------------
def run_setting(denoiser, judge, setting: Setting, *, num_samples: int, length: int, seed: int, shard_size: int = 8,
                caching: str = "per_sequence", info: Process | None = None, progress: bool = True) -> dict | None:
    """One setting: `num_samples` samples in shards (each its own seed), each shard judged
    where it was drawn. On process 0: per-sequence NLL sums, token counts, entropies and NFE,
    the tokens, and the summary (pooled Gen PPL, mean entropy, with standard errors);
    None on the others."""
    if caching not in CACHING:
        raise ValueError(f"unknown caching {caching!r}: expected one of {CACHING}")
    schedule = denoiser.schedule

    def work(shard):
        start = time.perf_counter()
        out = ancestral_sample(denoiser, shard.size, length, setting.steps, setting.precision, shard.generator("cpu"),
                               schedule=schedule, caching=caching, progress=progress)
        sampled = time.perf_counter()
        scores = judge.score(out.tokens)
        return {"tokens": out.tokens, "nfe": out.nfe, "nll_sum": scores.nll_sum, "count": scores.count,
                "sample_seconds": sampled - start, "judge_seconds": time.perf_counter() - sampled}

    start = time.perf_counter()
    shards = run_sharded(work, num_samples, shard_size, setting_seed(seed, setting), info=info, progress=progress)
    if shards is None:
        return None
    tokens = torch.cat([s["tokens"] for s in shards])
    scores = Scores(torch.cat([s["nll_sum"] for s in shards]), torch.cat([s["count"] for s in shards]))
    entropy = sentence_entropy(tokens)
    nfe = torch.cat([s["nfe"] for s in shards])
    summary = {"gen_ppl": scores.gen_ppl(), "nll": scores.nll(), "entropy": Estimate(*mean_and_se(entropy)), "nfe": Estimate(*mean_and_se(nfe.double()))}
    return {
        "precision": setting.precision,
        "steps": setting.steps,
        "seed": setting_seed(seed, setting),
        "summary": {k: {"mean": v.mean, "se": v.se} for k, v in summary.items()},
        "per_sequence": {"nll_sum": scores.nll_sum, "count": scores.count, "entropy": entropy, "nfe": nfe},
        "tokens": tokens,
        "seconds": {"wall": time.perf_counter() - start, "sampling": sum(s["sample_seconds"] for s in shards),
                    "judging": sum(s["judge_seconds"] for s in shards)},
    }


def run(denoiser, judge, settings: list[Setting], *, num_samples: int, length: int, seed: int, shard_size: int = 8,
        caching: str = "per_sequence", info: Process | None = None, progress: bool = True) -> list[dict] | None:
    """Every setting in turn (run_setting); the list on process 0, None on the others."""
    if not settings:
        raise ValueError("no settings to run")
    _check_vocabularies(denoiser, judge)
    info = info or setup(denoiser.network.vocab_embed.embedding.device.type)
    out = []
    for setting in progress_bar(settings, desc="settings", show=progress and info.is_main):
        result = run_setting(denoiser, judge, setting, num_samples=num_samples, length=length, seed=seed, shard_size=shard_size,
                             caching=caching, info=info, progress=progress)
        out.append(result)
    return out if info.is_main else None


def table(results: list[dict], steps: int = TABLE_STEPS) -> list[dict]:
    """The blog's table from a run: each precision at `steps`, beside the paper's numbers."""
    rows = []
    for r in results:
        if r["steps"] == steps:
            s = r["summary"]
            paper = PAPER_TABLE.get(r["precision"], {}) if steps == TABLE_STEPS else {}
            rows.append({"precision": r["precision"], "samples": len(r["per_sequence"]["entropy"]),
                         "gen_ppl": s["gen_ppl"]["mean"], "gen_ppl_se": s["gen_ppl"]["se"],
                         "entropy": s["entropy"]["mean"], "entropy_se": s["entropy"]["se"],
                         "paper_gen_ppl": paper.get("gen_ppl"), "paper_entropy": paper.get("entropy")})
    return rows


def write_results(record: dict, out: str | None) -> Path:
    """The run's record as JSON, written whole: to `out`, or to figures/ (save_json)."""
    if out is None:
        return save_json(record, "10_paper_scale_run")
    return write_json(record, out)


# --- the command ------------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mdmlib.runs.paper_scale", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="denoiser: a folder (config.json + model.safetensors), a hub id (kuleshov-group/mdlm-owt, louaaron/sedd-small) or a Lightning .ckpt")
    p.add_argument("--judge", default=DEFAULT_JUDGE, help=f"a transformers causal LM (hub name or folder; default {DEFAULT_JUDGE}) or a folder of the project's causal network")
    p.add_argument("--generator-tokenizer", default=None, help="tokenizer that decodes the samples for a transformers judge (default: the judge's own; MDLM/SEDD share GPT-2's)")
    p.add_argument("--samples", type=int, default=PAPER_SAMPLES, help="samples per setting (paper: 64; the blog's table: 8)")
    p.add_argument("--length", type=int, default=PAPER_LENGTH)
    p.add_argument("--steps", type=int, nargs="+", default=list(PAPER_STEPS))
    p.add_argument("--precisions", nargs="+", default=["float32", "float64"], choices=PRECISIONS)
    p.add_argument("--trunc-steps", type=int, nargs="*", default=[TABLE_STEPS], help="step counts at which float64+trunc also runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None, help="the denoiser under bfloat16 autocast (default: on CUDA only, as the public code)")
    p.add_argument("--judge-dtype", default="float32", choices=tuple(DTYPES))
    p.add_argument("--shard-size", type=int, default=8, help="samples per shard (a process's unit of work and of CPU memory)")
    p.add_argument("--max-batch", type=int, default=8, help="sequences per network call")
    p.add_argument("--judge-batch", type=int, default=8)
    p.add_argument("--caching", default="per_sequence", choices=CACHING)
    p.add_argument("--schedule", default="loglinear", help="the noise schedule the network was trained with (MDLM, SEDD: loglinear)")
    p.add_argument("--raw-weights", action="store_true", help="a Lightning .ckpt's raw weights instead of its EMA")
    p.add_argument("--local-files-only", action="store_true", help="never try the hub")
    p.add_argument("--out", default=None, help="result JSON (default figures/10_paper_scale_run_<scale>.json)")
    p.add_argument("--no-progress", action="store_true")
    return p


def paper_run(checkpoint, judge=DEFAULT_JUDGE, settings: list[Setting] | None = None, *, samples: int = PAPER_SAMPLES, length: int = PAPER_LENGTH,
              seed: int = 0, device="auto", bf16: bool | None = None, judge_dtype: str = "float32", shard_size: int = 8, max_batch: int = 8,
              judge_batch: int = 8, caching: str = "per_sequence", schedule: str = "loglinear", ema: bool = True, local_files_only: bool = False,
              generator_tokenizer=None, progress: bool = True) -> dict | None:
    """Load the denoiser and the judge, run every setting (the paper's by default), and
    return the record: provenance, the blog's table, every setting's results. Under
    torchrun, process 0 returns it and the others None."""
    if device == "cuda":
        resolve_device("cuda")  # DeviceUnavailableError before anything is loaded
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    settings = paper_settings() if settings is None else list(settings)
    info = setup(None if device == "auto" else device)
    denoiser, checkpoint_info = load_denoiser(checkpoint, info.device, schedule=schedule, ema=ema, max_batch=max_batch)
    denoiser.network.bf16_autocast = bf16
    judge, judge_info = load_judge(judge, info.device, dtype=judge_dtype, batch_size=judge_batch, local_files_only=local_files_only,
                                   generator_tokenizer=generator_tokenizer, progress=progress and info.is_main)
    results = run(denoiser, judge, settings, num_samples=samples, length=length, seed=seed, shard_size=shard_size,
                  caching=caching, info=info, progress=progress)
    if not info.is_main:
        return None
    on_bf16 = bf16 if bf16 is not None else info.device.type == "cuda"
    return {
        "provenance": {
            "checkpoint": checkpoint_info,
            "judge": judge_info,
            "processes": info.world_size,
            "dtypes": {"network": "bfloat16 autocast" if on_bf16 else "float32", "judge": judge_dtype,
                       "sampler": "per setting (its precision)", "sampler_arithmetic": SAMPLER_ARITHMETIC},
            "scale": current_scale(),
            "seed": seed,
            "settings": {"samples": samples, "length": length, "shard_size": shard_size, "caching": caching,
                         "schedule": schedule, "grid": [s.name for s in settings]},
            **provenance(info.device),
        },
        "table": table(results),
        "results": results,
    }


def main(argv: list[str] | None = None) -> dict | None:
    args = parser().parse_args(argv)
    try:
        record = paper_run(args.checkpoint, args.judge, grid(args.steps, args.precisions, args.trunc_steps), samples=args.samples,
                           length=args.length, seed=args.seed, device=args.device, bf16=args.bf16, judge_dtype=args.judge_dtype,
                           shard_size=args.shard_size, max_batch=args.max_batch, judge_batch=args.judge_batch, caching=args.caching,
                           schedule=args.schedule, ema=not args.raw_weights, local_files_only=args.local_files_only,
                           generator_tokenizer=args.generator_tokenizer, progress=not args.no_progress)
    finally:
        teardown()
    if record is None:
        return None
    path = write_results(record, args.out)
    print(f"wrote {path}")
    for row in record["table"]:
        paper = f"  (paper: {row['paper_gen_ppl']}, {row['paper_entropy']})" if row["paper_gen_ppl"] else ""
        print(f"{row['precision']:14s} Gen PPL {row['gen_ppl']:.2f} ± {row['gen_ppl_se']:.2f}, entropy {row['entropy']:.3f} ± {row['entropy_se']:.3f}{paper}")
    return record


if __name__ == "__main__":
    try:
        main()
    except (ValueError, JudgeNotFoundError, ImportError) as e:  # bad input, checkpoints, a missing judge or GPU
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
