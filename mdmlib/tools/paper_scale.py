"""The paper-scale run's command line (mdmlib.runs.paper_scale holds the run):

    python -m mdmlib.tools.paper_scale --checkpoint ./mdlm-owt --judge ./gpt2-large --device cuda
    torchrun --standalone --nproc_per_node=8 -m mdmlib.tools.paper_scale --checkpoint ./mdlm-owt --judge ./gpt2-large
    mdmlib-paper-scale ...   (the same, installed as a console script)
"""
from __future__ import annotations

import argparse
import sys

from mdmlib.infra.distributed import teardown
from mdmlib.judging.judges import DEFAULT_JUDGE, DTYPES, JudgeNotFoundError
from mdmlib.mdm.samplers import CACHING
from mdmlib.mdm.step import PRECISIONS
from mdmlib.runs import paper_scale


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mdmlib.tools.paper_scale", description=paper_scale.__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="denoiser: a folder (config.json + model.safetensors), a hub id (kuleshov-group/mdlm-owt, louaaron/sedd-small) or a Lightning .ckpt")
    p.add_argument("--judge", default=DEFAULT_JUDGE, help=f"a transformers causal LM (hub name or folder; default {DEFAULT_JUDGE}) or a folder of the project's causal network")
    p.add_argument("--generator-tokenizer", default=None, help="tokenizer that decodes the samples for a transformers judge (default: the judge's own; MDLM/SEDD share GPT-2's)")
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
    p.add_argument("--caching", default="per_sequence", choices=CACHING)
    p.add_argument("--schedule", default="loglinear", help="the noise schedule the network was trained with (MDLM, SEDD: loglinear)")
    p.add_argument("--raw-weights", action="store_true", help="a Lightning .ckpt's raw weights instead of its EMA")
    p.add_argument("--local-files-only", action="store_true", help="never try the hub")
    p.add_argument("--out", default=None, help="result JSON (default figures/10_paper_scale_run_<scale>.json)")
    p.add_argument("--no-progress", action="store_true")
    return p


def run_command(argv: list[str] | None = None) -> dict | None:
    """Run the command; return the record (None on processes other than the first)."""
    args = parser().parse_args(argv)
    try:
        record = paper_scale.paper_run(args.checkpoint, args.judge, paper_scale.grid(args.steps, args.precisions, args.trunc_steps), samples=args.samples,
                           length=args.length, seed=args.seed, device=args.device, bf16=args.bf16, judge_dtype=args.judge_dtype,
                           shard_size=args.shard_size, max_batch=args.max_batch, judge_batch=args.judge_batch, caching=args.caching,
                           schedule=args.schedule, ema=not args.raw_weights, local_files_only=args.local_files_only,
                           generator_tokenizer=args.generator_tokenizer, progress=not args.no_progress)
    finally:
        teardown()
    if record is None:
        return None
    path = paper_scale.write_results(record, args.out)
    print(f"wrote {path}")
    for row in record["table"]:
        paper = f"  (paper: {row['paper_gen_ppl']}, {row['paper_entropy']})" if row["paper_gen_ppl"] else ""
        print(f"{row['precision']:14s} Gen PPL {row['gen_ppl']:.2f} ± {row['gen_ppl_se']:.2f}, entropy {row['entropy']:.3f} ± {row['entropy_se']:.3f}{paper}")
    return record


def main(argv: list[str] | None = None) -> int:
    try:
        run_command(argv)
    except (ValueError, JudgeNotFoundError, ImportError) as e:  # bad input, checkpoints, a missing judge or GPU
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
