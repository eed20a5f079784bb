"""The from-scratch baseline: Conv→ReLU→MaxPool blocks and a dense head."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from deepfake_detection.errors import ConfigError
from deepfake_detection.models.base import BaseDetector, OptimizerFactory, SchedulerFactory
from deepfake_detection.models.registry import register
from deepfake_detection.rules import boolean, integer, list_of, number, setting


@dataclass(frozen=True)
class CustomCNNSettings:
    """The `model.*` keys of `model=custom_cnn` (conf/model/custom_cnn.yaml)."""

    widths: list[int] = setting(
        list_of(integer(1), expected="a non-empty list of integers >= 1"), [32, 64, 128]
    )
    hidden_units: int = setting(integer(1), 128)
    dropout: float = setting(number(0, 1, high_open=True), 0.5)
    pooled_size: int = setting(integer(1), 4)
    channels_last: bool = setting(boolean(), True)


class CustomCNN(nn.Module):
    """Plain CNN; adaptive pooling before the head keeps its size independent of image size."""

    def __init__(
        self,
        widths: Sequence[int] = (32, 64, 128),
        hidden_units: int = 128,
        dropout: float = 0.5,
        pooled_size: int = 4,
    ) -> None:
        super().__init__()
        blocks = []
        in_channels = 3
        for width in widths:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(in_channels, width, kernel_size=3, padding=1),
                    nn.ReLU(inplace=True),
                    nn.MaxPool2d(2),
                )
            )
            in_channels = width
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(pooled_size),
            nn.Flatten(),
            nn.Linear(in_channels * pooled_size * pooled_size, hidden_units),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_units, 1),
        )

    def forward(self, x):
        return self.head(self.features(x))


@register("custom_cnn", settings=CustomCNNSettings)
class CustomCNNDetector(BaseDetector):
    """The custom CNN trained from scratch; its feature blocks are the conv blocks."""

    def __init__(
        self,
        widths: Sequence[int] = (32, 64, 128),
        hidden_units: int = 128,
        dropout: float = 0.5,
        pooled_size: int = 4,
        freeze: Mapping | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        channels_last: bool = True,
    ) -> None:
        widths = list(widths)
        if not widths or any(not isinstance(w, int) or w <= 0 for w in widths):
            raise ConfigError(f"model.widths={widths}: need a non-empty list of positive ints")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.dropout={dropout}: must be in [0, 1)")
        net = CustomCNN(widths, hidden_units, dropout, pooled_size)
        super().__init__(net, freeze, optimizer, scheduler, channels_last)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])

    def feature_blocks(self) -> Sequence[nn.Module]:
        return list(self.net.features)

    def head_pool(self, features: torch.Tensor) -> torch.Tensor:
        return self.net.head[:2](features)  # adaptive pooling, flatten

    def head_rest(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net.head[2:](pooled)
