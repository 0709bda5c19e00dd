"""What a network is made of: one frozen dataclass for every size and kind, and its config.json forms.

kind     what it is                                         parameter names
"mdlm"   MDLM's DiT: bidirectional, adaLN on sigma           backbone.<name> in a checkpoint
"sedd"   SEDD's DiT: the same blocks, always on sigma,       <name> (no prefix)
         its output read as a log score
"ar"     the causal twin: MDLM's autoregressive backbone     backbone.<name>
         (the same attention and MLP, a causal mask, no
         time input, so no sigma_map and no adaLN)

vocab_size counts every id the network embeds: the tokens plus one extra id,
vocab_size - 1, which is the mask (MDLM), the absorbing state (SEDD) or the
start-of-sequence input (the causal twin). The published sizes are in
PAPER.md section 6; MDLM_OWT and SEDD_SMALL spell them out.

Every field is type-checked (a size is an int and not a bool, a switch is a bool):
a wrong type is a TypeError, a wrong value a ValueError, each naming the field.
config_from_json reads config.json against a schema of JSON types (MDLM's flat
form or SEDD's nested one), so "time_conditioning": "false" is refused, not read as true.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

KINDS = ("mdlm", "sedd", "ar")
_SIZES = ("vocab_size", "model_length", "hidden_dim", "n_heads", "n_blocks", "cond_dim")
_SWITCHES = ("time_conditioning", "scale_by_sigma")


def _shown(value) -> str:
    """A value as it reads in JSON, with its type: "false" (a str)."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return f"{text[:80]} (a {type(value).__name__})"


