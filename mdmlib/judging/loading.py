"""A judge for the paper-scale run and its provenance: a folder of the project's causal network
(model_type "ar"), or a `transformers` causal LM, each a local folder or a hub id.

As for checkpoints (mdmlib.models.checkpoints), a path is always local and a missing one a
JudgeNotFoundError; only "hf://name[@revision]" is downloaded (by default HUB_JUDGE, GPT-2
Large at "main"), and the provenance records the revision and the commit it resolved to.
A generator tokenizer named by a string follows the same rule."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from mdmlib.judging.judges import DEFAULT_JUDGE, DTYPES, CausalLMJudge, JudgeNotFoundError, TransformersJudge
from mdmlib.models import AutoregressiveModel, CheckpointNotFoundError, load_pretrained
from mdmlib.models.checkpoints import CONFIG_NAME, HUB_SCHEME, REPO_ID, hub_snapshot, local_path, parse_hub_id
from mdmlib.models.loading import file_sha256, shown_name, source_record

HUB_JUDGE = HUB_SCHEME + DEFAULT_JUDGE  # "hf://gpt2-large", the paper's judge
# what a transformers causal LM needs: config, tokenizer files, weights (not the TF, Flax or ONNX copies)
TOKENIZER_FILES = ("*.json", "*.txt", "*.model")
JUDGE_FILES = (*TOKENIZER_FILES, "*.safetensors")
JUDGE_TORCH_FILES = (*TOKENIZER_FILES, "pytorch_model*.bin")  # for a repository without safetensors weights


def _folder(source, revision, local_files_only: bool, what: str, patterns=JUDGE_FILES) -> tuple[Path, dict | None]:
    """The local folder of a judge or tokenizer, downloaded only for a hub id; and its hub record."""
    hub = parse_hub_id(source, revision)
    if hub is None:
        path = local_path(source)
        if not path.is_dir():
            ask = f"; to download {str(source)!r} from it, name it '{HUB_SCHEME}{source}'" if REPO_ID.fullmatch(str(source)) else ""
            raise JudgeNotFoundError(f"no folder {path} for the {what} (a local path is never looked up on the hub{ask})")
        return path, None
    try:
        folder, record = hub_snapshot(*hub, patterns, local_files_only=local_files_only)
        if patterns == JUDGE_FILES and not any(folder.glob("*.safetensors")):
            folder, record = hub_snapshot(*hub, JUDGE_TORCH_FILES, local_files_only=local_files_only)
    except CheckpointNotFoundError as e:
        raise JudgeNotFoundError(f"the {what}: {e}") from e
    return folder, record


def _is_project_causal(folder: Path) -> bool:
    """Whether the folder holds one of the project's causal networks (model_type "ar"); its
    config.json must be there and be a JSON object (transformers would fail obscurely)."""
    config = folder / CONFIG_NAME
    if not config.is_file():
        raise JudgeNotFoundError(f"{folder} has no {CONFIG_NAME}: it is not a judge's folder")
    try:
        data = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{config} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{config} must hold a JSON object, got a {type(data).__name__}")
    return data.get("model_type") == "ar"


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


def load_judge(source=HUB_JUDGE, device="cpu", *, dtype: str = "float32", batch_size: int = 8, local_files_only: bool = False,
               generator_tokenizer=None, progress: bool = True, revision: str | None = None):
    """The judge and its provenance: a folder of the project's causal network (model_type
    "ar" in its config.json), else a `transformers` causal LM; either a local folder or a hub
    id "hf://name[@revision]" (`revision` pins it too; `local_files_only`: the hub cache only)."""
    if dtype not in DTYPES:
        raise ValueError(f"judge dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
    folder, hub = _folder(source, revision, local_files_only, "judge")
    if _is_project_causal(folder):
        network = load_pretrained(folder, device)
        judge = project_judge(network, device=device, dtype=dtype, batch_size=batch_size, progress=progress)
        return judge, {**source_record(network, source), "hub": hub, "kind": "project causal network",
                       "config": dataclasses.asdict(network.config), "dtype": dtype}
    tokenizer_source = None
    if isinstance(generator_tokenizer, (str, Path)):  # a name or folder (else a tokenizer object, or None: the judge's own)
        folder_of_tokenizer, tokenizer_hub = _folder(generator_tokenizer, None, local_files_only, "generator's tokenizer", TOKENIZER_FILES)
        tokenizer_source, generator_tokenizer = {"source": shown_name(generator_tokenizer), "hub": tokenizer_hub}, str(folder_of_tokenizer)
    judge = TransformersJudge.from_pretrained(str(folder), generator_tokenizer=generator_tokenizer, local_files_only=True,
                                              device=device, dtype=dtype, batch_size=batch_size, progress=progress)
    files = sorted(f for f in folder.glob("*") if f.suffix in (".safetensors", ".bin", ".json", ".txt"))
    return judge, {"source": shown_name(source), "hub": hub, "kind": f"transformers {type(judge.model).__name__}", "dtype": dtype,
                   "parameters": sum(p.numel() for p in judge.model.parameters()), "max_length": judge.max_length,
                   "generator_tokenizer": tokenizer_source, "sha256": {f.name: file_sha256(f) for f in files}}


def check_vocabularies(denoiser, judge) -> None:
    """A project judge reads the generator's ids, so their vocabularies must be one."""
    if isinstance(judge, TransformersJudge):
        vocab = len(judge.generator_tokenizer)
        if vocab != denoiser.vocab_size:
            raise ValueError(f"the generator has {denoiser.vocab_size} tokens but the tokenizer that decodes its samples has {vocab}: "
                             "give --generator-tokenizer (MDLM and SEDD: GPT-2's, hf://gpt2 or a folder holding it)")
    elif judge.bos_id is not None and judge.bos_id != denoiser.vocab_size:
        raise ValueError(f"the judge knows {judge.bos_id} tokens, the generator {denoiser.vocab_size}: they do not share a vocabulary")
