"""The paper's scale: samples of a masked diffusion checkpoint judged by a causal LM, at the
paper's settings, on the CPU, one GPU or several.

    python -m mdmlib.tools.paper_scale --checkpoint hf://kuleshov-group/mdlm-owt --judge hf://gpt2-large --device cuda   (the command line)
    torchrun --standalone --nproc_per_node=8 -m mdmlib.tools.paper_scale --checkpoint ./mdlm-owt --judge ./gpt2-large

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

Caching (`resolve_caching`): "auto", the default, caches per sequence for a time-agnostic
network (MDLM's) and evaluates a time-conditioned one (SEDD's) at every step ("none"), as
the sampler's caching is valid only when the output does not depend on t; per_sequence or
per_batch on a time-conditioned network is refused unless `allow_stale_time` names it.

Results are written whole (mdmlib.infra.results) with their provenance: the checkpoint (as named,
its config, the SHA-256 of its weight files), the judge (likewise), the device, the dtypes,
the scale, the seed, the versions of Python, torch, transformers and mdmlib, and the git
commit of the code when it runs from a clone. With `kept` (the command line's OUT.partial/),
each setting's result is kept as it finishes, and a rerun with the same checkpoint, judge,
parameters, code and environment reuses it (and says so).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from mdmlib.infra.fingerprint import code_fingerprint
from mdmlib.infra.provenance import environment, provenance
from mdmlib.infra.seeds import derive_seed
from mdmlib.infra.distributed import Process, run_sharded, setup
from mdmlib.judging.judges import DEFAULT_JUDGE, Scores
from mdmlib.judging.loading import HUB_JUDGE, check_vocabularies, load_judge
from mdmlib.mdm.step import PRECISIONS
from mdmlib.stats.metrics import Estimate, sentence_entropy
from mdmlib.models import resolve_device
from mdmlib.models.loading import load_denoiser
from mdmlib.infra.progress import progress as progress_bar
from mdmlib.infra.results import WRITTEN_BY, CacheWarning, KeptParts, check_output_file, figures_dir, result_name, write_json
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
TOOL = "mdmlib.runs.paper_scale"  # the "written_by" of its result files and kept settings
CACHINGS = ("auto",) + CACHING


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
    """The seed of one setting's run: the run's seed, the precision and the steps (mdmlib.infra.seeds)."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return derive_seed("setting", seed, setting.precision, setting.steps)


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


# --- the run ---------------------------------------------------------------------------------------
def resolve_caching(caching: str, denoiser, allow_stale_time: bool = False) -> str:
    """The sampler's caching for this denoiser: "auto" is per_sequence for a time-agnostic
    network and none for a time-conditioned one (`denoiser.time_conditioned`), whose cached
    output would be used at stale times; per_sequence or per_batch on a time-conditioned
    network is refused unless `allow_stale_time`."""
    if caching not in CACHINGS:
        raise ValueError(f"unknown caching {caching!r}: expected one of {CACHINGS}")
    conditioned = bool(getattr(denoiser, "time_conditioned", False))  # the samplers' convention: undeclared is time-agnostic
    if caching == "auto":
        return "none" if conditioned else "per_sequence"
    if conditioned and caching != "none" and not allow_stale_time:
        raise ValueError(f"caching {caching!r} reuses the network's output at stale times, and this network is time-conditioned "
                         "(its output depends on t): use caching 'auto' or 'none', or ask for it by name with --allow-stale-time "
                         "(allow_stale_time=True)")
    return caching


