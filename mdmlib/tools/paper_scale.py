"""The paper-scale run's command line (mdmlib.runs.paper_scale holds the run):

    python -m mdmlib.tools.paper_scale --checkpoint ./mdlm-owt --judge ./gpt2-large --device cuda
    torchrun --standalone --nproc_per_node=8 -m mdmlib.tools.paper_scale --checkpoint ./mdlm-owt --judge ./gpt2-large
    mdmlib-paper-scale ...   (the same, installed as a console script)

--out is checked before anything is loaded (its folder exists and is writable; it is not a
folder, nor a file this runner did not write). Each setting's result is kept in OUT.partial/
as it finishes, so an interrupted run (Ctrl-C) keeps what it finished and the same command
resumes from it; the record is written whole at the end and OUT.partial/ removed.
"""
from __future__ import annotations

import argparse
import sys

from mdmlib.infra.distributed import teardown
from mdmlib.judging.judges import DTYPES, JudgeNotFoundError
from mdmlib.judging.loading import HUB_JUDGE
from mdmlib.infra.results import KeptParts
from mdmlib.mdm.step import PRECISIONS
from mdmlib.runs import paper_scale


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mdmlib.tools.paper_scale", description=paper_scale.__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="denoiser: a local folder (config.json + model.safetensors), hf://owner/name[@revision] "
                   "(downloaded at that revision, default main; the commit is recorded) or a Lightning .ckpt")
    p.add_argument("--judge", default=HUB_JUDGE, help=f"a transformers causal LM (a local folder or hf://owner/name[@revision]; default {HUB_JUDGE}) "
                   "or a folder of the project's causal network")
    p.add_argument("--generator-tokenizer", default=None, help="tokenizer that decodes the samples for a transformers judge (default: the judge's own; MDLM/SEDD: hf://gpt2 or its folder)")
    p.add_argument("--samples", type=int, default=paper_scale.PAPER_SAMPLES, help="samples per setting (paper: 64; the blog's table: 8)")
    p.add_argument("--length", type=int, default=paper_scale.PAPER_LENGTH)
    p.add_argument("--steps", type=int, nargs="+", default=list(paper_scale.PAPER_STEPS))
    p.add_argument("--precisions", nargs="+", default=["float32", "float64"], choices=PRECISIONS)
    p.add_argument("--trunc-steps", type=int, nargs="*", default=[paper_scale.TABLE_STEPS], help="step counts at which float64+trunc also runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None, help="the denoiser under bfloat16 autocast (default: on CUDA only, as the public code)")
    p.add_argument("--judge-dtype", default="float32", choices=tuple(DTYPES))
    p.add_argument("--shard-size", type=int, default=8, help="samples per shard (a process's unit of work and of CPU memory)")
    p.add_argument("--max-batch", type=int, default=8, help="sequences per network call")
    p.add_argument("--judge-batch", type=int, default=8)
    p.add_argument("--caching", default="auto", choices=paper_scale.CACHINGS,
                   help="auto (default): per_sequence for a time-agnostic network (MDLM), none for a time-conditioned one (SEDD)")
    p.add_argument("--allow-stale-time", action="store_true",
                   help="allow per_sequence or per_batch caching on a time-conditioned network (its outputs are then reused at stale times)")
    p.add_argument("--schedule", default="loglinear", help="the noise schedule the network was trained with (MDLM, SEDD: loglinear)")
    p.add_argument("--raw-weights", action="store_true", help="a Lightning .ckpt's raw weights instead of its EMA")
    p.add_argument("--local-files-only", action="store_true", help="hf:// ids from the hub cache only, never downloaded")
    p.add_argument("--out", default=None, help="result JSON (default figures/10_paper_scale_run_<scale>.json); finished settings are kept in OUT.partial/ until the end")
    p.add_argument("--no-progress", action="store_true")
    return p


def run_command(argv: list[str] | None = None) -> dict | None:
    """Run the command; return the record (None on processes other than the first)."""
    args = parser().parse_args(argv)
    out = paper_scale.output_path(args.out)  # OutputError before any work
    kept = KeptParts(paper_scale.kept_folder(out), paper_scale.TOOL).check()
    try:
        record = paper_scale.paper_run(args.checkpoint, args.judge, paper_scale.grid(args.steps, args.precisions, args.trunc_steps), samples=args.samples,
                           length=args.length, seed=args.seed, device=args.device, bf16=args.bf16, judge_dtype=args.judge_dtype,
                           shard_size=args.shard_size, max_batch=args.max_batch, judge_batch=args.judge_batch, caching=args.caching,
                           allow_stale_time=args.allow_stale_time, schedule=args.schedule, ema=not args.raw_weights,
                           local_files_only=args.local_files_only, generator_tokenizer=args.generator_tokenizer,
                           progress=not args.no_progress, kept=kept)
    except KeyboardInterrupt:
        print(f"interrupted: the settings that finished are kept in {kept.folder}; run the same command again to resume", file=sys.stderr)
        raise
    finally:
        teardown()
    if record is None:
        return None
    path = paper_scale.write_results(record, out)
    kept.clear()
    print(f"wrote {path}")
    for row in record["table"]:
        paper = f"  (paper: {row['paper_gen_ppl']}, {row['paper_entropy']})" if row["paper_gen_ppl"] else ""
        print(f"{row['precision']:14s} Gen PPL {row['gen_ppl']:.2f} ± {row['gen_ppl_se']:.2f}, entropy {row['entropy']:.3f} ± {row['entropy_se']:.3f}{paper}")
    return record


def main(argv: list[str] | None = None) -> int:
    try:
        run_command(argv)
    except (ValueError, JudgeNotFoundError, ImportError) as e:  # bad input, checkpoints, outputs, a missing judge or GPU
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
