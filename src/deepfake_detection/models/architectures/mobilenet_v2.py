"""torchvision MobileNetV2 with a GAP → Dropout → Linear(1280, 1) head."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

from deepfake_detection.models.base import BaseDetector, OptimizerFactory, SchedulerFactory
from deepfake_detection.models.pretrained import (
    download_state_dict,
    load_backbone_weights,
    read_state_dict,
)
from deepfake_detection.models.registry import register
from deepfake_detection.rules import boolean, existing_file, number, setting

WEIGHTS_ENV_VAR = "MOBILENET_V2_WEIGHTS"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MobileNetV2Settings:
    """The `model.*` keys of `model=mobilenet_v2` (conf/model/mobilenet_v2.yaml)."""

    pretrained: bool = setting(boolean(), True)
    # ${oc.env:MOBILENET_V2_WEIGHTS,null}: a local copy of the ImageNet weights, if any.
    weights_path: str | None = setting(existing_file(nullable=True, blank_is_null=True), None)
    dropout: float = setting(number(0, 1, high_open=True), 0.2)
    channels_last: bool = setting(boolean(), True)


@register(
    "mobilenet_v2",
    settings=MobileNetV2Settings,
    default_weights="ImageNet (torchvision IMAGENET1K_V1): model.weights_path, else "
    f"${WEIGHTS_ENV_VAR}, else torchvision's download",
)
class MobileNetV2Detector(BaseDetector):
    """torchvision's own `mobilenet_v2(num_classes=1)`, so `model.pth` loads without this package.

    Its classifier is exactly Dropout → Linear after torchvision's global average pooling.
    `pretrained` starts from ImageNet weights: the local `weights_path` when given, else
    torchvision's download.
    """

    backbone_library = "torchvision"

    def __init__(
        self,
        pretrained: bool = True,
        weights_path: str | None = None,
        dropout: float = 0.2,
        freeze: Mapping | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        channels_last: bool = True,
    ) -> None:
        net = mobilenet_v2(weights=None, num_classes=1, dropout=dropout)
        if pretrained and weights_path:
            state = read_state_dict(weights_path)
            load_backbone_weights(net, state, "classifier.", f"model.weights_path={weights_path}")
        elif pretrained:
            weights = MobileNet_V2_Weights.IMAGENET1K_V1
            state = download_state_dict(weights, WEIGHTS_ENV_VAR)
            load_backbone_weights(net, state, "classifier.", str(weights))
        elif weights_path:
            log.info("model.pretrained=false: random init, ignoring weights_path=%s", weights_path)
        super().__init__(net, freeze, optimizer, scheduler, channels_last)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])

    def feature_blocks(self) -> Sequence[nn.Module]:
        return list(self.net.features)

    def head_pool(self, features: torch.Tensor) -> torch.Tensor:
        # As torchvision's `MobileNetV2._forward_impl` does between features and classifier.
        return torch.flatten(nn.functional.adaptive_avg_pool2d(features, (1, 1)), 1)

    def head_rest(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net.classifier(pooled)
