"""Checkpoints: the published folder layout read strictly, round trips, SEDD's layout,
Lightning files with EMA weights, pickles that would run code, and every broken variant
with its own error."""
import json
import os
import sys
import types

import pytest
import safetensors.torch
import torch

from mdmlib.models import (
    CheckpointNotFoundError,
    ConfigMismatchError,
    CorruptCheckpointError,
    DeviceUnavailableError,
    DiTConfig,
    MissingKeysError,
    ShapeMismatchError,
    UnexpectedKeysError,
    UnsafePickleError,
    build_network,
    load_lightning_checkpoint,
    load_pretrained,
    save_pretrained,
)
from reference_dit import published_layout, random_published_state

D, C, V, BLOCKS, HEADS, LENGTH = 32, 16, 11, 2, 4, 12
# config.json as the published MDLM folder has it: the model's fields plus what transformers adds
MDLM_CONFIG = {
    "architectures": ["MDLM"],
    "auto_map": {"AutoConfig": "configuration_mdlm.MDLMConfig", "AutoModelForMaskedLM": "modeling_mdlm.MDLM"},
    "cond_dim": C,
    "dropout": 0.1,
    "hidden_dim": D,
    "model_length": LENGTH,
    "model_type": "mdlm",
    "n_blocks": BLOCKS,
    "n_heads": HEADS,
    "return_dict": False,
    "time_conditioning": False,
    "torch_dtype": "float32",
    "transformers_version": "4.38.2",
    "vocab_size": V,
}
# SEDD's config.json: its whole training config, the network's sizes under "model"
SEDD_CONFIG = {
    "ngpus": 8,
    "tokens": V - 1,
    "graph": {"type": "absorb", "file": "data", "report_all": False},
    "noise": {"type": "loglinear", "sigma_min": 1e-4, "sigma_max": 20},
    "model": {"name": "small", "type": "ddit", "hidden_size": D, "cond_dim": C, "length": LENGTH, "n_blocks": BLOCKS, "n_heads": HEADS, "scale_by_sigma": True, "dropout": 0.1},
}
IDS = torch.randint(0, V, (3, 9), generator=torch.Generator().manual_seed(0))
SIGMA = torch.tensor([0.1, 1.0, 4.0])


def write_folder(path, config: dict, state: dict, name="model.safetensors"):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    if name.endswith(".safetensors"):
        safetensors.torch.save_file(state, str(path / name), metadata={"format": "pt"})
    else:
        torch.save(state, path / name)
    return path


def published_state(kind="mdlm", seed=1):
    return random_published_state(D, C, V, BLOCKS, HEADS, torch.Generator().manual_seed(seed), kind)


def logits(network):
    with torch.no_grad():
        return network(IDS) if network.config.kind == "ar" else network(IDS, SIGMA)


# --- the published layout, and round trips -------------------------------------------------------------
def test_a_folder_in_the_published_mdlm_layout_loads_strictly(tmp_path):
    state = published_state()
    network = load_pretrained(write_folder(tmp_path / "mdlm", MDLM_CONFIG, state))
    assert network.config == DiTConfig(vocab_size=V, model_length=LENGTH, hidden_dim=D, n_heads=HEADS, n_blocks=BLOCKS, cond_dim=C)
    assert not network.training
    loaded = network.state_dict()
    assert set("backbone." + k for k in loaded) == set(state)
    assert all(torch.equal(loaded[k.removeprefix("backbone.")], v) for k, v in state.items())
    assert network.source == {"folder": tmp_path / "mdlm", "files": ["config.json", "model.safetensors"], "hub": None}  # a local folder


