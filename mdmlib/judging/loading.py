"""A judge for the paper-scale run and its provenance: a folder of the project's causal network
(model_type "ar"), or a `transformers` causal LM by hub name or folder."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from mdmlib.judging.judges import DEFAULT_JUDGE, DTYPES, CausalLMJudge, TransformersJudge
from mdmlib.models import AutoregressiveModel, load_pretrained
from mdmlib.models.checkpoints import CONFIG_NAME, WEIGHTS_NAME
from mdmlib.models.loading import file_sha256, shown_name


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
        return judge, {"source": shown_name(source), "kind": "project causal network", "config": dataclasses.asdict(network.config),
                       "dtype": dtype, "sha256": {f.name: file_sha256(f) for f in files}}
    judge = TransformersJudge.from_pretrained(str(source), generator_tokenizer=generator_tokenizer, local_files_only=local_files_only,
                                              device=device, dtype=dtype, batch_size=batch_size, progress=progress)
    folder = Path(judge.model.name_or_path)
    files = sorted(f for f in folder.glob("*") if f.suffix in (".safetensors", ".bin", ".json", ".txt")) if folder.is_dir() else []
    return judge, {"source": shown_name(source), "kind": f"transformers {type(judge.model).__name__}", "dtype": dtype,
                   "parameters": sum(p.numel() for p in judge.model.parameters()), "max_length": judge.max_length,
                   "sha256": {f.name: file_sha256(f) for f in files}}


def check_vocabularies(denoiser, judge) -> None:
    """A project judge reads the generator's ids, so their vocabularies must be one."""
    if isinstance(judge, TransformersJudge):
        vocab = len(judge.generator_tokenizer)
        if vocab != denoiser.vocab_size:
            raise ValueError(f"the generator has {denoiser.vocab_size} tokens but the tokenizer that decodes its samples has {vocab}: "
                             "give --generator-tokenizer (MDLM and SEDD: gpt2)")
    elif judge.bos_id is not None and judge.bos_id != denoiser.vocab_size:
        raise ValueError(f"the judge knows {judge.bos_id} tokens, the generator {denoiser.vocab_size}: they do not share a vocabulary")