def run_setting(denoiser, judge, setting: Setting, *, num_samples: int, length: int, seed: int, shard_size: int = 8,
                caching: str = "auto", allow_stale_time: bool = False, info: Process | None = None, progress: bool = True) -> dict | None:
    """One setting: `num_samples` samples in shards (each its own seed), each shard judged
    where it was drawn. On process 0: per-sequence NLL sums, token counts, entropies and NFE,
    the tokens, and the summary (pooled Gen PPL, mean entropy, with standard errors);
    None on the others."""
    caching = resolve_caching(caching, denoiser, allow_stale_time)
    schedule = denoiser.schedule

    def work(shard):
        start = time.perf_counter()
        out = ancestral_sample(denoiser, shard.size, length, setting.steps, setting.precision, shard.generator("cpu"),
                               schedule=schedule, caching=caching, allow_stale_time=allow_stale_time, progress=progress)
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
        caching: str = "auto", allow_stale_time: bool = False, info: Process | None = None, progress: bool = True,
        kept: KeptParts | None = None, run_key: dict | None = None) -> list[dict] | None:
    """Every setting in turn (run_setting); the list on process 0, None on the others. With
    `kept`, each finished setting is kept there under `run_key` (the run's parameters), and
    settings kept by a run of the same key are reused."""
    if not settings:
        raise ValueError("no settings to run")
    check_vocabularies(denoiser, judge)
    caching = resolve_caching(caching, denoiser, allow_stale_time)
    info = info or setup(denoiser.network.vocab_embed.embedding.device.type)
    reused = _reused(kept, run_key, settings, info)
    out = []
    for setting in progress_bar(settings, desc="settings", show=progress and info.is_main):
        if setting.name in reused:
            out.append(reused[setting.name])
            continue
        result = run_setting(denoiser, judge, setting, num_samples=num_samples, length=length, seed=seed, shard_size=shard_size,
                             caching=caching, allow_stale_time=allow_stale_time, info=info, progress=progress)
        if kept is not None and info.is_main:
            kept.put(setting.name, run_key, _kept_form(result))
        out.append(result)
    return out if info.is_main else None


_DTYPES = {"int64": torch.int64, "int32": torch.int32, "float32": torch.float32, "float64": torch.float64}


def _kept_form(result: dict) -> dict:
    """A setting's result as kept: its JSON and each tensor's dtype, so that it comes back as it was made."""
    tensors = {"tokens": result["tokens"], **{f"per_sequence.{k}": v for k, v in result["per_sequence"].items()}}
    return {"result": result, "dtypes": {k: str(v.dtype).removeprefix("torch.") for k, v in tensors.items()}}


def _from_kept(kept: dict) -> dict:
    result, dtypes = dict(kept["result"]), kept["dtypes"]
    result["tokens"] = torch.tensor(result["tokens"], dtype=_DTYPES[dtypes["tokens"]])
    result["per_sequence"] = {k: torch.tensor(v, dtype=_DTYPES[dtypes[f"per_sequence.{k}"]]) for k, v in result["per_sequence"].items()}
    return result


def _reused(kept: KeptParts | None, run_key: dict | None, settings: list[Setting], info: Process) -> dict:
    """The settings a run of the same key kept, by name (process 0 reads them and says how
    many; the others learn their names)."""
    if kept is None:
        return {}
    if run_key is None:
        raise ValueError("kept settings need the run's key (run_key) to be reused safely")
    found = {}
    if info.is_main:
        for s in settings:
            part = kept.get(s.name, run_key)
            try:
                found[s.name] = _from_kept(part) if part is not None else None
            except (KeyError, TypeError, ValueError, RuntimeError) as err:
                warnings.warn(f"{kept.folder}: the kept setting {s.name} does not read back ({type(err).__name__}: {err}): computing it again", CacheWarning)
                found[s.name] = None
        found = {k: v for k, v in found.items() if v is not None}
        if found:
            print(f"resuming: {len(found)} of {len(settings)} settings reused from {kept.folder} ({', '.join(found)}; same checkpoint, "
                  "judge, parameters, code and environment)", flush=True)
    if info.world_size > 1:  # every process must skip the same settings
        names = [sorted(found)]
        dist.broadcast_object_list(names, src=0)
        found = found if info.is_main else dict.fromkeys(names[0])
    return found


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