@pytest.mark.parametrize("kind, time_conditioning", [("mdlm", False), ("mdlm", True), ("sedd", True), ("ar", False)])
def test_save_load_round_trip_gives_identical_logits(tmp_path, kind, time_conditioning):
    config = DiTConfig(vocab_size=V, model_length=LENGTH, hidden_dim=D, n_heads=HEADS, n_blocks=BLOCKS, cond_dim=C, kind=kind, time_conditioning=time_conditioning)
    network = build_network(config).eval()
    network.load_state_dict({k.removeprefix("backbone."): v for k, v in published_state(kind).items()})
    save_pretrained(network, tmp_path / "saved")
    again = load_pretrained(tmp_path / "saved")
    assert again.config == config and type(again) is type(network)
    assert torch.equal(logits(again), logits(network))
    written = safetensors.torch.load_file(str(tmp_path / "saved" / "model.safetensors"))
    assert [(k, tuple(v.shape)) for k, v in written.items()] == sorted(published_layout(D, C, V, BLOCKS, D // HEADS, kind))
    assert sorted(os.listdir(tmp_path / "saved")) == ["config.json", "model.safetensors", "provenance.json"]  # no temporary file left


def test_a_saved_folder_records_its_provenance_beside_the_config(tmp_path):
    network = build_network(DiTConfig(vocab_size=V, model_length=LENGTH, hidden_dim=D, n_heads=HEADS, n_blocks=BLOCKS, cond_dim=C))
    save_pretrained(network, tmp_path / "saved")
    record = json.loads((tmp_path / "saved" / "provenance.json").read_text())
    assert set(record) == {"versions", "environment", "device", "git"} and record["versions"]["torch"] == torch.__version__
    assert record["device"].startswith("CPU")
    assert "provenance" not in json.loads((tmp_path / "saved" / "config.json").read_text())  # config.json stays the public form
    (tmp_path / "saved" / "provenance.json").write_text("not even JSON")  # the loaders never read it
    assert load_pretrained(tmp_path / "saved").config == network.config


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_a_folder_in_seddss_layout_loads(tmp_path, weights):
    state = published_state("sedd")
    assert not any(k.startswith("backbone.") for k in state)
    network = load_pretrained(write_folder(tmp_path / "sedd", SEDD_CONFIG, state, weights))
    assert network.config.kind == "sedd" and network.config.time_conditioning and network.config.scale_by_sigma
    assert network.config.vocab_size == V  # the tokens plus the absorbing state
    assert all(torch.equal(network.state_dict()[k], v) for k, v in state.items())
    save_pretrained(network, tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["model"]["hidden_size"] == D


# --- broken folders, one error each ----------------------------------------------------------------
def _broken(tmp_path, change_state=None, change_config=None):
    state, config = published_state(), dict(MDLM_CONFIG)
    if change_state:
        change_state(state)
    if change_config:
        change_config(config)
    return write_folder(tmp_path / "broken", config, state)


def _raises_exactly(error_type, folder, *fragments):
    with pytest.raises(error_type) as info:
        load_pretrained(folder)
    assert type(info.value) is error_type  # its own type, not a relative
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    return str(info.value)


def test_missing_keys_are_listed(tmp_path):
    def drop(state):
        del state["backbone.blocks.1.norm2.weight"], state["backbone.sigma_map.mlp.2.bias"]

    _raises_exactly(MissingKeysError, _broken(tmp_path, drop), "backbone.blocks.1.norm2.weight", "backbone.sigma_map.mlp.2.bias", "lacks 2")


def test_unexpected_keys_are_listed(tmp_path):
    def add(state):
        state["backbone.blocks.0.attn_qkv.bias"] = torch.zeros(3 * D)
        state["noise.sigma_max"] = torch.ones(1)

    _raises_exactly(UnexpectedKeysError, _broken(tmp_path, add), "backbone.blocks.0.attn_qkv.bias", "noise.sigma_max")


def test_wrong_shapes_are_named_with_expected_and_found(tmp_path):
    def reshape(state):
        state["backbone.blocks.1.mlp.0.bias"] = torch.zeros(3 * D)

    _raises_exactly(ShapeMismatchError, _broken(tmp_path, reshape), "backbone.blocks.1.mlp.0.bias", f"expected ({4 * D},)", f"got ({3 * D},)")


@pytest.mark.parametrize("field, value", [("hidden_dim", 2 * D), ("vocab_size", V + 5), ("n_blocks", BLOCKS + 1), ("n_heads", 2 * HEADS), ("cond_dim", 2 * C)])
def test_a_config_that_disagrees_with_the_weights(tmp_path, field, value):
    message = _raises_exactly(ConfigMismatchError, _broken(tmp_path, change_config=lambda c: c.update({field: value})), field)
    assert f"config {value}" in message


def test_the_causal_twins_config_on_mdlm_weights_disagrees(tmp_path):
    _raises_exactly(ConfigMismatchError, _broken(tmp_path, change_config=lambda c: c.update(model_type="ar")), "kind")


def test_mdlm_weights_read_as_sedd_say_what_is_wrong(tmp_path):
    folder = write_folder(tmp_path / "mixed", SEDD_CONFIG, published_state("mdlm"))
    _raises_exactly(MissingKeysError, folder, "backbone.", "MDLM checkpoint")


def test_a_truncated_weights_file_is_corrupt(tmp_path):
    folder = _broken(tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    _raises_exactly(CorruptCheckpointError, folder, "model.safetensors", "truncated or corrupt")
    (folder / "model.safetensors").write_bytes(b"\x00" * 7)
    _raises_exactly(CorruptCheckpointError, folder, "truncated or corrupt")


def test_a_corrupt_config_is_corrupt(tmp_path):
    folder = _broken(tmp_path)
    (folder / "config.json").write_text('{"hidden_dim": 32,')
    _raises_exactly(CorruptCheckpointError, folder, "config.json", "not valid JSON")


def test_missing_files_and_fields(tmp_path):
    folder = _broken(tmp_path)
    (folder / "model.safetensors").unlink()
    _raises_exactly(CheckpointNotFoundError, folder, "model.safetensors")
    folder = _broken(tmp_path, change_config=lambda c: c.pop("n_heads"))
    with pytest.raises(ValueError, match="n_heads"):
        load_pretrained(folder)
    folder = _broken(tmp_path, change_config=lambda c: c.update(n_heads=5))
    with pytest.raises(ValueError, match="describes no valid network"):
        load_pretrained(folder)
    _raises_exactly(CheckpointNotFoundError, tmp_path / "nowhere" / "at" / "all", "no folder")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_asked_for_where_there_is_none(tmp_path):
    folder = _broken(tmp_path)
    with pytest.raises(DeviceUnavailableError, match="CUDA was asked for"):
        load_pretrained(folder, device="cuda")
    with pytest.raises(DeviceUnavailableError):
        load_lightning_checkpoint(tmp_path / "any.ckpt", device="cuda:0")
    assert load_pretrained(folder, device="auto").vocab_embed.embedding.device.type == "cpu"


# --- the hub: only for an explicit hf:// id ----------------------------------------------------------------
from fake_hub import COMMIT, fake_hub  # noqa: E402


def test_a_missing_local_path_shaped_like_a_hub_id_never_reaches_the_hub(tmp_path, monkeypatch):
    calls = fake_hub(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        load_pretrained("ck/goood")
    assert isinstance(info.value, CheckpointNotFoundError) and calls == []
    message = str(info.value)
    assert message.startswith("no folder ck/goood") and "'hf://ck/goood'" in message  # says how to ask for the hub


def test_a_hub_id_without_huggingface_hub_says_how_to_fetch_it_by_hand(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if not installed
    with pytest.raises(CheckpointNotFoundError) as info:
        load_pretrained("hf://kuleshov-group/mdlm-owt")
    message = str(info.value)
    assert "huggingface_hub is not installed" in message
    assert "huggingface-cli download kuleshov-group/mdlm-owt --local-dir mdlm-owt" in message
    assert "git clone https://huggingface.co/kuleshov-group/mdlm-owt" in message
    assert "give its path (./mdlm-owt)" in message


def test_a_hub_id_downloads_at_its_revision_and_records_the_commit(tmp_path, monkeypatch):
    folder = write_folder(tmp_path / "snapshots" / COMMIT, MDLM_CONFIG, published_state())  # the hub cache's layout
    calls = fake_hub(monkeypatch, folder)
    network = load_pretrained("hf://kuleshov-group/mdlm-owt")
    assert calls[-1]["repo_id"] == "kuleshov-group/mdlm-owt" and calls[-1]["revision"] == "main"  # the default
    assert "model.safetensors" in calls[-1]["allow_patterns"] and calls[-1]["local_files_only"] is False
    assert network.source["hub"] == {"repo_id": "kuleshov-group/mdlm-owt", "revision": "main", "commit": COMMIT}
    assert network.config.hidden_dim == D
    load_pretrained("hf://kuleshov-group/mdlm-owt@v1.0")
    assert calls[-1]["revision"] == "v1.0"
    network = load_pretrained("hf://kuleshov-group/mdlm-owt", revision=COMMIT, local_files_only=True)
    assert (calls[-1]["revision"], calls[-1]["local_files_only"]) == (COMMIT, True) and network.source["hub"]["revision"] == COMMIT
    with pytest.raises(ValueError, match="pins the revision"):
        load_pretrained("hf://kuleshov-group/mdlm-owt@v1.0", revision="v2.0")
    with pytest.raises(ValueError, match="is for hub ids"):
        load_pretrained(folder, revision="main")
    with pytest.raises(ValueError, match="not a hub id"):
        load_pretrained("hf://a/b/c")
    assert len(calls) == 3


def test_a_hub_id_that_cannot_be_fetched_says_how_to_fetch_it_by_hand(monkeypatch):
    fake_hub(monkeypatch, error=ConnectionError("no network"))
    with pytest.raises(CheckpointNotFoundError, match="(?s)no network.*huggingface-cli download louaaron/sedd-small --revision abc123"):
        load_pretrained("hf://louaaron/sedd-small@abc123")


# --- Lightning checkpoints ------------------------------------------------------------------------------
def _lightning(path, extra=None, ema_seed=2, legacy=False):
    """A .ckpt as MDLM's training code writes it: the module's state_dict (the network
    under backbone.), the EMA's shadow list in parameter order, and training state."""
    state = published_state()
    shadow = [v for k, v in published_state(seed=ema_seed).items() if not k.endswith("inv_freq")]
    ckpt = {
        "epoch": 3,
        "global_step": 1000,
        "pytorch-lightning_version": "2.2.1",
        "state_dict": state,
        "ema": {"decay": 0.9999, "num_updates": 1000, "shadow_params": shadow},
        "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 3e-4}]}],
        "loops": {"fit_loop": {"epoch_progress": {"current": {"completed": 3}}}},
        **(extra or {}),
    }
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
    return path, state, shadow


def test_lightning_checkpoint_gives_the_ema_or_the_raw_weights(tmp_path):
    path, state, shadow = _lightning(tmp_path / "last.ckpt")
    config = DiTConfig(vocab_size=V, model_length=LENGTH, hidden_dim=D, n_heads=HEADS, n_blocks=BLOCKS, cond_dim=C)
    ema = load_lightning_checkpoint(path, config)
    names = [n for n, _ in ema.named_parameters()]
    assert all(torch.equal(p, s) for (_, p), s in zip(ema.named_parameters(), shadow)) and len(names) == len(shadow)
    assert torch.equal(ema.rotary_emb.inv_freq, state["backbone.rotary_emb.inv_freq"])  # buffers come from state_dict
    raw = load_lightning_checkpoint(path, config, ema=False)
    assert all(torch.equal(raw.state_dict()[k.removeprefix("backbone.")], v) for k, v in state.items())
    # without a config, the sizes come from the weights
    assert load_lightning_checkpoint(path, model_length=LENGTH).config == config


class _FakeDictConfig:
    """Pickled under omegaconf's name, as Lightning stores MDLM's hyper-parameters."""

    def __init__(self, content):
        self._content = content

    def __setstate__(self, state):  # never runs on loading: a stand-in takes the state instead
        raise AssertionError("the real class's code ran")


def test_lightning_hyperparameters_of_known_libraries_are_read_inertly(tmp_path, monkeypatch):
    module = types.ModuleType("omegaconf.dictconfig")
    _FakeDictConfig.__module__, _FakeDictConfig.__qualname__ = "omegaconf.dictconfig", "DictConfig"
    module.DictConfig = _FakeDictConfig
    monkeypatch.setitem(sys.modules, "omegaconf", types.ModuleType("omegaconf"))
    monkeypatch.setitem(sys.modules, "omegaconf.dictconfig", module)
    path, _, shadow = _lightning(tmp_path / "hp.ckpt", {"hyper_parameters": {"config": _FakeDictConfig({"model": {"length": 12}})}})
    network = load_lightning_checkpoint(path, model_length=LENGTH)
    assert torch.equal(next(network.parameters()), shadow[0])


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_pickle_that_would_run_code_is_refused(tmp_path, legacy):
    marker = tmp_path / "code-ran"
    path, _, _ = _lightning(tmp_path / "evil.ckpt", {"hyper_parameters": {"x": _RunsCode(marker)}}, legacy=legacy)
    with pytest.raises(UnsafePickleError, match="system") as info:
        load_lightning_checkpoint(path, model_length=LENGTH)
    assert "would run code" in str(info.value)
    assert not marker.exists()
    # the control: an unrestricted torch.load of the same file does run the code
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_broken_lightning_files(tmp_path):
    path, _, _ = _lightning(tmp_path / "cut.ckpt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpointError, match="truncated or corrupt"):
        load_lightning_checkpoint(path)
    path.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CorruptCheckpointError):
        load_lightning_checkpoint(path)
    torch.save({"state_dict": published_state()}, path)
    with pytest.raises(MissingKeysError, match="ema=False"):
        load_lightning_checkpoint(path, model_length=LENGTH)
    assert load_lightning_checkpoint(path, model_length=LENGTH, ema=False).config.hidden_dim == D
    path, _, shadow = _lightning(tmp_path / "short.ckpt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["ema"]["shadow_params"] = shadow[:-1]
    torch.save(ckpt, path)
    with pytest.raises(MissingKeysError, match="EMA holds"):
        load_lightning_checkpoint(path, model_length=LENGTH)
    with pytest.raises(CheckpointNotFoundError):
        load_lightning_checkpoint(tmp_path / "absent.ckpt")
