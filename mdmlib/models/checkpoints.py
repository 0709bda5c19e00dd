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

Reading is strict: every parameter and buffer the network has must be present
with its exact shape, and nothing else. Pickles are read with
torch.load(weights_only=True), which never runs code from the file; the
objects Lightning stores beside the weights (omegaconf configs, tokenizers:
modules listed in INERT_MODULES) are replaced by inert stand-ins that keep their
pickled state and run nothing, and a file that names any other global is refused.

Errors, each its own type (all are CheckpointError, a ValueError):
MissingKeysError, UnexpectedKeysError, ShapeMismatchError, ConfigMismatchError,
CorruptCheckpointError, UnsafePickleError, CheckpointNotFoundError; and
DeviceUnavailableError (mdmlib.models.device) for CUDA asked for where there is none.
"""
from __future__ import annotations

import contextlib
import json
import pickle
import re
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError

from mdmlib.infra.provenance import provenance
from mdmlib.infra.results import write_atomically
from mdmlib.models.config import DiTConfig
from mdmlib.models.device import resolve_device
from mdmlib.models.dit import build_network

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TORCH_WEIGHTS_NAME = "pytorch_model.bin"
PREFIX = {"mdlm": "backbone.", "ar": "backbone.", "sedd": ""}
# libraries whose objects Lightning (and MDLM's training code) pickles beside the weights
INERT_MODULES = ("omegaconf", "transformers", "tokenizers", "lightning", "pytorch_lightning", "lightning_fabric", "numpy", "collections", "pathlib", "typing")
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


class CorruptCheckpointError(CheckpointError):
    pass


class UnsafePickleError(CheckpointError):
    pass


class CheckpointNotFoundError(CheckpointError):
    pass


def _listed(names: list[str]) -> str:
    more = f", ... and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


# --- config.json --------------------------------------------------------------------------
_MDLM_FIELDS = ("vocab_size", "model_length", "hidden_dim", "cond_dim", "n_blocks", "n_heads", "dropout", "time_conditioning")
_SEDD_FIELDS = {"hidden_size": "hidden_dim", "cond_dim": "cond_dim", "length": "model_length", "n_blocks": "n_blocks", "n_heads": "n_heads", "dropout": "dropout", "scale_by_sigma": "scale_by_sigma"}


def config_to_json(config: DiTConfig) -> dict:
    """config.json's content: MDLM's flat form, or SEDD's nested one."""
    if config.kind == "sedd":
        model = {name: getattr(config, field) for name, field in _SEDD_FIELDS.items()}
        return {"model": {"type": "ddit", **model}, "tokens": config.vocab_size - 1, "graph": {"type": "absorb"}, "noise": {"type": "loglinear"}}
    return {"model_type": config.kind, **{name: getattr(config, name) for name in _MDLM_FIELDS}}


