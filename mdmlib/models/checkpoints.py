"""Checkpoints: the Hugging Face folder layout, and Lightning .ckpt files, read strictly.

A folder holds config.json and model.safetensors (PAPER.md section 6):
- MDLM (kuleshov-group/mdlm-owt) and the causal twin: parameter names under
  "backbone.", config.json with the public MDLM fields (vocab_size, model_length,
  hidden_dim, cond_dim, n_blocks, n_heads, dropout, time_conditioning) and
  "model_type" ("mdlm", or "ar" for the causal twin; absent means "mdlm");
- SEDD (louaaron/sedd-small): names without a prefix, config.json in SEDD's own
  nested form ({"model": {hidden_size, cond_dim, length, n_blocks, n_heads,
  scale_by_sigma, dropout}, "tokens": ..., "graph": {"type": "absorb"}, ...});
  the weights may also be pytorch_model.bin (read as a plain tensor file).
A Lightning .ckpt (MDLM's training code) keeps the weights under "state_dict"
(the network's under "backbone.") and the EMA weights as a list,
ckpt["ema"]["shadow_params"], in the order of the network's parameters.

A path is always local: a missing one is a FileNotFoundError, never sent to the hub.
Only a hub id "hf://owner/name" (huggingface_hub's own scheme) is downloaded, at a revision
("hf://owner/name@<commit>", or `revision`; default "main", as the public repositories
publish no tags), and the commit it resolved to is recorded (the network's `source`).

Reading is strict, cheapest check first: config.json against its schema
(mdmlib.models.config); the sizes the weights' names and shapes show (safetensors header,
memory-mapped torch file) against the config, before any network is built; the exact names
and shapes; the values, refused if NaN or infinite. Pickles are read with
torch.load(weights_only=True), which never runs code from the file; the
objects Lightning stores beside the weights (omegaconf configs, tokenizers:
modules listed in INERT_MODULES) are replaced by inert stand-ins that keep their
pickled state and run nothing, and a file that names any other global is refused.

Errors, each its own type (all are CheckpointError, a ValueError):
MissingKeysError, UnexpectedKeysError, ShapeMismatchError, ConfigMismatchError,
InvalidConfigError, NonFiniteWeightsError, CorruptCheckpointError, UnsafePickleError,
CheckpointNotFoundError (also a FileNotFoundError); and DeviceUnavailableError
(mdmlib.models.device) for CUDA asked for where there is none.
"""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import zipfile
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError, safe_open

from mdmlib.infra.provenance import provenance
from mdmlib.infra.results import write_atomically
from mdmlib.models.config import DiTConfig, config_from_json, config_to_json
from mdmlib.models.device import resolve_device
from mdmlib.models.dit import architecture_of, build_network, shape_of

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TORCH_WEIGHTS_NAME = "pytorch_model.bin"
PREFIX = {"mdlm": "backbone.", "ar": "backbone.", "sedd": ""}
# libraries whose objects Lightning (and MDLM's training code) pickles beside the weights
INERT_MODULES = ("omegaconf", "transformers", "tokenizers", "lightning", "pytorch_lightning", "lightning_fabric", "numpy", "collections", "pathlib", "typing")
HUB_SCHEME = "hf://"
DEFAULT_REVISION = "main"
MAX_CONFIG_BYTES = 1 << 24  # a config.json is a few KB; SEDD's whole training config well under this
_SHOWN = 12  # names listed in an error before "... and N more"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded as it is."""


class MissingKeysError(CheckpointError):
    pass


class UnexpectedKeysError(CheckpointError):
    pass


class ShapeMismatchError(CheckpointError):
    pass


class ConfigMismatchError(CheckpointError):
    pass


class InvalidConfigError(CheckpointError):
    """config.json is not a JSON object, or a field has the wrong type or value."""


class NonFiniteWeightsError(CheckpointError):
    """Some weights are NaN or infinite."""


class CorruptCheckpointError(CheckpointError):
    """A file truncated or damaged, or without the structure of a checkpoint (names that are
    not strings, values that are not tensors)."""


class UnsafePickleError(CheckpointError):
    pass


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    pass


