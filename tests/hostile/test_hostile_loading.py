"""Hostile and careless input to the checkpoint and judge loaders, one row per case.

Each row of CASES is a call on files built fresh for it (Files) and either the error it must
raise (its exact type, or a relative, and words its message must hold) or a check of the safe
behaviour it must show. The hub is a recording stand-in in every row: a row that does not
expect the hub asserts that nothing was sent to it, and none reaches the network.
"""
import json
import os
import struct
import sys
import time
import types

import pytest
import safetensors.torch
import torch

import mdmlib.models.checkpoints as checkpoints
from mdmlib.judging.judges import JudgeNotFoundError
from mdmlib.judging.loading import load_judge
from mdmlib.models import DiTConfig, build_network, load_lightning_checkpoint, load_pretrained, save_pretrained
from mdmlib.models.checkpoints import (CheckpointError, CheckpointNotFoundError, ConfigMismatchError, CorruptCheckpointError, InvalidConfigError,
                                       MissingKeysError, NonFiniteWeightsError, ShapeMismatchError, UnsafePickleError, safe_torch_load)
from mdmlib.models.loading import load_denoiser
from reference_dit import random_published_state

D, C, V, BLOCKS, HEADS, LENGTH = 32, 16, 11, 2, 4, 12
from fake_hub import COMMIT  # noqa: E402
MDLM = {"model_type": "mdlm", "vocab_size": V, "model_length": LENGTH, "hidden_dim": D, "cond_dim": C, "n_blocks": BLOCKS, "n_heads": HEADS,
        "dropout": 0.1, "time_conditioning": False}
SEDD = {"tokens": V - 1, "graph": {"type": "absorb"}, "noise": {"type": "loglinear"},
        "model": {"type": "ddit", "hidden_size": D, "cond_dim": C, "length": LENGTH, "n_blocks": BLOCKS, "n_heads": HEADS, "scale_by_sigma": True, "dropout": 0.1}}


class _RunsCode:
    """A pickle that would run a shell command on loading."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Evals:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w')",))


class Files:
    """Files for one row, under tmp_path; the hub is a stand-in that records its calls and serves `snapshot`."""

    def __init__(self, tmp_path, monkeypatch):
        self.root, self.marker, self.hub_calls, self.builds = tmp_path, tmp_path / "code-ran", [], 0
        self.snapshot = self.folder("snapshots/" + COMMIT)
        monkeypatch.chdir(tmp_path)  # relative names like "ck/goood" are looked for here
        monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=self._snapshot_download))
        real_build = checkpoints.build_network

        def counted_build(config):
            self.builds += 1
            return real_build(config)

        monkeypatch.setattr(checkpoints, "build_network", counted_build)

    def _snapshot_download(self, repo_id, **kwargs):
        self.hub_calls.append({"repo_id": repo_id, **kwargs})
        return str(self.snapshot)

    @staticmethod
    def state(kind="mdlm", seed=1):
        return random_published_state(D, C, V, BLOCKS, HEADS, torch.Generator().manual_seed(seed), kind)

    def folder(self, name="ck", config=None, state=None, *, kind="mdlm", weights="model.safetensors", raw_config=None):
        """A checkpoint folder: `config` changes the public config's fields (None removes one),
        `state` changes the tensors (a function of the state dict), `raw_config` is config.json's text."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        data = json.loads(json.dumps(SEDD if kind == "sedd" else MDLM))
        for key, value in (config or {}).items():
            target, field = (data["model"], key[6:]) if key.startswith("model.") else (data, key)
            if value is None:
                del target[field]
            else:
                target[field] = value
        text = raw_config if raw_config is not None else json.dumps(data)
        (path / "config.json").write_bytes(text if isinstance(text, bytes) else text.encode())
        tensors = self.state(kind)
        tensors = state(tensors) if state else tensors
        if weights.endswith(".safetensors"):
            safetensors.torch.save_file(tensors, str(path / weights))
        else:
            torch.save(tensors, path / weights)
        return path

    def lightning(self, change=None, name="last.ckpt"):
        """A .ckpt as MDLM's training code writes it; `change` edits the dict before it is saved."""
        state = self.state()
        shadow = [v.clone() for k, v in self.state(seed=2).items() if not k.endswith("inv_freq")]
        ckpt = {"state_dict": state, "ema": {"decay": 0.9999, "shadow_params": shadow}, "global_step": 10}
        if change:
            change(ckpt)
        torch.save(ckpt, self.root / name)
        return self.root / name


