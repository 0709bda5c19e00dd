"""Loading a generator for the paper-scale run (mdmlib.models.loading): a denoiser and its
provenance from a folder or a Lightning .ckpt, the files' hashes, the names results show,
and the errors that say what to do."""
import hashlib
import sys
import types

import pytest
import torch

from mdmlib.models import CheckpointError, CheckpointNotFoundError, DiTConfig, ScoreDenoiser, SubsDenoiser, build_network, save_pretrained
from mdmlib.models.loading import file_sha256, load_denoiser, shown_name

CONFIG = DiTConfig(vocab_size=40, model_length=12, hidden_dim=32, n_heads=2, n_blocks=2, cond_dim=16)


def _random(network, seed: int):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in network.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return network


def test_a_folder_gives_a_denoiser_with_its_provenance(tmp_path):
    network = _random(build_network(CONFIG), 0)
    save_pretrained(network, tmp_path / "tiny-mdlm")
    denoiser, info = load_denoiser(tmp_path / "tiny-mdlm", max_batch=3)
    assert isinstance(denoiser, SubsDenoiser) and denoiser.vocab_size == CONFIG.vocab_size - 1
    assert all(torch.equal(p, q) for p, q in zip(denoiser.network.parameters(), network.parameters()))
    assert (info["source"], info["form"], info["kind"], info["ema"]) == ("tiny-mdlm", "folder", "mdlm", None)
    assert info["parameters"] == sum(p.numel() for p in network.parameters()) and info["config"]["hidden_dim"] == 32
    # the hashes of the files that decide the network (config and weights), not of the provenance card
    assert set(info["sha256"]) == {"config.json", "model.safetensors"} and info["hub"] is None  # a local folder
    assert info["sha256"]["model.safetensors"] == hashlib.sha256((tmp_path / "tiny-mdlm" / "model.safetensors").read_bytes()).hexdigest()

    save_pretrained(_random(build_network(CONFIG.replace(kind="sedd", time_conditioning=True)), 1), tmp_path / "tiny-sedd")
    sedd, info = load_denoiser(tmp_path / "tiny-sedd")
    assert isinstance(sedd, ScoreDenoiser) and info["kind"] == "sedd"


def test_a_lightning_checkpoint_gives_its_ema_or_its_raw_weights(tmp_path):
    network = _random(build_network(CONFIG), 0)
    ema = [p + 1 for p in _random(build_network(CONFIG), 1).parameters()]
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"backbone." + k: v for k, v in network.state_dict().items()}, "ema": {"shadow_params": ema}}, path)
    denoiser, info = load_denoiser(path)
    assert (info["source"], info["form"], info["ema"]) == ("last.ckpt", "lightning", True)
    assert info["sha256"] == {"last.ckpt": file_sha256(path)}
    assert all(torch.equal(p, e) for p, e in zip(denoiser.network.parameters(), ema))
    raw, info = load_denoiser(path, ema=False)
    assert info["ema"] is False and all(torch.equal(p, q) for p, q in zip(raw.network.parameters(), network.parameters()))


def test_file_hashes_and_shown_names(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"x" * 100)
    assert file_sha256(tmp_path / "f.bin") == hashlib.sha256(b"x" * 100).hexdigest()
    assert shown_name("hf://kuleshov-group/mdlm-owt@main") == "hf://kuleshov-group/mdlm-owt@main"  # a hub id as it is
    assert shown_name(tmp_path / "f.bin") == "f.bin"  # a local path by its last part: results carry no machine paths


def test_missing_or_wrong_checkpoints_say_what_to_do(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=lambda **kw: asked.append(kw)))
    monkeypatch.chdir(tmp_path)  # so "kuleshov-group/mdlm-owt" is no local folder
    with pytest.raises(CheckpointNotFoundError, match="(?s)no folder kuleshov-group/mdlm-owt.*hf://kuleshov-group/mdlm-owt.*download kuleshov-group/mdlm-owt"):
        load_denoiser("kuleshov-group/mdlm-owt")
    assert asked == []  # a local path, never sent to the hub
    with pytest.raises(CheckpointNotFoundError, match="Lightning checkpoint"):
        load_denoiser(tmp_path / "last.ckpt")
    save_pretrained(build_network(CONFIG.replace(kind="ar")), tmp_path / "tiny-ar")
    with pytest.raises(CheckpointError, match="causal"):
        load_denoiser(tmp_path / "tiny-ar")