def _listed(names: list[str]) -> str:
    more = f", ... and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def local_path(source) -> Path:
    """`source` as a local path (a str or os.PathLike, not empty)."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"a checkpoint is a local path or a hub id '{HUB_SCHEME}owner/name', got {type(source).__name__} {source!r}")
    if str(source) == "":
        raise ValueError("the checkpoint path is empty")
    return Path(source).expanduser()


# --- config.json and the sizes the weights show ------------------------------------------------------
def read_config(path: Path) -> DiTConfig:
    """The DiTConfig of a config.json, read against its schema."""
    data = _read_json(path)
    try:
        return config_from_json(data)
    except (TypeError, ValueError) as e:
        raise InvalidConfigError(f"{path} describes no valid network: {e}") from e


def _check_config(config: DiTConfig, shapes: dict, source: str) -> None:
    """The config against the sizes the file's shapes show: before a network is built, so
    a config of 10,000 blocks over a file of 12 fails at once."""
    wrong = [f"{name}: config {getattr(config, name)}, weights {value}" for name, value in architecture_of(shapes).items() if getattr(config, name) != value]
    has_time_input = any(k.startswith("sigma_map.") for k in shapes)
    if "vocab_embed.embedding" in shapes and has_time_input != (config.kind != "ar"):  # (a name check decides otherwise)
        wrong.append(f"kind: config {config.kind!r}, weights {'with' if has_time_input else 'without'} a time input (sigma_map)")
    if wrong:
        raise ConfigMismatchError(f"the config of {source} disagrees with its weights: " + "; ".join(wrong))


# --- reading tensors without running pickled code ---------------------------------------------
class _Inert:
    """Stands in for a pickled object of an allowed library: keeps what the pickle passes, runs nothing."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):
        self.state = state


def _stand_in(name: str) -> type:
    module, _, qualname = name.rpartition(".")
    return type(qualname, (_Inert,), {"__module__": module})


def _refused(path, names: list[str]) -> UnsafePickleError:
    return UnsafePickleError(
        f"refused to load {path}: its pickle calls {_listed(names)}, which would run code on loading. "
        "Only tensors, plain containers and the stored objects of " + ", ".join(INERT_MODULES) + " are read."
    )


def _unpickler_reason(message: str) -> str:
    """The reason in torch's weights-only refusal, without the advice around it."""
    message = message.split("WeightsUnpickler error:")[-1]
    boilerplate = ("Weights only load failed", "Check the documentation")
    paragraphs = [p.strip() for p in message.split("\n\n") if p.strip() and not p.strip().startswith(boilerplate)]
    return paragraphs[0] if paragraphs else message.strip()


def _existing_file(path: Path) -> Path:
    """`path` if it is a non-empty file; else the error that says what it is."""
    if not path.exists():
        raise CheckpointNotFoundError(f"no file {path}")
    if not path.is_file() or not os.access(path, os.R_OK):
        raise CheckpointError(f"{path} is not a file this user can read")
    if path.stat().st_size == 0:
        raise CorruptCheckpointError(f"{path} is empty (0 bytes)")
    return path