def _with(key, value):
    """A state change: the tensor `key` replaced by `value` (a tensor, or anything a pickle may hold)."""
    def change(state):
        state[key] = value(state[key]) if callable(value) else value
        return state
    return change


def _nan_at(index: int, value=float("nan")):
    def poison(t):
        t = t.clone()
        t.view(-1)[index] = value
        return t
    return poison


def row(case_id, call, error=None, *words, check=None, hub=False):
    """One case: `call(files)` raises `error` (words in its message), or passes `check(files, result)`;
    hub: whether the row may call the hub (else it must not)."""
    return pytest.param(call, error, words, check, hub, id=case_id)


def _hub_called_with(repo_id, revision):
    def check(files, network):
        assert [(c["repo_id"], c["revision"]) for c in files.hub_calls] == [(repo_id, revision)]
        assert network.source["hub"] == {"repo_id": repo_id, "revision": revision, "commit": COMMIT}
    return check


def _refused_before_building(files, seconds):
    assert files.builds == 0, "a network was built before the config was checked against the weights"
    assert seconds < 2.0


def _equals(expected):
    def check(files, result):
        assert result == expected and type(result) is type(expected), result
    return check


def _no_code_ran(files, _):
    assert not files.marker.exists()


CASES = [
    # --- local paths stay local; the hub only for hf:// ids, at a pinned revision ---------------------------------
    row("missing-owner-name-path-is-local", lambda f: load_pretrained("ck/goood"), CheckpointNotFoundError, "no folder ck/goood", "hf://ck/goood"),
    row("missing-path-is-FileNotFoundError", lambda f: load_pretrained(f.root / "nowhere"), FileNotFoundError, "no folder", "nowhere"),
    row("denoiser-missing-owner-name-path-is-local", lambda f: load_denoiser("kuleshov-group/mdlm-owt"), CheckpointNotFoundError,
        "no folder kuleshov-group/mdlm-owt", "hf://kuleshov-group/mdlm-owt"),
    row("judge-missing-owner-name-path-is-local", lambda f: load_judge("ck/goood"), JudgeNotFoundError, "no folder ck/goood", "hf://ck/goood"),
    row("judge-default-name-without-scheme-is-local", lambda f: load_judge("gpt2-large"), JudgeNotFoundError, "no folder gpt2-large"),
    row("generator-tokenizer-name-is-local", lambda f: load_judge(f.folder(raw_config='{"model_type": "gpt2"}'), generator_tokenizer="gpt2"),
        JudgeNotFoundError, "no folder gpt2 for the generator's tokenizer", "hf://gpt2"),
    row("hub-id-default-revision-main", lambda f: load_pretrained("hf://kuleshov-group/mdlm-owt"), check=_hub_called_with("kuleshov-group/mdlm-owt", "main"),
        hub=True),
    row("hub-id-pinned-in-the-id", lambda f: load_pretrained(f"hf://kuleshov-group/mdlm-owt@{COMMIT}"),
        check=_hub_called_with("kuleshov-group/mdlm-owt", COMMIT), hub=True),
    row("hub-id-pinned-by-argument", lambda f: load_denoiser("hf://louaaron/sedd-small", revision="v1")[1]["hub"],
        check=_equals({"repo_id": "louaaron/sedd-small", "revision": "v1", "commit": COMMIT}), hub=True),
    row("revision-for-a-local-path", lambda f: load_pretrained(f.folder(), revision="main"), ValueError, "is for hub ids"),
    row("two-different-pins", lambda f: load_pretrained("hf://a/b@v1", revision="v2"), ValueError, "pins the revision 'v1'", "'v2'"),
    row("hub-id-with-a-path-in-it", lambda f: load_pretrained("hf://../../etc/passwd"), ValueError, "not a hub id"),
    row("revision-not-a-string", lambda f: load_pretrained("hf://a/b", revision=3), TypeError, "revision must be a string"),
    row("source-not-a-path", lambda f: load_pretrained(123), TypeError, "local path or a hub id", "int"),
    row("source-empty-string", lambda f: load_pretrained(""), ValueError, "empty"),
    row("source-a-file-not-a-folder", lambda f: load_pretrained(f.folder() / "model.safetensors"), CheckpointError, "is a file"),
    row("lightning-file-missing", lambda f: load_lightning_checkpoint(f.root / "absent.ckpt"), FileNotFoundError, "no file", "absent.ckpt"),
    row("torch-file-missing-is-not-corrupt", lambda f: safe_torch_load(f.root / "gone.pt"), CheckpointNotFoundError, "no file", "gone.pt"),
    row("folder-without-weights", lambda f: load_pretrained(_unlinked(f.folder(), "model.safetensors")), FileNotFoundError, "has neither"),
    row("folder-without-config", lambda f: load_pretrained(_unlinked(f.folder(), "config.json")), FileNotFoundError, "no file", "config.json"),
    # --- config.json against its schema ------------------------------------------------------------------------
    row("time-conditioning-string-false", lambda f: load_pretrained(f.folder(config={"time_conditioning": "false"})), InvalidConfigError,
        "time_conditioning must be true or false", '"false" (a str)'),
    row("time-conditioning-int", lambda f: load_pretrained(f.folder(config={"time_conditioning": 0})), InvalidConfigError, "time_conditioning"),
    row("scale-by-sigma-string-false", lambda f: load_pretrained(f.folder(kind="sedd", config={"model.scale_by_sigma": "false"})), InvalidConfigError,
        "model.scale_by_sigma must be true or false"),
    row("n-blocks-float", lambda f: load_pretrained(f.folder(config={"n_blocks": 2.0})), InvalidConfigError, "n_blocks must be an integer", "2.0"),
    row("n-blocks-bool", lambda f: load_pretrained(f.folder(config={"n_blocks": True})), InvalidConfigError, "n_blocks must be an integer", "true"),
    row("n-heads-string", lambda f: load_pretrained(f.folder(config={"n_heads": "4"})), InvalidConfigError, "n_heads must be an integer"),
    row("hidden-dim-negative", lambda f: load_pretrained(f.folder(config={"hidden_dim": -32})), InvalidConfigError, "hidden_dim must be a positive integer"),
    row("dropout-string", lambda f: load_pretrained(f.folder(config={"dropout": "0.1"})), InvalidConfigError, "dropout must be a number"),
    row("dropout-infinite", lambda f: load_pretrained(f.folder(raw_config=json.dumps(MDLM).replace('"dropout": 0.1', '"dropout": 1e999'))),
        InvalidConfigError, "dropout must lie in [0, 1)"),
    row("sedd-tokens-string", lambda f: load_pretrained(f.folder(kind="sedd", config={"tokens": "10"})), InvalidConfigError, "tokens must be an integer"),
    row("unknown-model-type", lambda f: load_pretrained(f.folder(config={"model_type": "bert"})), InvalidConfigError, "model_type 'bert'"),
    row("model-type-not-a-string", lambda f: load_pretrained(f.folder(config={"model_type": 5})), InvalidConfigError, "model_type must be a string"),
    row("unknown-sedd-graph", lambda f: load_pretrained(f.folder(kind="sedd", config={"graph": {"type": "uniform"}})), InvalidConfigError, "graph 'uniform'"),
    row("unknown-sedd-model-type", lambda f: load_pretrained(f.folder(kind="sedd", config={"model.type": "transformer"})), InvalidConfigError,
        "model.type", "ddit"),
    row("sedd-model-not-an-object", lambda f: load_pretrained(f.folder(kind="sedd", config={"model": "small"})), InvalidConfigError,
        "model must be a JSON object"),
    row("config-a-list", lambda f: load_pretrained(f.folder(raw_config="[1, 2, 3]")), InvalidConfigError, "must be a JSON object", "list"),
    row("config-missing-field", lambda f: load_pretrained(f.folder(config={"n_heads": None})), InvalidConfigError, "lacks the field 'n_heads'"),
    row("config-not-json", lambda f: load_pretrained(f.folder(raw_config='{"n_blocks": 2,')), CorruptCheckpointError, "not valid JSON"),
    row("config-not-utf8", lambda f: load_pretrained(f.folder(raw_config=b"{\xff}")), CorruptCheckpointError, "not valid JSON"),
    row("config-huge", lambda f: load_pretrained(f.folder(raw_config=" " * (checkpoints.MAX_CONFIG_BYTES + 1) + "{}")), InvalidConfigError,
        "more than a config"),
    row("dit-config-string-bool", lambda f: DiTConfig(vocab_size=V, time_conditioning="false"), TypeError, "time_conditioning must be True or False"),
    row("dit-config-float-size", lambda f: DiTConfig(vocab_size=V, n_blocks=2.0), TypeError, "n_blocks must be a positive integer", "2.0"),
    row("dit-config-kind-not-a-string", lambda f: DiTConfig(vocab_size=V, kind=None), TypeError, "kind must be a string"),
    row("false-saved-back-as-a-json-boolean", lambda f: _saved_back(f), check=_equals(False)),
    # --- sizes bounded by the weights present, checked before a network is built --------------------------------
    row("ten-thousand-blocks-over-two", lambda f: _timed(lambda: load_pretrained(f.folder(config={"n_blocks": 10_000})), f), ConfigMismatchError,
        "n_blocks: config 10000, weights 2"),
    row("a-billion-tokens-over-eleven", lambda f: _timed(lambda: load_pretrained(f.folder(config={"vocab_size": 10**9})), f), ConfigMismatchError,
        f"vocab_size: config 1000000000, weights {V}"),
    row("hidden-size-read-from-the-output-layer", lambda f: _timed(lambda: load_pretrained(
        f.folder(config={"hidden_dim": 64}, state=lambda s: {k: v for k, v in s.items() if k != "backbone.vocab_embed.embedding"})), f),
        ConfigMismatchError, f"hidden_dim: config 64, weights {D}"),
    row("many-blocks-over-another-kinds-names", lambda f: _timed(lambda: load_pretrained(f.folder(kind="sedd", config={"model.n_blocks": 10_000},
                                                                                                 state=lambda s: {"backbone." + k: v for k, v in s.items()})), f),
        MissingKeysError, "prefix 'backbone.'", "MDLM checkpoint"),
    row("many-blocks-over-no-tensors", lambda f: _timed(lambda: load_pretrained(f.folder(config={"n_blocks": 10_000}, state=lambda s: {})), f),
        MissingKeysError, "holds none of the network's tensors"),
    row("lightning-config-of-ten-thousand-blocks", lambda f: _timed(lambda: load_lightning_checkpoint(
        f.lightning(), DiTConfig(vocab_size=V, model_length=LENGTH, hidden_dim=D, n_heads=HEADS, n_blocks=10_000, cond_dim=C)), f),
        ConfigMismatchError, "n_blocks: config 10000, weights 2"),
    row("embedding-of-three-dimensions", lambda f: load_pretrained(f.folder(state=_with("backbone.vocab_embed.embedding", lambda t: t[:, :, None]))),
        ShapeMismatchError, "backbone.vocab_embed.embedding", f"expected ({V}, {D})", f"got ({V}, {D}, 1)"),
    # --- NaN and infinite weights, named --------------------------------------------------------------------------
    row("nan-weight-in-safetensors", lambda f: load_pretrained(f.folder(state=_with("backbone.blocks.1.mlp.0.weight", _nan_at(5)))), NonFiniteWeightsError,
        "backbone.blocks.1.mlp.0.weight (1 NaN and 0 infinite of", f"{4 * D * D} entries"),
    row("infinite-weight-in-torch-file", lambda f: load_pretrained(f.folder(kind="sedd", weights="pytorch_model.bin",
                                                                            state=_with("output_layer.linear.bias", _nan_at(0, float("-inf"))))),
        NonFiniteWeightsError, "output_layer.linear.bias (0 NaN and 1 infinite of"),
    row("nan-in-the-lightning-state-dict", lambda f: load_lightning_checkpoint(f.lightning(lambda c: _with("backbone.sigma_map.mlp.0.bias", _nan_at(1))(
        c["state_dict"])), model_length=LENGTH, ema=False), NonFiniteWeightsError, "backbone.sigma_map.mlp.0.bias"),
    row("nan-in-the-ema", lambda f: load_lightning_checkpoint(f.lightning(lambda c: c["ema"]["shadow_params"].__setitem__(0, torch.full((V, D), float("nan")))),
                                                              model_length=LENGTH), NonFiniteWeightsError, "backbone.vocab_embed.embedding (EMA)", f"{V * D} NaN"),
    # --- obscure errors made plain -------------------------------------------------------------------------------
    row("torch-file-holding-a-list", lambda f: load_pretrained(f.folder(kind="sedd", weights="pytorch_model.bin", state=lambda s: list(s.values()))),
        CorruptCheckpointError, "holds a list, not a dict of named tensors"),
    row("tensor-value-a-string", lambda f: load_pretrained(f.folder(kind="sedd", weights="pytorch_model.bin", state=_with("blocks.0.norm1.weight", "ones"))),
        CorruptCheckpointError, "not tensors", "blocks.0.norm1.weight (a str)"),
    row("tensor-value-a-list", lambda f: load_pretrained(f.folder(kind="sedd", weights="pytorch_model.bin", state=_with("blocks.0.norm1.weight", [1.0] * D))),
        CorruptCheckpointError, "blocks.0.norm1.weight (a list)"),
    row("tensor-names-not-strings", lambda f: load_pretrained(f.folder(kind="sedd", weights="pytorch_model.bin", state=lambda s: {**s, 7: torch.zeros(1)})),
        CorruptCheckpointError, "names must be strings", "7"),
    row("lightning-state-value-a-list", lambda f: load_lightning_checkpoint(f.lightning(lambda c: c["state_dict"].__setitem__("backbone.blocks.0.norm1.weight", [1.0])),
                                                                            model_length=LENGTH), CorruptCheckpointError, "backbone.blocks.0.norm1.weight (a list)"),
    row("lightning-ema-entry-a-string", lambda f: load_lightning_checkpoint(f.lightning(lambda c: c["ema"]["shadow_params"].__setitem__(3, "x")),
                                                                            model_length=LENGTH), CorruptCheckpointError, "EMA entries that are not tensors", "a str"),
    row("lightning-ema-not-a-dict", lambda f: load_lightning_checkpoint(f.lightning(lambda c: c.__setitem__("ema", "none")), model_length=LENGTH),
        MissingKeysError, "no EMA weights"),
    row("lightning-file-a-list", lambda f: load_lightning_checkpoint(_saved(f.root / "list.ckpt", [1, 2])), CheckpointError, "not a Lightning checkpoint"),
    row("lightning-config-a-dict", lambda f: load_lightning_checkpoint(f.lightning(), config=dict(MDLM)), TypeError, "config must be a DiTConfig", "dict"),
    row("lightning-ema-a-string", lambda f: load_lightning_checkpoint(f.lightning(), ema="no"), TypeError, "ema must be True or False"),
    row("lightning-time-conditioning-a-string", lambda f: load_lightning_checkpoint(f.lightning(), time_conditioning="false"), TypeError,
        "time_conditioning must be True or False"),
    row("denoiser-ema-a-string", lambda f: load_denoiser(f.lightning(), ema="false"), TypeError, "ema must be True or False"),
    row("save-something-not-a-network", lambda f: save_pretrained("net", f.root / "out"), TypeError, "save_pretrained saves a network"),
    row("empty-weights-file", lambda f: load_pretrained(_emptied(f.folder(), "model.safetensors")), CorruptCheckpointError, "is empty (0 bytes)"),
    row("header-claiming-more-than-the-file", lambda f: load_pretrained(_huge_header(f.folder())), CorruptCheckpointError, "truncated or corrupt"),
    row("weights-path-a-folder", lambda f: load_pretrained(_replaced_by_folder(f.folder(), "model.safetensors")), CheckpointNotFoundError, "has neither"),
    row("torch-load-of-a-folder", lambda f: safe_torch_load(f.folder()), CheckpointError, "is not a file"),
    row("judge-config-a-list", lambda f: load_judge(f.folder(raw_config="[1]")), ValueError, "must hold a JSON object"),
    row("judge-folder-without-config", lambda f: load_judge(_unlinked(f.folder(), "config.json")), JudgeNotFoundError, "has no config.json"),
    # --- pickles that would run code are refused, and run nothing -------------------------------------------------
    row("torch-weights-calling-os-system", lambda f: _refused(f, lambda: load_pretrained(f.folder(kind="sedd", weights="pytorch_model.bin",
                                                                                                    state=_with("blocks.0.norm1.weight", _RunsCode(f.marker))))),
        None, check=_no_code_ran),
    row("lightning-calling-eval", lambda f: _refused(f, lambda: load_lightning_checkpoint(f.lightning(lambda c: c.__setitem__("hp", _Evals(f.marker))))),
        None, check=_no_code_ran),
]


