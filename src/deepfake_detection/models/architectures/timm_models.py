"""Any timm image model as a detector: its backbone, pooled as timm pools it, then Dropout →
Linear(num_features, 1).

`model=timm model.name=<name>` gives the field's staples (`efficientnet_b4`,
`legacy_xception`, `resnet50`, `convnext_tiny`, `vit_small_patch16_224`, ...) without a
module of their own. The feature blocks are timm's own coarse parameter groups (the stem,
then each stage or transformer block), so `freeze=backbone` and `freeze=last_n` count what
the model's authors call its stages. Grad-CAM looks at the last stage timm reports in
`feature_info`, with the token grid turned back into a map for a vision transformer.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from deepfake_detection.errors import ConfigError, WeightsError
from deepfake_detection.models.base import BaseDetector, OptimizerFactory, SchedulerFactory
from deepfake_detection.models.pretrained import load_backbone_weights, read_state_dict
from deepfake_detection.models.registry import register
from deepfake_detection.rules import Rule, boolean, existing_file, number, setting

log = logging.getLogger(__name__)


def _is_model_name(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


@dataclass(frozen=True)
class TimmSettings:
    """The `model.*` keys of `model=timm` (conf/model/timm.yaml)."""

    #: A timm model name (`timm.list_models()`), e.g. efficientnet_b0, resnet50, convnext_tiny.
    name: str = setting(
        Rule(expected="a timm model name", accepts=_is_model_name), "efficientnet_b0"
    )
    pretrained: bool = setting(boolean(), True)
    #: A local copy of the pretrained weights (.pth/.bin state_dict, or .safetensors).
    weights_path: str | None = setting(existing_file(nullable=True, blank_is_null=True), None)
    dropout: float = setting(number(0, 1, high_open=True), 0.2)
    channels_last: bool = setting(boolean(), True)


class TimmNet(nn.Module):
    """A timm backbone without its classifier, and the one-logit head."""

    def __init__(self, backbone: nn.Module, dropout: float) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(backbone.num_features, 1))

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        """timm's own pooling of its features (average, class token, ...)."""
        return self.backbone.forward_head(self.backbone.forward_features(images), pre_logits=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(images))


class _ParameterGroup(nn.Module):
    """Parameters of one of timm's groups, gathered so freezing can treat them as a block.

    It is never a child of the network: its parameters stay the network's, once each."""

    def __init__(self, named: Sequence[tuple[str, nn.Parameter]]) -> None:
        super().__init__()
        for name, parameter in named:
            self.register_parameter(name.replace(".", "__"), parameter)


class _Pooled(nn.Module):
    """The whole frozen backbone as a feature-cache prefix: images → pooled features."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_head(self.backbone.forward_features(images), pre_logits=True)


def _backbone(name: str) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise ConfigError("model=timm needs timm: pip install timm") from None
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"model.name={name}: not a timm model (timm.list_models()){hint}")
    return timm.create_model(name, pretrained=False, num_classes=0)


def _read_weights(path: str) -> dict[str, torch.Tensor]:
    if Path(path).suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except Exception as err:  # a damaged or foreign file
            raise WeightsError(
                f"model.weights_path={path}: not a safetensors file ({err})"
            ) from None
    return read_state_dict(path)


def _download_into(backbone: nn.Module, name: str) -> None:
    """timm's pretrained weights for `name` (from the Hugging Face hub, cached)."""
    import timm

    try:
        pretrained = timm.create_model(name, pretrained=True, num_classes=0)
    except Exception as err:  # offline, no such weights, hub errors: one answer
        raise WeightsError(
            f"model.pretrained=true: could not get timm's pretrained weights for {name} "
            f"({type(err).__name__}: {str(err).splitlines()[0][:200]}). Offline? Give "
            "model.weights_path=<a local copy of them> (.pth or .safetensors), or train from "
            "scratch with model.pretrained=false"
        ) from None
    backbone.load_state_dict(pretrained.state_dict())
    log.info("loaded timm's pretrained weights for %s", name)