def safe_torch_load(path, *, mmap: bool = False) -> object:
    """torch.load(weights_only=True), with inert stand-ins for INERT_MODULES' objects.
    mmap=True maps a zip-format file instead of reading it (its tensors are read when used)."""
    path = _existing_file(local_path(path))
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # an old (non-zip) or damaged file: torch.load below decides which
        names = []
    refused = [n for n in names if n.split(".")[0] not in INERT_MODULES]
    if refused:
        raise _refused(path, refused)
    try:
        # (names is empty before torch 2.5, which lacks both calls: then only plain files load)
        stand_ins = torch.serialization.safe_globals([(_stand_in(n), n) for n in names]) if names else contextlib.nullcontext()
        with stand_ins:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise CorruptCheckpointError(f"{path} is truncated or corrupt: {e}") from e
        reason = _unpickler_reason(str(e))
        named = re.findall(r"GLOBAL ([\w.]+)", reason)
        if named:
            raise _refused(path, named) from e
        if reason.startswith("Unsupported operand"):  # not a pickle opcode: damaged, not dangerous
            raise CorruptCheckpointError(f"{path} is truncated or corrupt: {reason}") from e
        raise UnsafePickleError(f"refused to load {path}: its pickle needs more than tensors and plain containers ({reason})") from e
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as e:
        raise CorruptCheckpointError(f"{path} is truncated or corrupt: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e


def _safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Names and shapes from the file's header, without reading a tensor."""
    _existing_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CorruptCheckpointError(f"{path} is truncated or corrupt: {e}") from e


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CorruptCheckpointError(f"{path} is truncated or corrupt: {e}") from e


def _read_json(path: Path):
    _existing_file(path)
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise InvalidConfigError(f"{path} holds {path.stat().st_size:,} bytes, more than a config ({MAX_CONFIG_BYTES:,} at most)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptCheckpointError(f"{path} is not valid JSON: {e}") from e


def tensors_of(state, source: str) -> dict[str, torch.Tensor]:
    """`state` checked to be a dict from names (str) to tensors: a pickle may hold anything."""
    if not isinstance(state, dict):
        raise CorruptCheckpointError(f"{source} holds a {type(state).__name__}, not a dict of named tensors")
    names = [repr(k) for k in state if not isinstance(k, str)]
    if names:
        raise CorruptCheckpointError(f"{source}: tensor names must be strings, got {_listed(names)}")
    others = [f"{k} (a {type(v).__name__})" for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if others:
        raise CorruptCheckpointError(f"{source} holds values that are not tensors: {_listed(others)}")
    return state


def check_finite(named, source: str) -> None:
    """Refuse NaN or infinite values, naming each tensor and how many of its entries."""
    bad = []
    for name, v in named:
        if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all()):
            bad.append(f"{name} ({int(torch.isnan(v).sum())} NaN and {int(torch.isinf(v).sum())} infinite of {v.numel()} entries)")
    if bad:
        raise NonFiniteWeightsError(f"{source} holds weights that are not finite numbers: {_listed(bad)}")


# --- strict loading --------------------------------------------------------------------------
def _without_prefix(state: dict, prefix: str) -> tuple[dict, list[str]]:
    """The entries under `prefix` (prefix removed), and the names of all others."""
    inside = {k[len(prefix) :]: v for k, v in state.items() if isinstance(k, str) and k.startswith(prefix)}
    return inside, [str(k) for k in state if not (isinstance(k, str) and k.startswith(prefix))]


def _check_names_and_shapes(network: torch.nn.Module, shapes: dict, source: str, outside=(), prefix: str = "") -> None:
    expected = network.state_dict()
    missing = [prefix + k for k in expected if k not in shapes]
    unexpected = [prefix + k for k in shapes if k not in expected] + list(outside)
    if missing:
        also = f"; it also holds names the network lacks: {_listed(unexpected)}" if unexpected else ""
        raise MissingKeysError(f"{source} lacks {len(missing)} tensor(s) of the network: {_listed(missing)}{also}")
    if unexpected:
        raise UnexpectedKeysError(f"{source} holds {len(unexpected)} tensor(s) the network does not have: {_listed(unexpected)}")
    wrong = [f"{prefix + k}: expected {tuple(v.shape)}, got {shape_of(shapes[k])}" for k, v in expected.items() if shape_of(shapes[k]) != tuple(v.shape)]
    if wrong:
        raise ShapeMismatchError(f"{source} has {len(wrong)} tensor(s) of the wrong shape: {_listed(wrong)}")


def _assign(network: torch.nn.Module, state: dict[str, torch.Tensor], source: str, prefix: str = "") -> None:
    check_finite(((prefix + k, v) for k, v in state.items()), source)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    network.load_state_dict(state, strict=True, assign=True)


def _network_from(config: DiTConfig, shapes: dict, read, source: str, outside: list[str] = ()):
    """The network of `config` with the tensors `read()` gives (prefix-free), checked first by
    the names and `shapes` alone (prefix-free), before anything is built or read."""
    _check_config(config, shapes, source)
    with torch.device("meta"):  # no time spent initialising weights that are overwritten
        network = build_network(config)
    prefix = PREFIX[config.kind]
    _check_names_and_shapes(network, shapes, source, outside, prefix)
    _assign(network, read(), source, prefix)
    return network


def _split(config: DiTConfig, shapes: dict, source: str) -> tuple[dict, list[str]]:
    """The file's names under the config kind's prefix, or the error when none (or all) carry another kind's prefix."""
    prefix = PREFIX[config.kind]
    inside, outside = _without_prefix(shapes, prefix)
    if prefix and not inside:
        raise MissingKeysError(f"{source} holds none of the network's tensors: no name carries the prefix {prefix!r}"
                               f" (is it a SEDD checkpoint?); it holds {_listed(outside) or 'no tensor at all'}")
    if not prefix and inside and all(k.startswith("backbone.") for k in inside):
        raise MissingKeysError(f"{source} lacks the network's tensors: the file's names carry the prefix 'backbone.' (is it an MDLM checkpoint?)")
    return inside, outside


# --- the hub: only for an explicit hf:// id ---------------------------------------------------------
REPO_ID = re.compile(r"[\w-][\w.-]*(/[\w-][\w.-]*)?")  # "name" or "owner/name"
_REVISION = re.compile(r"[\w][\w./-]*")
MODEL_FILES = (CONFIG_NAME, WEIGHTS_NAME, TORCH_WEIGHTS_NAME)


def parse_hub_id(source, revision: str | None = None) -> tuple[str, str] | None:
    """(repo id, revision) for "hf://owner/name" or "hf://owner/name@revision"; None for a
    local path (for which a revision is an error). The revision defaults to DEFAULT_REVISION."""
    if revision is not None and not isinstance(revision, str):
        raise TypeError(f"revision must be a string (a commit, tag or branch), got {type(revision).__name__} {revision!r}")
    if not (isinstance(source, str) and source.startswith(HUB_SCHEME)):
        if revision is not None:
            raise ValueError(f"revision {revision!r} is for hub ids ('{HUB_SCHEME}owner/name'), and {str(source)!r} is a local path")
        return None
    repo_id, at, pinned = source[len(HUB_SCHEME) :].partition("@")
    if not REPO_ID.fullmatch(repo_id):
        raise ValueError(f"{source!r} is not a hub id of the form '{HUB_SCHEME}owner/name' or '{HUB_SCHEME}owner/name@revision'")
    if at and revision is not None and pinned != revision:
        raise ValueError(f"{source!r} pins the revision {pinned!r} but revision={revision!r} was given")
    revision = pinned if at else (revision or DEFAULT_REVISION)
    if not _REVISION.fullmatch(revision):
        raise ValueError(f"{revision!r} is not a revision (a commit hash, tag or branch name)")
    return repo_id, revision


def _by_hand(repo_id: str, revision: str) -> str:
    name, pin = repo_id.rsplit("/", 1)[-1], f" --revision {revision}" if revision != DEFAULT_REVISION else ""
    return (f"fetch the folder by hand on a machine with internet access:\n    hf download {repo_id}{pin} --local-dir {name}   "
            f"(older huggingface_hub: huggingface-cli download {repo_id}{pin} --local-dir {name})\nor\n"
            f"    git lfs install && git clone https://huggingface.co/{repo_id} {name}" + (f" && git -C {name} checkout {revision}" if pin else "") + "\n"
            f"then copy the folder {name}/ to this machine and give its path (./{name}) in place of the hub id.")


def _fetch_by_hand(repo_id: str, revision: str, reason: str) -> str:
    return f"{HUB_SCHEME}{repo_id} could not be fetched from the Hugging Face hub: {reason}. To load it, " + _by_hand(repo_id, revision)


def hub_snapshot(repo_id: str, revision: str, patterns, *, local_files_only: bool = False) -> tuple[Path, dict]:
    """The files of hub repository `repo_id` at `revision` that match `patterns`, downloaded
    (or found in the local cache) by huggingface_hub; the folder and its record
    {repo_id, revision, commit}, commit being the hash the revision resolved to."""
    try:
        import huggingface_hub
    except ImportError:
        raise CheckpointNotFoundError(_fetch_by_hand(repo_id, revision, "the optional package huggingface_hub is not installed "
                                                     "(pip install huggingface_hub, or the project's extra: pip install -e '.[paper]')")) from None
    try:
        folder = Path(huggingface_hub.snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=list(patterns), local_files_only=local_files_only))
    except Exception as e:  # no network, unknown repository or revision, ...: the by-hand route always works
        raise CheckpointNotFoundError(_fetch_by_hand(repo_id, revision, f"{type(e).__name__}: {e}")) from e
    commit = folder.name if re.fullmatch(r"[0-9a-f]{40}", folder.name) else None  # the hub cache keeps a snapshot under its commit
    return folder, {"repo_id": repo_id, "revision": revision, "commit": commit}


def _no_folder(path: Path, source) -> str:
    text, message = str(source), f"no folder {path} (a local path is never looked up on the hub)"
    if REPO_ID.fullmatch(text) and not path.is_absolute():  # shaped like a hub id: say how to ask for one
        message += f". To download the hub repository {text!r}, name it '{HUB_SCHEME}{text}' (pinned: '{HUB_SCHEME}{text}@<commit>'), or " + _by_hand(text, DEFAULT_REVISION)
    return message


def checkpoint_folder(source, revision: str | None = None, *, local_files_only: bool = False) -> tuple[Path, dict | None]:
    """The folder of `source` and, for a hub id, its hub record (else None): a local path as
    it is (never sent to the hub), "hf://owner/name[@revision]" downloaded."""
    hub = parse_hub_id(source, revision)
    if hub is not None:
        return hub_snapshot(*hub, MODEL_FILES, local_files_only=local_files_only)
    path = local_path(source)
    if path.is_dir():
        return path, None
    if path.exists():
        raise CheckpointError(f"{path} is a file: give the folder holding {CONFIG_NAME} and {WEIGHTS_NAME} (a Lightning .ckpt: load_lightning_checkpoint)")
    raise CheckpointNotFoundError(_no_folder(path, source))


# --- the folder layout ---------------------------------------------------------------------------
PROVENANCE_NAME = "provenance.json"


def save_pretrained(network: torch.nn.Module, folder) -> Path:
    """Write config.json and model.safetensors (float32) into `folder`, and provenance.json (the
    project's provenance record, mdmlib.infra.provenance; the loaders do not read it); each file
    whole or not at all."""
    config = getattr(network, "config", None)
    if not isinstance(network, torch.nn.Module) or not isinstance(config, DiTConfig):
        raise TypeError(f"save_pretrained saves a network of build_network (with a DiTConfig), got {type(network).__name__}")
    folder = local_path(folder)
    prefix = PREFIX[config.kind]
    state = {prefix + k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous() for k, v in network.state_dict().items()}
    write_atomically(folder / WEIGHTS_NAME, lambda tmp: safetensors.torch.save_file(state, tmp, metadata={"format": "pt"}))
    text = json.dumps(config_to_json(config), indent=2, sort_keys=True) + "\n"
    write_atomically(folder / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text))
    record = json.dumps(provenance(next(network.parameters()).device), indent=2, sort_keys=True) + "\n"
    write_atomically(folder / PROVENANCE_NAME, lambda tmp: Path(tmp).write_text(record))
    return folder


