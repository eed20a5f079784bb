"""Training augmentation: the `augment` config group, built from torchvision transforms v2.

Deepfakes reach users re-compressed, resized and blurred; a detector trained on pristine
images learns cues those steps destroy. Following CNNDetection (Wang et al., CVPR 2020),
`augment=deepfake` blurs and JPEG-compresses training images of both classes at random, and
`augment=strong` also downscales them and adds noise. Blur, JPEG, colour and downscaling act
on the image at its own resolution, before the crop to the training size, as they do in the
wild; noise goes on the cropped image, in [0, 1] floats.

Every random draw comes from torch's generator, which the dataset seeds per image, so a run
stays deterministic and resumable whatever the worker count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torchvision.transforms import v2

from deepfake_detection.errors import ConfigError
from deepfake_detection.rules import (
    Rule,
    boolean,
    number,
    number_range,
    ordered,
    rules_of,
    setting,
    text,
)

#: The random steps of the `augment` group; each has an `augment.<step>_p` probability.
AUGMENT_STEPS = ("flip", "blur", "jpeg", "jitter", "downscale", "noise")

_P = number(0, 1)


@dataclass(frozen=True)
class AugmentSettings:
    """The keys of `augment.*`; the defaults are `augment=basic`."""

    name: str = setting(text(), "basic")
    # Random resized crop over data.crop_scale; false: resize + centre crop.
    crop: bool = setting(boolean(), True)
    flip_p: float = setting(_P, 0.5)
    blur_p: float = setting(_P, 0.0)
    blur_sigma: tuple[float, float] = setting(number_range(0, 50, open_low=True), (0.1, 3.0))
    jpeg_p: float = setting(_P, 0.0)
    jpeg_quality: tuple[int, int] = setting(number_range(1, 100, integers=True), (30, 100))
    jitter_p: float = setting(_P, 0.0)
    brightness: float = setting(number(0), 0.1)
    contrast: float = setting(number(0), 0.1)
    saturation: float = setting(number(0), 0.1)
    downscale_p: float = setting(_P, 0.0)
    downscale_factor: tuple[float, float] = setting(number_range(0, 1, open_low=True), (0.25, 1.0))
    noise_p: float = setting(_P, 0.0)
    noise_sigma: tuple[float, float] = setting(number_range(0, 1), (0.0, 0.05))

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> AugmentSettings:
        """From `augment.*` (None: `basic`, as runs made before the group existed)."""
        values = dict(cfg or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"augment.{unknown[0]}: not an augment key")
        ranges = {f.name for f in fields(cls) if f.name.endswith(("_sigma", "_quality", "_factor"))}
        values = {k: tuple(v) if k in ranges else v for k, v in values.items()}
        return cls(**values)

    @property
    def is_random(self) -> bool:
        """Whether an image's training view depends on a random draw (or is fixed)."""
        probabilities = (self.flip_p, self.blur_p, self.jpeg_p, self.jitter_p)
        return self.crop or any(p > 0 for p in (*probabilities, self.downscale_p, self.noise_p))

    def describe(self) -> str:
        """`deepfake (blur 0.5, jpeg 0.5, jitter 0.3)`: the name and what is switched on."""
        chances = {step: getattr(self, f"{step}_p") for step in AUGMENT_STEPS}
        steps = [f"{step} {p:g}" for step, p in chances.items() if p > 0]
        return f"{self.name} ({', '.join(['crop' if self.crop else 'no crop', *steps])})"


#: Keys of the `augment` group, as a training run's config checks them.
AUGMENT_RULES: dict[str, Rule] = ordered(
    rules_of(AugmentSettings, "augment"),
    "augment.name",
    "augment.crop",
    *(f"augment.{step}_p" for step in AUGMENT_STEPS),
)


class _UniformDraw(v2.Transform):
    """A transform whose strength is drawn from [low, high] for each image, by torch."""

    def __init__(self, bounds: Sequence[float]) -> None:
        super().__init__()
        self.low, self.high = float(bounds[0]), float(bounds[1])

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"value": self.low + (self.high - self.low) * float(torch.rand(()))}


class RandomRescale(_UniformDraw):
    """Downscale by a factor drawn from `bounds`, then resize back: lost detail, same size."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        height, width = v2.functional.get_size(inpt)
        factor = params["value"]
        small = [max(1, round(height * factor)), max(1, round(width * factor))]
        shrunk = v2.functional.resize(inpt, small, antialias=True)
        return v2.functional.resize(shrunk, [height, width], antialias=True)


class RandomGaussianNoise(_UniformDraw):
    """Gaussian noise with a standard deviation drawn from `bounds`, on [0, 1] float images."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, torch.Tensor) or not inpt.is_floating_point():
            return inpt
        return v2.functional.gaussian_noise(inpt, sigma=params["value"], clip=True)


class FittedGaussianBlur(v2.GaussianBlur):
    """`v2.GaussianBlur` with a kernel that covers 3 sigma of the largest sigma, shrunk to fit
    an image too small for it (reflect padding needs the half-kernel below the image size)."""

    def __init__(self, sigma: Sequence[float]) -> None:
        super().__init__(2 * math.ceil(3 * float(sigma[1])) + 1, sigma=tuple(sigma))

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        height, width = v2.functional.get_size(inpt)
        size = min(self.kernel_size[0], 2 * min(height, width) - 1)
        return self._call_kernel(v2.functional.gaussian_blur, inpt, [size, size], **params)


def _maybe(p: float, transform: v2.Transform) -> list[v2.Transform]:
    return [v2.RandomApply([transform], p=p)] if p > 0 else []


def degradations(settings: AugmentSettings) -> tuple[list[v2.Transform], list[v2.Transform]]:
    """(steps on the uint8 image at full resolution, steps on the cropped [0, 1] image)."""
    s = settings
    on_uint8 = [
        *_maybe(s.downscale_p, RandomRescale(s.downscale_factor)),
        *_maybe(s.blur_p, FittedGaussianBlur(s.blur_sigma)),
        *_maybe(s.jpeg_p, v2.JPEG(quality=list(s.jpeg_quality))),
        *_maybe(s.jitter_p, v2.ColorJitter(s.brightness, s.contrast, s.saturation)),
    ]
    on_float = _maybe(s.noise_p, RandomGaussianNoise(s.noise_sigma))
    return on_uint8, on_float


def geometry(
    settings: AugmentSettings, image_size: int, crop_scale: Sequence[float], crop_fraction: float
) -> list[v2.Transform]:
    """The crop (random, or the eval transform's resize and centre crop) and the flip."""
    if settings.crop:
        steps: list[v2.Transform] = [
            v2.RandomResizedCrop(image_size, scale=tuple(crop_scale), antialias=True)
        ]
    else:
        steps = [
            v2.Resize(round(image_size / crop_fraction), antialias=True),
            v2.CenterCrop(image_size),
        ]
    if settings.flip_p > 0:
        steps.append(v2.RandomHorizontalFlip(settings.flip_p))
    return steps