def _classifier_prefix(backbone: nn.Module) -> str:
    classifier = getattr(backbone, "default_cfg", {}).get("classifier", "fc")
    return (classifier[0] if isinstance(classifier, (list, tuple)) else classifier) + "."


def last_stage(detector: BaseDetector) -> nn.Module:
    """Grad-CAM's layer: the last stage timm lists in `feature_info`."""
    backbone = detector.net.backbone
    info = getattr(backbone, "feature_info", None)
    if info:
        last = info[-1]["module"] if isinstance(info, list) else info.module_name()[-1]
        return backbone.get_submodule(last)
    return detector.feature_blocks()[-1]


def token_grid(detector: BaseDetector) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """For a transformer's (N, tokens, C) activations, the (N, C, h, w) map Grad-CAM needs:
    the class and register tokens dropped, the patch tokens laid back on their grid."""
    backbone = detector.net.backbone
    if not hasattr(backbone, "num_prefix_tokens"):
        return None
    prefix = int(backbone.num_prefix_tokens)

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 3:
            return tokens
        patches = tokens[:, prefix:, :]
        side = math.isqrt(patches.shape[1])
        grid = patches.reshape(patches.shape[0], side, side, patches.shape[2])
        return grid.permute(0, 3, 1, 2)

    return reshape


@register(
    "timm",
    settings=TimmSettings,
    default_weights="timm's pretrained weights of model.name (Hugging Face hub): "
    "model.weights_path, else timm's download",
    gradcam_layer=last_stage,
    gradcam_reshape=token_grid,
)
class TimmDetector(BaseDetector):
    """A timm model (`model.name`) with a one-logit head."""

    def __init__(
        self,
        name: str = "efficientnet_b0",
        pretrained: bool = True,
        weights_path: str | None = None,
        dropout: float = 0.2,
        freeze: Mapping | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        channels_last: bool = True,
    ) -> None:
        backbone = _backbone(name)
        if pretrained and weights_path:
            state = _read_weights(weights_path)
            prefix = _classifier_prefix(backbone)
            load_backbone_weights(backbone, state, prefix, f"model.weights_path={weights_path}")
        elif pretrained:
            _download_into(backbone, name)
        elif weights_path:
            log.info("model.pretrained=false: random init, ignoring weights_path=%s", weights_path)
        net = TimmNet(backbone, dropout)
        self._groups = self._parameter_groups(net)
        super().__init__(net, freeze, optimizer, scheduler, channels_last)
        self.timm_name = name
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])

    @staticmethod
    def _parameter_groups(net: TimmNet) -> list[_ParameterGroup]:
        """timm's coarse groups of the backbone's parameters (stem, then each stage or
        block), input to output."""
        from timm.models import group_parameters

        backbone = net.backbone
        groups = group_parameters(backbone, backbone.group_matcher(coarse=True))
        named = dict(backbone.named_parameters())
        ordered = [groups[key] for key in sorted(groups)]
        return [_ParameterGroup([(n, named[n]) for n in names]) for names in ordered]

    def __setattr__(self, name: str, value: object) -> None:
        if name == "_groups":  # a plain list: the groups are views, not children
            object.__setattr__(self, name, value)
            return
        super().__setattr__(name, value)

    @property
    def display_name(self) -> str:
        return f"timm:{self.timm_name}"

    def feature_blocks(self) -> Sequence[nn.Module]:
        return self._groups

    def head_pool(self, features: torch.Tensor) -> torch.Tensor:
        return self.net.backbone.forward_head(features, pre_logits=True)

    def head_rest(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net.head(pooled)

    def frozen_depth(self) -> int:
        """The feature cache stores the pooled features of a wholly frozen backbone only:
        timm's groups are not a chain of modules a partial prefix could run."""
        blocks = self.feature_blocks()
        frozen = all(not p.requires_grad for block in blocks for p in block.parameters())
        return len(blocks) if frozen else 0

    def feature_prefix(self, depth: int) -> nn.Module:
        if depth != len(self.feature_blocks()):
            raise ConfigError("model=timm: the feature cache needs freeze=backbone")
        return _Pooled(self.net.backbone)