def load_pretrained(source, device="cpu", *, revision: str | None = None, local_files_only: bool = False):
    """The network in a folder, loaded strictly, in eval mode, on `device` ("cpu", "cuda", "auto").
    `source`: a local folder, or a hub id "hf://owner/name[@revision]" (needs huggingface_hub;
    `local_files_only` takes it from the hub cache only). The network's `source` attribute
    says where it came from: {"folder", "files" (config and weights), "hub": {repo_id, revision, commit} or None}."""
    device = resolve_device(device)
    folder, hub = checkpoint_folder(source, revision, local_files_only=local_files_only)
    config = read_config(folder / CONFIG_NAME)
    if (folder / WEIGHTS_NAME).is_file():
        file = folder / WEIGHTS_NAME
        shapes, read = _safetensors_shapes(file), lambda: _read_safetensors(file)
    elif (folder / TORCH_WEIGHTS_NAME).is_file():
        file = folder / TORCH_WEIGHTS_NAME
        raw = tensors_of(safe_torch_load(file, mmap=True), str(file))
        shapes, read = {k: tuple(v.shape) for k, v in raw.items()}, lambda: raw
    else:
        raise CheckpointNotFoundError(f"{folder} has neither {WEIGHTS_NAME} nor {TORCH_WEIGHTS_NAME}")
    inside, outside = _split(config, shapes, str(file))
    network = _network_from(config, inside, lambda: _without_prefix(read(), PREFIX[config.kind])[0], str(file), outside)
    network.source = {"folder": folder, "files": [CONFIG_NAME, file.name], "hub": hub}
    return network.to(device).eval()


