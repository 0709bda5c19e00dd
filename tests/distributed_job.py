"""A small sampling-and-judging job for tests/infra/test_distributed.py: exact samples of a tiny
synthetic language, judged by its exact NLL. Run under torchrun, or called in-process.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/distributed_job.py OUT.pt
"""
import sys

import torch

from mdmlib.infra.distributed import Process, run_sharded, setup, teardown
from mdmlib.judging.judges import ExactJudge
from mdmlib.mdm.samplers import exact_sample
from mdmlib.language.synthetic import ExactDenoiser, LanguageSpec, MarkovLanguage

NUM_SAMPLES, SHARD_SIZE, SEED = 10, 3, 11  # shards of 3, 3, 3 and 1 samples
LENGTH, STEPS = 12, 16


def job(info: Process) -> list | None:
    language = MarkovLanguage(LanguageSpec(vocab_size=30, num_classes=4, seed=2))
    denoiser = ExactDenoiser(language, dtype=torch.float64)
    judge = ExactJudge(language)

    def work(shard):
        s = exact_sample(denoiser, shard.size, LENGTH, STEPS, shard.generator(info.device), progress=False)
        return {"tokens": s.tokens, "nfe": s.nfe, "nll": judge.score(s.tokens).nll_sum, "rank": info.rank}

    return run_sharded(work, NUM_SAMPLES, SHARD_SIZE, SEED, info=info, progress=False)


if __name__ == "__main__":
    torch.set_num_threads(1)  # as in the in-process run it is compared with
    info = setup("cpu")
    results = job(info)
    if info.is_main:
        torch.save(results, sys.argv[1])
    teardown()
