"""Train and eval preprocessing, built from torchvision transforms v2."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2

from deepfake_detection.data.augment import AugmentSettings, degradations, geometry
from deepfake_detection.data.perturb import Perturbation
from deepfake_detection.data.scoring_transform import IMAGENET_MEAN, IMAGENET_STD


def train_transform(
    image_size: int,
    crop_scale: Sequence[float] = (0.8, 1.0),
    augment: AugmentSettings | None = None,
    crop_fraction: float = 0.875,
) -> v2.Compose:
    """The `augment` group's degradations at full resolution, the crop and flip, then noise.

    With `augment=none` this is exactly `eval_transform`.

    `augment=basic` (the default) is a random resized crop and a horizontal flip. The default
    crop keeps 80-100% of the image: stronger zoom would resample away the high-frequency
    traces that separate generated faces from real ones.
    """
    settings = augment or AugmentSettings()
    on_uint8, on_float = degradations(settings)
    return v2.Compose(
        [
            v2.ToImage(),
            *on_uint8,
            *geometry(settings, image_size, crop_scale, crop_fraction),
            v2.ToDtype(torch.float32, scale=True),
            *on_float,
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def resize_and_crop(image_size: int, crop_fraction: float = 0.875) -> list[v2.Transform]:
    """The geometry of scoring: shorter side to `image_size / crop_fraction`, centre crop."""
    return [
        v2.Resize(round(image_size / crop_fraction), antialias=True),
        v2.CenterCrop(image_size),
    ]


def eval_transform(
    image_size: int, crop_fraction: float = 0.875, perturbation: Perturbation | None = None
) -> v2.Compose:
    """Resize so that the centre `crop_fraction` of the image becomes `image_size` pixels.

    A `perturbation` (`deepfake-evaluate perturb=...`) acts on the image first, at its own
    resolution, as a platform's processing would have (noise: on the cropped image).
    """
    on_uint8, on_float = perturbation.steps() if perturbation else ([], [])
    return v2.Compose(
        [
            v2.ToImage(),
            *on_uint8,
            *resize_and_crop(image_size, crop_fraction),
            v2.ToDtype(torch.float32, scale=True),
            *on_float,
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