# --- Lightning checkpoints --------------------------------------------------------------------------
def _ema_tensors(ckpt: dict, params: list, path) -> list[torch.Tensor]:
    """The EMA's shadow list, checked against the network's parameters (matched in order)."""
    shadow = ckpt.get("ema", {}).get("shadow_params") if isinstance(ckpt.get("ema"), dict) else None
    if not isinstance(shadow, list):
        raise MissingKeysError(f"{path} has no EMA weights (ckpt['ema']['shadow_params']); use ema=False for the raw weights")
    if len(shadow) != len(params):
        raise MissingKeysError(f"{path}: the EMA holds {len(shadow)} tensors but the network has {len(params)} parameters (matched in order)")
    others = [f"{i} (backbone.{name}: a {type(s).__name__})" for i, ((name, _), s) in enumerate(zip(params, shadow)) if not isinstance(s, torch.Tensor)]
    if others:
        raise CorruptCheckpointError(f"{path}: EMA entries that are not tensors: {_listed(others)}")
    wrong = [f"backbone.{name}: expected {tuple(p.shape)}, got {tuple(s.shape)}" for (name, p), s in zip(params, shadow) if tuple(s.shape) != tuple(p.shape)]
    if wrong:
        raise ShapeMismatchError(f"{path}: EMA tensors of the wrong shape (matched in parameter order): {_listed(wrong)}")
    check_finite(((f"backbone.{name} (EMA)", s) for (name, _), s in zip(params, shadow)), str(path))
    return shadow