def config_from_json(data: dict, source: str = CONFIG_NAME) -> DiTConfig:
    if not isinstance(data, dict):
        raise CorruptCheckpointError(f"{source} must hold a JSON object, got {type(data).__name__}")
    try:
        if isinstance(data.get("model"), dict) and "tokens" in data:  # SEDD's nested config
            graph = data.get("graph", {}).get("type", "absorb")
            if graph != "absorb":
                raise CheckpointError(f"{source}: SEDD graph {graph!r} is not supported (only the absorbing state 'absorb')")
            fields = {field: data["model"][name] for name, field in _SEDD_FIELDS.items()}
            return DiTConfig(vocab_size=data["tokens"] + 1, kind="sedd", time_conditioning=True, **fields)
        kind = data.get("model_type", "mdlm")
        if kind not in ("mdlm", "ar"):
            raise CheckpointError(f"{source}: model_type {kind!r} is not one this loader knows ('mdlm', 'ar', or SEDD's nested config)")
        return DiTConfig(kind=kind, **{name: data[name] for name in _MDLM_FIELDS})
    except KeyError as e:
        raise CheckpointError(f"{source} lacks the field {e.args[0]!r}") from e
    except (ValueError, TypeError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{source} describes no valid network: {e}") from e


def architecture_of(state: dict[str, torch.Tensor]) -> dict:
    """The sizes a (prefix-free) state dict implies, as far as its tensors show them."""
    found = {}
    if "vocab_embed.embedding" in state:
        found["vocab_size"], found["hidden_dim"] = map(int, state["vocab_embed.embedding"].shape)
    if "sigma_map.mlp.0.weight" in state:
        found["cond_dim"] = int(state["sigma_map.mlp.0.weight"].shape[0])
    if "rotary_emb.inv_freq" in state and "hidden_dim" in found and state["rotary_emb.inv_freq"].numel():
        found["n_heads"] = found["hidden_dim"] // (2 * state["rotary_emb.inv_freq"].numel())
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    if blocks:
        found["n_blocks"] = max(blocks) + 1
    return found


def _check_config(config: DiTConfig, state: dict[str, torch.Tensor], source: str) -> None:
    wrong = [f"{name}: config {getattr(config, name)}, weights {value}" for name, value in architecture_of(state).items() if getattr(config, name) != value]
    has_time_input = any(k.startswith("sigma_map.") for k in state)
    if "vocab_embed.embedding" in state and has_time_input != (config.kind != "ar"):  # (a name check decides otherwise)
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


def safe_torch_load(path) -> object:
    """torch.load(weights_only=True), with inert stand-ins for INERT_MODULES' objects."""
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
            return torch.load(path, map_location="cpu", weights_only=True)
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


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CorruptCheckpointError(f"{path} is truncated or corrupt: {e}") from e


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptCheckpointError(f"{path} is not valid JSON: {e}") from e


# --- strict loading --------------------------------------------------------------------------
def _without_prefix(state: dict[str, torch.Tensor], prefix: str) -> tuple[dict, list[str]]:
    """The tensors under `prefix` (prefix removed), and the names of all others."""
    inside = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return inside, [k for k in state if not k.startswith(prefix)]


def _hint(prefix: str, missing: list[str], unexpected: list[str]) -> str:
    if missing and unexpected and prefix and all(not k.startswith(prefix) for k in unexpected):
        return f" (the file's names lack the prefix {prefix!r}: is it a SEDD checkpoint?)"
    if missing and unexpected and not prefix and all(k.startswith("backbone.") for k in unexpected):
        return " (the file's names carry the prefix 'backbone.': is it an MDLM checkpoint?)"
    return ""


def load_state_strictly(network: torch.nn.Module, state: dict[str, torch.Tensor], source: str, outside: list[str] = (), prefix: str = "") -> None:
    """Load a prefix-free state dict into `network`, or raise the error that says what is wrong.
    `outside`: names in the file outside the prefix (reported as unexpected)."""
    expected = network.state_dict()
    missing = [prefix + k for k in expected if k not in state]
    unexpected = [prefix + k for k in state if k not in expected] + list(outside)
    hint = _hint(prefix, missing, unexpected)
    if missing:
        also = f"; it also holds names the network lacks: {_listed(unexpected)}" if unexpected else ""
        raise MissingKeysError(f"{source} lacks {len(missing)} tensor(s) of the network{hint}: {_listed(missing)}{also}")
    if unexpected:
        raise UnexpectedKeysError(f"{source} holds {len(unexpected)} tensor(s) the network does not have{hint}: {_listed(unexpected)}")
    wrong = [f"{prefix + k}: expected {tuple(v.shape)}, got {tuple(state[k].shape)}" for k, v in expected.items() if tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise ShapeMismatchError(f"{source} has {len(wrong)} tensor(s) of the wrong shape: {_listed(wrong)}")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    network.load_state_dict(state, strict=True, assign=True)


def _network_from(config: DiTConfig, state: dict, source: str, outside: list[str] = ()):
    _check_config(config, state, source)
    with torch.device("meta"):  # no time spent initialising weights that are overwritten
        network = build_network(config)
    load_state_strictly(network, state, source, outside, PREFIX[config.kind])
    return network


# --- the folder layout ---------------------------------------------------------------------------
PROVENANCE_NAME = "provenance.json"


def save_pretrained(network: torch.nn.Module, folder) -> Path:
    """Write config.json and model.safetensors (float32) into `folder`, and provenance.json (the
    project's provenance record, mdmlib.infra.provenance; the loaders do not read it); each file
    whole or not at all."""
    folder = Path(folder)
    config = network.config
    prefix = PREFIX[config.kind]
    state = {prefix + k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous() for k, v in network.state_dict().items()}
    write_atomically(folder / WEIGHTS_NAME, lambda tmp: safetensors.torch.save_file(state, tmp, metadata={"format": "pt"}))
    text = json.dumps(config_to_json(config), indent=2, sort_keys=True) + "\n"
    write_atomically(folder / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text))
    record = json.dumps(provenance(next(network.parameters()).device), indent=2, sort_keys=True) + "\n"
    write_atomically(folder / PROVENANCE_NAME, lambda tmp: Path(tmp).write_text(record))
    return folder


def _fetch_by_hand(repo_id: str, reason: str) -> str:
    name = repo_id.rsplit("/", 1)[-1]
    return (
        f"{repo_id!r} is not a local folder, and it could not be fetched from the Hugging Face hub: {reason}. "
        f"Fetch the folder by hand on a machine with internet access:\n"
        f"    huggingface-cli download {repo_id} --local-dir {name}\n"
        f"or\n"
        f"    git lfs install && git clone https://huggingface.co/{repo_id} {name}\n"
        f"then copy the folder {name}/ to this machine and load it with load_pretrained('{name}') "
        f"(or the path you copied it to)."
    )


def checkpoint_folder(source) -> Path:
    """A local folder as it is; a hub id 'owner/name' downloaded when huggingface_hub can."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file: give the folder holding {CONFIG_NAME} and {WEIGHTS_NAME} (a Lightning .ckpt: load_lightning_checkpoint)")
    if not re.fullmatch(r"[\w-][\w.-]*/[\w-][\w.-]*", str(source)):
        raise CheckpointNotFoundError(f"no folder {path} (and {str(source)!r} is not a hub id of the form 'owner/name')")
    try:
        import huggingface_hub
    except ImportError:
        raise CheckpointNotFoundError(_fetch_by_hand(str(source), "the optional package huggingface_hub is not installed (pip install huggingface_hub, or the project's extra: pip install -e '.[paper]')")) from None
    try:
        return Path(huggingface_hub.snapshot_download(repo_id=str(source), allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, TORCH_WEIGHTS_NAME]))
    except Exception as e:  # no network, unknown repository, ...: the by-hand route always works
        raise CheckpointNotFoundError(_fetch_by_hand(str(source), f"{type(e).__name__}: {e}")) from e


def load_pretrained(source, device="cpu"):
    """The network in a folder (local path, or hub id with huggingface_hub installed),
    loaded strictly, in eval mode, on `device` ("cpu", "cuda", "auto")."""
    device = resolve_device(device)
    folder = checkpoint_folder(source)
    if not (folder / CONFIG_NAME).is_file():
        raise CheckpointNotFoundError(f"{folder} has no {CONFIG_NAME}")
    config = config_from_json(_read_json(folder / CONFIG_NAME), str(folder / CONFIG_NAME))
    if (folder / WEIGHTS_NAME).is_file():
        file, raw = folder / WEIGHTS_NAME, _read_safetensors(folder / WEIGHTS_NAME)
    elif (folder / TORCH_WEIGHTS_NAME).is_file():
        file, raw = folder / TORCH_WEIGHTS_NAME, safe_torch_load(folder / TORCH_WEIGHTS_NAME)
    else:
        raise CheckpointNotFoundError(f"{folder} has neither {WEIGHTS_NAME} nor {TORCH_WEIGHTS_NAME}")
    state, outside = _without_prefix(raw, PREFIX[config.kind])
    return _network_from(config, state, str(file), outside).to(device).eval()


# --- Lightning checkpoints --------------------------------------------------------------------------
def load_lightning_checkpoint(path, config: DiTConfig | None = None, *, ema: bool = True, device="cpu", time_conditioning: bool = False, model_length: int = 1024):
    """The network of a Lightning .ckpt from MDLM's training code, with its EMA weights
    (ema=True) or its raw weights (ema=False), in eval mode on `device`.

    Only the tensors under "backbone." belong to the network; the rest of the file
    (optimizer, loops, callbacks, other modules) is left alone. Without a config,
    the sizes come from the weights, and time_conditioning and model_length (which
    weights cannot show) from the arguments (defaults: MDLM's OWT model)."""
    device = resolve_device(device)
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"no file {path}")
    ckpt = safe_torch_load(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path} is not a Lightning checkpoint: it has no 'state_dict'")
    state, _ = _without_prefix(ckpt["state_dict"], "backbone.")
    if config is None:
        kind = "mdlm" if any(k.startswith("sigma_map.") for k in state) else "ar"
        sizes = architecture_of(state)
        if len(sizes) < (5 if kind == "mdlm" else 4):
            raise MissingKeysError(f"{path}: the network's sizes cannot be read from its 'backbone.' tensors (found {sizes}); pass a config")
        config = DiTConfig(kind=kind, model_length=model_length, time_conditioning=time_conditioning and kind == "mdlm", **sizes)
    if config.kind == "sedd":
        raise CheckpointError("SEDD's training checkpoints are not Lightning files; load a SEDD folder with load_pretrained")
    network = _network_from(config, state, f"{path} (state_dict)")
    if ema:
        shadow = ckpt.get("ema", {}).get("shadow_params") if isinstance(ckpt.get("ema"), dict) else None
        if not isinstance(shadow, list):
            raise MissingKeysError(f"{path} has no EMA weights (ckpt['ema']['shadow_params']); use ema=False for the raw weights")
        params = list(network.named_parameters())
        if len(shadow) != len(params):
            raise MissingKeysError(f"{path}: the EMA holds {len(shadow)} tensors but the network has {len(params)} parameters (matched in order)")
        wrong = [f"backbone.{name}: expected {tuple(p.shape)}, got {tuple(s.shape)}" for (name, p), s in zip(params, shadow) if tuple(s.shape) != tuple(p.shape)]
        if wrong:
            raise ShapeMismatchError(f"{path}: EMA tensors of the wrong shape (matched in parameter order): {_listed(wrong)}")
        with torch.no_grad():
            for (_, p), s in zip(params, shadow):
                p.copy_(s)
    return network.to(device).eval()
