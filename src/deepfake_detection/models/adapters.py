"""Pieces that fit other libraries' networks (timm, OpenCLIP) to the detector interface.

- `ParameterGroup`: a group of a network's parameters treated as one feature block, so
  freezing counts the stages a library defines, without copying or moving any parameter;
- `Renormalise`: the detectors' ImageNet-normalised input mapped to what a backbone's
  weights were trained with (CLIP's statistics, [-1, 1], ...), inside the network, so every
  path that feeds a detector (predict, exports, the service) stays the same;
- `token_grid`: a transformer's token activations laid back on their patch grid, the map
  Grad-CAM needs;
- `GroupedDetector`: a detector whose blocks are such groups.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from deepfake_detection.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from deepfake_detection.errors import ConfigError
from deepfake_detection.models.base import BaseDetector


class ParameterGroup(nn.Module):
    """Parameters of one group, gathered so that freezing can treat them as a block.

    Never make it a child of the network: its parameters stay the network's, once each."""

    def __init__(self, named: Sequence[tuple[str, nn.Parameter]]) -> None:
        super().__init__()
        for name, parameter in named:
            self.register_parameter(name.replace(".", "__"), parameter)


def parameter_groups(
    module: nn.Module, group_of: Callable[[str], int | None]
) -> list[ParameterGroup]:
    """`module`'s parameters grouped by `group_of(name)` (None: in no group), in group order."""
    groups: dict[int, list[tuple[str, nn.Parameter]]] = {}
    for name, parameter in module.named_parameters():
        index = group_of(name)
        if index is not None:
            groups.setdefault(index, []).append((name, parameter))
    return [ParameterGroup(groups[index]) for index in sorted(groups)]


class Renormalise(nn.Module):
    """ImageNet-normalised RGB → RGB normalised with `mean` and `std`: an exact per-channel
    affine map, kept in the state_dict (a rebuilt checkpoint has it) and exported."""

    def __init__(
        self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
    ) -> None:
        super().__init__()
        given_mean, given_std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        own_mean = torch.tensor(mean, dtype=torch.float32)
        own_std = torch.tensor(std, dtype=torch.float32)
        # x_own = (x * given_std + given_mean - own_mean) / own_std
        self.register_buffer("scale", (given_std / own_std).view(1, 3, 1, 1))
        self.register_buffer("shift", ((given_mean - own_mean) / own_std).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images * self.scale + self.shift

    @property
    def target(self) -> dict[str, list[float]]:
        """The mean and standard deviation it maps to, read back from its buffers."""
        given_mean, given_std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        std = given_std / self.scale.flatten().cpu()
        mean = given_mean - self.shift.flatten().cpu() * std
        return {
            "mean": [round(float(v), 6) for v in mean],
            "std": [round(float(v), 6) for v in std],
        }


def token_grid(prefix_tokens: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """(N, tokens, C) activations → (N, C, h, w): the first `prefix_tokens` (class and
    register tokens) dropped, the patch tokens laid back on their square grid."""

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 3:
            return tokens
        patches = tokens[:, prefix_tokens:, :]
        side = math.isqrt(patches.shape[1])
        grid = patches.reshape(patches.shape[0], side, side, patches.shape[2])
        return grid.permute(0, 3, 1, 2)

    return reshape


class GroupedDetector(BaseDetector):
    """A detector whose feature blocks are parameter groups of another library's network.

    The groups are views, not modules of the network, so they are kept in a plain list.
    They are not a chain of modules a partial prefix could run either: the feature cache
    stores the pooled features of a wholly frozen backbone (`pooled_prefix`) and nothing
    in between."""

    def __setattr__(self, name: str, value: object) -> None:
        if name == "_groups":
            object.__setattr__(self, name, value)
            return
        super().__setattr__(name, value)

    def feature_blocks(self) -> Sequence[nn.Module]:
        return self._groups

    def pooled_prefix(self) -> nn.Module:
        """The frozen backbone as a module: images → the pooled features `head_rest` takes."""
        raise NotImplementedError

    def frozen_depth(self) -> int:
        blocks = self.feature_blocks()
        frozen = all(not p.requires_grad for block in blocks for p in block.parameters())
        return len(blocks) if frozen else 0

    def feature_prefix(self, depth: int) -> nn.Module:
        if depth != len(self.feature_blocks()):
            raise ConfigError(f"model={self.model_name}: the feature cache needs freeze=backbone")
        return self.pooled_prefix()
