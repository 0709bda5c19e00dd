"""A generator for the paper-scale run: a denoiser and its provenance from any checkpoint the
project's loaders read (a local folder in the Hugging Face layout; a hub id
"hf://owner/name[@revision]"; a Lightning .ckpt of MDLM's training code), with the SHA-256
of its files and, for a hub id, the revision asked for and the commit it resolved to."""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from mdmlib.models.checkpoints import (HUB_SCHEME, CheckpointError, CheckpointNotFoundError, load_lightning_checkpoint, load_pretrained,
                                       local_path, parse_hub_id)
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
    if isinstance(source, str) and source.startswith(HUB_SCHEME):
        return source
    path = Path(str(source)).expanduser()
    return path.name if path.exists() else str(source)


def source_record(network, source) -> dict:
    """Where a loaded network came from, as results show it: its name, the hub record
    ({repo_id, revision, commit}, or None for a local path) and the SHA-256 of its files."""
    where = network.source
    return {"source": shown_name(source), "hub": where["hub"], "sha256": {name: file_sha256(Path(where["folder"]) / name) for name in where["files"]}}


def load_denoiser(source, device="cpu", *, schedule: str = "loglinear", ema: bool = True, max_batch: int = 8, revision: str | None = None,
                  local_files_only: bool = False):
    """The sampler's denoiser and its provenance, from a folder (local, or a hub id
    "hf://owner/name[@revision]", `revision` pinning it too) or a local Lightning .ckpt.
    MDLM networks get the "subs" parameterisation, SEDD networks the score's; a causal
    network is refused (it is a judge)."""
    if not isinstance(ema, bool):
        raise TypeError(f"ema must be True or False, got {ema!r} (a {type(ema).__name__})")
    if parse_hub_id(source, revision) is None and local_path(source).suffix == ".ckpt":
        path = local_path(source)
        if not path.is_file():
            raise CheckpointNotFoundError(
                f"no Lightning checkpoint {source}: copy the .ckpt file of MDLM's training code here, "
                "or give a folder in the Hugging Face layout (config.json + model.safetensors), e.g. hf://kuleshov-group/mdlm-owt")
        network, form = load_lightning_checkpoint(path, ema=ema, device=device), "lightning"
    else:
        network, form = load_pretrained(source, device, revision=revision, local_files_only=local_files_only), "folder"
    kind = network.config.kind
    if kind == "ar":
        raise CheckpointError(f"{source} holds a causal (AR) network: it is a judge (--judge), not a denoiser")
    denoiser = (SubsDenoiser if kind == "mdlm" else ScoreDenoiser)(network, schedule, max_batch=max_batch)
    record = source_record(network, source)
    provenance = {
        "source": record["source"],
        "form": form,
        "kind": kind,
        "ema": ema if form == "lightning" else None,
        "config": dataclasses.asdict(network.config),
        "parameters": sum(p.numel() for p in network.parameters()),
        "sha256": record["sha256"],
        "hub": record["hub"],
    }
    return denoiser, provenance