def load_lightning_checkpoint(path, config: DiTConfig | None = None, *, ema: bool = True, device="cpu", time_conditioning: bool = False, model_length: int = 1024):
    """The network of a Lightning .ckpt from MDLM's training code, with its EMA weights
    (ema=True) or its raw weights (ema=False), in eval mode on `device`.

    Only the tensors under "backbone." belong to the network; the rest of the file
    (optimizer, loops, callbacks, other modules) is left alone. Without a config,
    the sizes come from the weights, and time_conditioning and model_length (which
    weights cannot show) from the arguments (defaults: MDLM's OWT model)."""
    device = resolve_device(device)
    if config is not None and not isinstance(config, DiTConfig):
        raise TypeError(f"config must be a DiTConfig or None, got {type(config).__name__}")
    for name, value in (("ema", ema), ("time_conditioning", time_conditioning)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r} (a {type(value).__name__})")
    path = local_path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"no file {path}")
    ckpt = safe_torch_load(path, mmap=True)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path} is not a Lightning checkpoint: it has no 'state_dict'")
    source = f"{path} (state_dict)"
    backbone = {k: v for k, v in ckpt["state_dict"].items() if isinstance(k, str) and k.startswith("backbone.")}
    state = _without_prefix(tensors_of(backbone, source), "backbone.")[0]
    if config is None:
        kind = "mdlm" if any(k.startswith("sigma_map.") for k in state) else "ar"
        sizes = architecture_of(state)
        needed = ("vocab_size", "hidden_dim", "n_heads") + (("cond_dim",) if kind == "mdlm" else ())
        if not sizes["n_blocks"] or any(n not in sizes for n in needed):
            raise MissingKeysError(f"{path}: the network's sizes cannot be read from its 'backbone.' tensors (found {sizes}); pass a config")
        config = DiTConfig(kind=kind, model_length=model_length, time_conditioning=time_conditioning and kind == "mdlm", **sizes)
    if config.kind == "sedd":
        raise CheckpointError("SEDD's training checkpoints are not Lightning files; load a SEDD folder with load_pretrained")
    network = _network_from(config, state, lambda: state, source)
    if ema:
        params = list(network.named_parameters())
        with torch.no_grad():
            for (_, p), s in zip(params, _ema_tensors(ckpt, params, path)):
                p.copy_(s)
    network.source = {"folder": path.parent, "files": [path.name], "hub": None}
    return network.to(device).eval()
