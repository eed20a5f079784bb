"""ImageNet weights for torchvision backbones: downloaded for online users, or a local file."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import torch
from torch import nn

from deepfake_detection.checkpoint_io import CheckpointError, safe_torch_load
from deepfake_detection.errors import WeightsError

log = logging.getLogger(__name__)


def _offline_hint(env_var: str) -> str:
    return (
        f"pass model.weights_path=<torchvision state_dict .pth> or set the {env_var} "
        "environment variable to such a file"
    )


def download_state_dict(weights_enum, env_var: str) -> dict[str, torch.Tensor]:
    """Fetch weights through torchvision's weights API (cached under $TORCH_HOME).

    `weights_only=True` as for every other file we load: torch.hub's default would unpickle
    whatever the cached file holds.
    """
    try:
        return weights_enum.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only load failed" not in str(err).lower():
            raise WeightsError(
                f"model.pretrained=true: the cached {weights_enum} in {torch.hub.get_dir()} is "
                f"corrupt ({err}); delete it, or {_offline_hint(env_var)}"
            ) from None
        raise WeightsError(  # a tampered file in the download cache
            f"model.pretrained=true: refused to load the cached {weights_enum} from "
            f"{torch.hub.get_dir()}: it holds objects that would need arbitrary code to "
            f"unpickle, and nothing in it was run; delete it, or {_offline_hint(env_var)}"
        ) from None
    except Exception as err:  # urllib, SSL, hash and IO errors all mean the same to the user
        raise WeightsError(
            f"model.pretrained=true: could not download {weights_enum} ({type(err).__name__}: "
            f"{err}). Offline? {_offline_hint(env_var)}"
        ) from err


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"model.weights_path={path}: no such file")
    try:
        state = safe_torch_load(path, "model.weights_path")
    except CheckpointError as err:
        raise WeightsError(str(err)) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"model.weights_path={path}: expected a plain state_dict of tensors")
    return state


def load_backbone_weights(
    net: nn.Module, state: dict[str, torch.Tensor], head_prefix: str, source: str
) -> None:
    """Load everything but the classifier head, which is new for the one-logit task."""
    backbone_state = {k: v for k, v in state.items() if not k.startswith(head_prefix)}
    try:
        result = net.load_state_dict(backbone_state, strict=False)
    except RuntimeError as err:  # shape mismatches
        first = str(err).split("\n\t")[1] if "\n\t" in str(err) else str(err)
        raise WeightsError(
            f"{source}: does not match the {type(net).__name__} backbone: {first}"
        ) from err
    missing = [k for k in result.missing_keys if not k.startswith(head_prefix)]
    if missing or result.unexpected_keys:
        detail = (
            f"missing {len(missing)} keys (e.g. {missing[:3]})"
            if missing
            else f"unexpected keys (e.g. {result.unexpected_keys[:3]})"
        )
        raise WeightsError(f"{source}: does not match the {type(net).__name__} backbone: {detail}")
    log.info("loaded %d backbone tensors from %s", len(backbone_state), source)
