"""Networks: MDLM's DiT in plain PyTorch, SEDD's variant, a causal twin, and their checkpoints.

  config            DiTConfig (any size, kind "mdlm" | "sedd" | "ar"); MDLM_OWT, SEDD_SMALL
  dit               the networks: DiT (MDLM, SEDD), CausalTransformer (the causal twin), build_network
  parameterization  networks as sampler denoisers: SubsDenoiser (MDLM "subs"), ScoreDenoiser (SEDD)
  autoregressive    AutoregressiveModel: next-token probabilities, per-token NLL (a learned judge)
  checkpoints       save_pretrained / load_pretrained (config.json + model.safetensors, local or hub),
                    load_lightning_checkpoint (EMA weights, no pickled code run), the error types
  device            resolve_device ("cpu", "cuda", "auto"), DeviceUnavailableError

The published layout and forward pass these follow are in PAPER.md section 6. Training
(the loop, cached trained networks) and loading a generator for the paper-scale run live
here too. May import: mdmlib.infra, mdmlib.precision, mdmlib.stats, mdmlib.mdm,
mdmlib.language.
Typical use:

    net = build_network(DiTConfig(vocab_size=V + 1, hidden_dim=128, n_heads=4, n_blocks=4, cond_dim=64, model_length=L))
    denoiser = SubsDenoiser(net)                  # any sampler in mdmlib.mdm.samplers accepts it
    save_pretrained(net, "checkpoints/mine")      # and load_pretrained("checkpoints/mine") later
"""
from mdmlib.models.autoregressive import AutoregressiveModel
from mdmlib.models.checkpoints import (
    CheckpointError,
    CheckpointNotFoundError,
    ConfigMismatchError,
    CorruptCheckpointError,
    InvalidConfigError,
    MissingKeysError,
    NonFiniteWeightsError,
    ShapeMismatchError,
    UnexpectedKeysError,
    UnsafePickleError,
    load_lightning_checkpoint,
    load_pretrained,
    save_pretrained,
)
from mdmlib.models.config import MDLM_OWT, SEDD_SMALL, DiTConfig
from mdmlib.models.device import DeviceUnavailableError, resolve_device
from mdmlib.models.dit import CausalTransformer, DiT, build_network
from mdmlib.models.parameterization import ScoreDenoiser, SubsDenoiser

__all__ = [
    "AutoregressiveModel",
    "CausalTransformer",
    "CheckpointError",
    "CheckpointNotFoundError",
    "ConfigMismatchError",
    "CorruptCheckpointError",
    "DeviceUnavailableError",
    "DiT",
    "DiTConfig",
    "InvalidConfigError",
    "MDLM_OWT",
    "MissingKeysError",
    "NonFiniteWeightsError",
    "SEDD_SMALL",
    "ScoreDenoiser",
    "ShapeMismatchError",
    "SubsDenoiser",
    "UnexpectedKeysError",
    "UnsafePickleError",
    "build_network",
    "load_lightning_checkpoint",
    "load_pretrained",
    "resolve_device",
    "save_pretrained",
]
