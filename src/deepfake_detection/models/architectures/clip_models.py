"""A CLIP image tower (OpenCLIP) with a one-logit head: UniversalFakeDetect's detector.

Ojha et al. (CVPR 2023) found that a linear probe on frozen CLIP ViT-L/14 features separates
real from generated images far better across generators than a fine-tuned network: the
features were never shaped by any one generator's traces. `experiment=clip_linear_probe`
trains exactly that (the tower frozen, its embeddings cached, a linear head); with
`freeze=none` or `freeze=last_n` the tower trains too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import torch
from torch import nn

from deepfake_detection.errors import ConfigError, WeightsError
from deepfake_detection.models.adapters import (
    GroupedDetector,
    Renormalise,
    parameter_groups,
    token_grid,
)
from deepfake_detection.models.base import BaseDetector, OptimizerFactory, SchedulerFactory
from deepfake_detection.models.registry import register
from deepfake_detection.rules import boolean, existing_file, number, setting, text

log = logging.getLogger(__name__)

#: The normalisation CLIP's image towers were trained with.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ClipSettings:
    """The `model.*` keys of `model=clip` (conf/model/clip.yaml)."""

    #: An OpenCLIP architecture (`open_clip.list_models()`). OpenAI's weights need the
    #: `-quickgelu` ones (ViT-B-32-quickgelu, ViT-L-14-quickgelu): the plain names build
    #: GELU towers, on which those weights load but compute something else.
    arch: str = setting(replace(text(), expected="an OpenCLIP model name"), "ViT-B-32-quickgelu")
    #: OpenCLIP's pretrained tag for `arch` (`open_clip.list_pretrained()`), e.g. openai.
    pretrained: str | None = setting(text(nullable=True), "openai")
    #: A local copy of the pretrained weights (an OpenCLIP checkpoint): used first.
    weights_path: str | None = setting(existing_file(nullable=True, blank_is_null=True), None)
    dropout: float = setting(number(0, 1, high_open=True), 0.0)
    channels_last: bool = setting(boolean(), False)


class ClipNet(nn.Module):
    """CLIP's image tower (its projected embedding), then Dropout → Linear(embed_dim, 1)."""

    def __init__(self, visual: nn.Module, dropout: float) -> None:
        super().__init__()
        self.renormalise = Renormalise(CLIP_MEAN, CLIP_STD)
        self.visual = visual
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(visual.output_dim, 1))

    @property
    def weights_normalisation(self) -> dict[str, list[float]]:
        return self.renormalise.target

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(self.renormalise(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(images))


class _Pooled(nn.Module):
    """The frozen tower as a feature-cache prefix: images → CLIP embeddings."""

    def __init__(self, net: ClipNet) -> None:
        super().__init__()
        self.renormalise, self.visual = net.renormalise, net.visual

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(self.renormalise(images))


def _tower(arch: str, pretrained: str | None, weights_path: str | None) -> nn.Module:
    try:
        import open_clip
    except ImportError:
        raise ConfigError(
            'model=clip needs OpenCLIP: pip install "deepfake-detection[clip]"'
        ) from None
    if arch not in open_clip.list_models():
        raise ConfigError(f"model.arch={arch}: not an OpenCLIP model (open_clip.list_models())")
    source = weights_path or pretrained
    try:
        model = open_clip.create_model(arch, pretrained=source)
    except Exception as err:  # offline, an unknown tag, a damaged file: one answer
        what = f"model.weights_path={weights_path}" if weights_path else f"{arch}/{pretrained}"
        raise WeightsError(
            f"model=clip: could not load {what} ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200] if str(err) else ''}). Offline? Give "
            "model.weights_path=<a local OpenCLIP checkpoint>, or model.pretrained=null to "
            "start from random weights"
        ) from None
    if source:
        log.info("loaded CLIP %s weights from %s", arch, source)
    return model.visual  # the text tower is not needed: dropped with `model`


def _group_of(blocks: int) -> Callable[[str], int]:
    """The stem (patch embedding, class and position embeddings), each residual block,
    then the last norm and projection."""

    def group(name: str) -> int:
        if name.startswith("transformer.resblocks."):
            return 1 + int(name.split(".")[2])
        if name.startswith(("ln_post", "proj", "attn_pool", "ln_final")):
            return blocks + 1
        return 0

    return group


def last_block(detector: BaseDetector) -> nn.Module:
    """Grad-CAM's layer: the first norm of the tower's last residual block (the block's
    output feeds only the pooled class token, so its patch tokens get no gradient)."""
    visual = detector.net.visual
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if blocks is None:
        raise ConfigError("Grad-CAM for model=clip needs a ViT tower")
    return getattr(blocks[-1], "ln_1", blocks[-1])


def class_token_grid(detector: BaseDetector) -> Callable[[torch.Tensor], torch.Tensor]:
    return token_grid(1)


@register(
    "clip",
    settings=ClipSettings,
    default_weights="OpenCLIP weights of model.arch (model.pretrained tag): "
    "model.weights_path, else OpenCLIP's download",
    gradcam_layer=last_block,
    gradcam_reshape=class_token_grid,
)
class ClipDetector(GroupedDetector):
    """CLIP's image tower (`model.arch`) with a one-logit head."""

    backbone_library = "open_clip_torch"

    def __init__(
        self,
        arch: str = "ViT-B-32-quickgelu",
        pretrained: str | None = "openai",
        weights_path: str | None = None,
        dropout: float = 0.0,
        freeze: Mapping | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        channels_last: bool = False,
    ) -> None:
        visual = _tower(arch, pretrained, weights_path)
        net = ClipNet(visual, dropout)
        resblocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
        if resblocks is None:
            raise ConfigError(f"model.arch={arch}: only ViT towers are supported by model=clip")
        self._groups = parameter_groups(visual, _group_of(len(resblocks)))
        super().__init__(net, freeze, optimizer, scheduler, channels_last)
        self.arch = arch
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])

    @property
    def display_name(self) -> str:
        return f"clip:{self.arch}"

    def head_pool(self, features: torch.Tensor) -> torch.Tensor:
        return features  # the tower's own output is pooled and projected already

    def head_rest(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net.head(pooled)

    def pooled_prefix(self) -> nn.Module:
        return _Pooled(self.net)