def _unlinked(folder, name):
    (folder / name).unlink()
    return folder


def _huge_header(folder):
    """model.safetensors whose header claims a 4 TB tensor over 16 bytes of data."""
    header = json.dumps({"backbone.vocab_embed.embedding": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 4 * 10**12]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    return folder


def _emptied(folder, name):
    (folder / name).write_bytes(b"")
    return folder


def _replaced_by_folder(folder, name):
    (folder / name).unlink()
    (folder / name).mkdir()
    return folder


def _saved(path, obj):
    torch.save(obj, path)
    return path


def _timed(call, files):
    """Run `call`, then check it failed fast and built nothing."""
    start = time.perf_counter()
    try:
        call()
    finally:
        _refused_before_building(files, time.perf_counter() - start)


def _refused(files, call):
    with pytest.raises(UnsafePickleError, match="would run code"):
        call()


def _saved_back(files):
    """A network saved and loaded again keeps time_conditioning a JSON boolean, false."""
    network = build_network(DiTConfig(vocab_size=V, model_length=LENGTH, hidden_dim=D, n_heads=HEADS, n_blocks=BLOCKS, cond_dim=C))
    save_pretrained(network, files.root / "saved")
    return json.loads((files.root / "saved" / "config.json").read_text())["time_conditioning"]


@pytest.mark.parametrize("call, error, words, check, hub", CASES)
def test_hostile_loading(call, error, words, check, hub, tmp_path, monkeypatch):
    files = Files(tmp_path, monkeypatch)
    if error is not None:
        with pytest.raises(error) as info:
            call(files)
        for word in words:
            assert word in str(info.value), str(info.value)
    else:
        check(files, call(files))
    if not hub:
        assert files.hub_calls == [], "a call that names no hub id reached the hub"


def test_the_table_covers_every_kind_of_case():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 60
