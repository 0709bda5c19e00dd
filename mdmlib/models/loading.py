"""A generator for the paper-scale run: a denoiser and its provenance from any checkpoint the
project's loaders read (a folder in the Hugging Face layout, local or a hub id; a Lightning
.ckpt of MDLM's training code), with the SHA-256 of its files."""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from mdmlib.models.checkpoints import (CONFIG_NAME, TORCH_WEIGHTS_NAME, WEIGHTS_NAME, CheckpointError, CheckpointNotFoundError,
                                       checkpoint_folder, load_lightning_checkpoint, load_pretrained)
from mdmlib.models.parameterization import ScoreDenoiser, SubsDenoiser


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def shown_name(source) -> str:
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
        folder = checkpoint_folder(source)
        network = load_pretrained(folder, device)
        files = [folder / n for n in (CONFIG_NAME, WEIGHTS_NAME, TORCH_WEIGHTS_NAME) if (folder / n).is_file()]
        form = "folder"
    kind = network.config.kind
    if kind == "ar":
        raise CheckpointError(f"{source} holds a causal (AR) network: it is a judge (--judge), not a denoiser")
    denoiser = (SubsDenoiser if kind == "mdlm" else ScoreDenoiser)(network, schedule, max_batch=max_batch)
    provenance = {
        "source": shown_name(source),
        "form": form,
        "kind": kind,
        "ema": ema if form == "lightning" else None,
        "config": dataclasses.asdict(network.config),
        "parameters": sum(p.numel() for p in network.parameters()),
        "sha256": {f.name: file_sha256(f) for f in files},
    }
    return denoiser, provenance