@dataclass(frozen=True)
class DiTConfig:
    vocab_size: int  # tokens + 1 (mask / absorbing state / start id = vocab_size - 1)
    model_length: int = 1024  # longest sequence the network is meant for
    hidden_dim: int = 768
    n_heads: int = 12
    n_blocks: int = 12
    cond_dim: int = 128  # width of the time embedding c (unused by "ar")
    time_conditioning: bool = False  # "mdlm" only: if False the network is given sigma = 0
    dropout: float = 0.1  # on the two residual branches, in training mode only
    kind: str = "mdlm"
    scale_by_sigma: bool = True  # "sedd" only: subtract log(expm1(sigma)) + log(vocab_size - 1)

    def __post_init__(self):
        if not isinstance(self.kind, str):
            raise TypeError(f"kind must be a string, one of {KINDS}, got {_shown(self.kind)}")
        if self.kind not in KINDS:
            raise ValueError(f"unknown network kind {self.kind!r}: expected one of {KINDS}")
        for name in _SIZES:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be a positive integer, got {_shown(value)}")
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in _SWITCHES:
            if not isinstance(getattr(self, name), bool):  # a string "false" would read as true
                raise TypeError(f"{name} must be True or False, got {_shown(getattr(self, name))}")
        if not isinstance(self.dropout, (int, float)) or isinstance(self.dropout, bool):
            raise TypeError(f"dropout must be a number in [0, 1), got {_shown(self.dropout)}")
        if not (math.isfinite(self.dropout) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.vocab_size < 3:
            raise ValueError(f"vocab_size counts the tokens plus the extra id, so it must be at least 3, got {self.vocab_size}")
        if self.hidden_dim % self.n_heads or (self.hidden_dim // self.n_heads) % 2:
            raise ValueError(f"hidden_dim {self.hidden_dim} must split into {self.n_heads} heads of even width (rotary pairs)")
        if self.kind == "sedd" and not self.time_conditioning:
            raise ValueError("SEDD networks are always conditioned on sigma: set time_conditioning=True")
        if self.kind == "ar" and self.time_conditioning:
            raise ValueError("the causal twin has no time input: time_conditioning must be False")

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.n_heads

    @property
    def extra_id(self) -> int:
        """The id after the tokens: the mask (MDLM), absorbing state (SEDD) or start input (AR)."""
        return self.vocab_size - 1

    def replace(self, **changes) -> "DiTConfig":
        return dataclasses.replace(self, **changes)


# kuleshov-group/mdlm-owt: GPT-2's 50,257 tokens + the mask id 50,257
MDLM_OWT = DiTConfig(vocab_size=50_258, model_length=1024, hidden_dim=768, n_heads=12, n_blocks=12, cond_dim=128, time_conditioning=False, dropout=0.1)
# louaaron/sedd-small: the same sizes, absorbing state 50,257, always on sigma
SEDD_SMALL = MDLM_OWT.replace(kind="sedd", time_conditioning=True, scale_by_sigma=True)


# --- config.json -----------------------------------------------------------------------------------
# the JSON type each field must have: "integer" (not a boolean, not 12.0), "number", "boolean"
MDLM_SCHEMA = {"vocab_size": "integer", "model_length": "integer", "hidden_dim": "integer", "cond_dim": "integer", "n_blocks": "integer",
               "n_heads": "integer", "dropout": "number", "time_conditioning": "boolean"}
# SEDD's nested form: its "model" field -> the DiTConfig field, and the JSON type
SEDD_SCHEMA = {"hidden_size": ("hidden_dim", "integer"), "cond_dim": ("cond_dim", "integer"), "length": ("model_length", "integer"),
               "n_blocks": ("n_blocks", "integer"), "n_heads": ("n_heads", "integer"), "scale_by_sigma": ("scale_by_sigma", "boolean"),
               "dropout": ("dropout", "number")}
_JSON_TYPES = {"integer": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
               "number": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
               "boolean": (lambda v: isinstance(v, bool), "true or false (a JSON boolean, not a string)"),
               "string": (lambda v: isinstance(v, str), "a string")}


def _field(data: dict, name: str, json_type: str, where: str = ""):
    if name not in data:
        raise ValueError(f"lacks the field {where + name!r}")
    accepts, wanted = _JSON_TYPES[json_type]
    if not accepts(data[name]):
        raise TypeError(f"{where + name} must be {wanted}, got {_shown(data[name])}")
    return data[name]


def _object(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise TypeError(f"{where} must be a JSON object, got {_shown(value)}")
    return value


def config_to_json(config: DiTConfig) -> dict:
    """config.json's content: MDLM's flat form, or SEDD's nested one."""
    if config.kind == "sedd":
        model = {name: getattr(config, field) for name, (field, _) in SEDD_SCHEMA.items()}
        return {"model": {"type": "ddit", **model}, "tokens": config.vocab_size - 1, "graph": {"type": "absorb"}, "noise": {"type": "loglinear"}}
    return {"model_type": config.kind, **{name: getattr(config, name) for name in MDLM_SCHEMA}}


def config_from_json(data) -> DiTConfig:
    """The DiTConfig a config.json describes; fields beyond the schema's (transformers adds
    some, SEDD stores its whole training config) are ignored. TypeError / ValueError name the field."""
    data = _object(data, "the config")
    if "model" in data and "tokens" in data:  # SEDD's nested config
        model = _object(data["model"], "model")
        if model.get("type", "ddit") != "ddit":
            raise ValueError(f"model.type {_shown(model['type'])} is not SEDD's 'ddit'")
        graph = _field(_object(data.get("graph", {"type": "absorb"}), "graph"), "type", "string", "graph.")
        if graph != "absorb":
            raise ValueError(f"SEDD graph {graph!r} is not supported (only the absorbing state 'absorb')")
        fields = {field: _field(model, name, json_type, "model.") for name, (field, json_type) in SEDD_SCHEMA.items()}
        return DiTConfig(vocab_size=_field(data, "tokens", "integer") + 1, kind="sedd", time_conditioning=True, **fields)
    kind = _field(data, "model_type", "string") if "model_type" in data else "mdlm"
    if kind not in ("mdlm", "ar"):
        raise ValueError(f"model_type {kind!r} is not one this loader knows ('mdlm', 'ar', or SEDD's nested config)")
    return DiTConfig(kind=kind, **{name: _field(data, name, json_type) for name, json_type in MDLM_SCHEMA.items()})