def output_path(out=None) -> Path:
    """Where the run's record goes: `out`, or figures/10_paper_scale_run[_<scale>].json;
    checked before any work (`check_output_file`: never a file this runner did not write)."""
    return check_output_file(figures_dir() / f"{result_name('10_paper_scale_run')}.json" if out is None else out, TOOL)


def kept_folder(out: Path) -> Path:
    """The folder beside the output where finished settings are kept until the run ends."""
    return Path(out).with_name(Path(out).name + ".partial")


def write_results(record: dict, out=None) -> Path:
    """The run's record as JSON, written whole, marked as this runner's: to `out`, or to figures/."""
    return write_json({**record, WRITTEN_BY: TOOL}, output_path(out))


def paper_run(checkpoint, judge=HUB_JUDGE, settings: list[Setting] | None = None, *, samples: int = PAPER_SAMPLES, length: int = PAPER_LENGTH,
              seed: int = 0, device="auto", bf16: bool | None = None, judge_dtype: str = "float32", shard_size: int = 8, max_batch: int = 8,
              judge_batch: int = 8, caching: str = "auto", allow_stale_time: bool = False, schedule: str = "loglinear", ema: bool = True,
              local_files_only: bool = False, generator_tokenizer=None, progress: bool = True, kept: KeptParts | None = None) -> dict | None:
    """Load the denoiser and the judge, run every setting (the paper's by default), and
    return the record: provenance, the blog's table, every setting's results. Under
    torchrun, process 0 returns it and the others None. With `kept`, each finished setting
    is kept there, and those a run of the same parameters kept are reused."""
    if device == "cuda":
        resolve_device("cuda")  # DeviceUnavailableError before anything is loaded
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    settings = paper_settings() if settings is None else list(settings)
    info = setup(None if device == "auto" else device)
    denoiser, checkpoint_info = load_denoiser(checkpoint, info.device, schedule=schedule, ema=ema, max_batch=max_batch,
                                               local_files_only=local_files_only)
    denoiser.network.bf16_autocast = bf16
    caching = resolve_caching(caching, denoiser, allow_stale_time)  # refused before the judge is loaded
    judge, judge_info = load_judge(judge, info.device, dtype=judge_dtype, batch_size=judge_batch, local_files_only=local_files_only,
                                   generator_tokenizer=generator_tokenizer, progress=progress and info.is_main)
    on_bf16 = bf16 if bf16 is not None else info.device.type == "cuda"
    run_key = {"checkpoint": checkpoint_info, "judge": judge_info, "samples": samples, "length": length, "seed": seed, "shard_size": shard_size,
               "max_batch": max_batch, "judge_batch": judge_batch, "caching": caching, "schedule": schedule, "bf16": on_bf16,
               "judge_dtype": judge_dtype, "device": info.device.type, "scale": current_scale(), "code": code_fingerprint(__name__),
               "environment": environment()}
    results = run(denoiser, judge, settings, num_samples=samples, length=length, seed=seed, shard_size=shard_size,
                  caching=caching, allow_stale_time=allow_stale_time, info=info, progress=progress, kept=kept, run_key=run_key)
    if not info.is_main:
        return None
    record = provenance(info.device)  # versions, environment, device name, git commit
    return {
        "provenance": {
            "checkpoint": checkpoint_info,
            "judge": judge_info,
            "dtypes": {"network": "bfloat16 autocast" if on_bf16 else "float32", "judge": judge_dtype,
                       "sampler": "per setting (its precision)", "sampler_arithmetic": SAMPLER_ARITHMETIC},
            "scale": current_scale(),
            "seed": seed,
            "settings": {"samples": samples, "length": length, "shard_size": shard_size, "caching": caching,
                         "schedule": schedule, "grid": [s.name for s in settings]},
            **record,
            "device": {"type": info.device.type, "name": record["device"], "processes": info.world_size},
        },
        "table": table(results),
        "results": results,
    }
