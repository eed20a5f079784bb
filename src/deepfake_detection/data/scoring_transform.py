"""The scoring transform in torch alone: the same values as `eval_transform`, without
torchvision.

Resize the shorter side (bilinear, antialiased), centre-crop, scale to [0, 1], normalise:
`transforms.eval_transform` does it with torchvision's transforms v2, and training and
evaluation use that. Importing torchvision also imports `torch._dynamo` (through
`torchvision.ops`), SymPy and Triton: about half a second that a process scoring with an
exported model (predict, the service) needs for nothing else. So scoring runs the same
kernels here, step by step as torchvision 0.29 calls them, and
`tests/test_scoring_transform.py` checks that both give equal tensors, value for value.
"""

from __future__ import annotations

import platform

import numpy as np
import torch
from PIL import Image
from torch.nn.functional import interpolate

#: ImageNet's per-channel mean and standard deviation, which every backbone here expects.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def native_uint8_resize() -> bool:
    """Whether torchvision resizes uint8 images without a float round trip on this CPU (its
    `_do_native_uint8_resize_on_cpu` for bilinear): the two paths round differently."""
    capability = torch.backends.cpu.get_cpu_capability()
    return capability in ("AVX2", "AVX512") or platform.machine() in ("aarch64", "arm64")


def resized_size(height: int, width: int, short: int) -> tuple[int, int]:
    """(height, width) with the shorter side `short`, the longer one scaled and truncated."""
    if width <= height:
        return int(short * height / width), short
    return short, int(short * width / height)


def resize_uint8(image: torch.Tensor, short: int) -> torch.Tensor:
    """A uint8 (C, H, W) image with its shorter side resized to `short` (bilinear,
    antialiased), as torchvision's `Resize(short, antialias=True)` does it."""
    channels, height, width = image.shape
    new_height, new_width = resized_size(height, width, short)
    if (new_height, new_width) == (height, width):
        return image
    batch = image.reshape(1, channels, height, width)
    strides = batch.stride()
    if batch.is_contiguous(memory_format=torch.channels_last) and image.numel() != strides[0]:
        # torchvision restrides a decoded (HWC in memory) image so that the output stays
        # channels-last; the values do not depend on it, the kernel's speed does.
        batch = batch.as_strided(batch.shape, (image.numel(), *strides[1:]))
    native = native_uint8_resize()
    if not native:
        batch = batch.to(torch.float32)
    out = interpolate(
        batch, size=[new_height, new_width], mode="bilinear", align_corners=False, antialias=True
    )
    if not native:
        out = out.round_().to(torch.uint8)
    return out.reshape(channels, new_height, new_width)


class ScoringTransform:
    """A decoded RGB picture → the normalised float32 (C, H, W) input of the model."""

    def __init__(self, image_size: int, crop_fraction: float) -> None:
        self.image_size = image_size
        self.resize_to = round(image_size / crop_fraction)  # >= image_size: crop_fraction <= 1
        self.mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(-1, 1, 1)

    def cropped(self, image: Image.Image) -> torch.Tensor:
        """The resized and centre-cropped uint8 image (C, H, W), before scaling."""
        pixels = np.array(image, copy=True)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        tensor = torch.as_tensor(pixels).permute(2, 0, 1)
        tensor = resize_uint8(tensor, self.resize_to)
        height, width = tensor.shape[-2:]
        top = int(round((height - self.image_size) / 2.0))
        left = int(round((width - self.image_size) / 2.0))
        return tensor[..., top : top + self.image_size, left : left + self.image_size]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        scaled = self.cropped(image).to(torch.float32).mul_(1.0 / 255)
        return scaled.sub(self.mean).div_(self.std)

    def __repr__(self) -> str:
        return (
            f"ScoringTransform(resize the shorter side to {self.resize_to}, centre-crop "
            f"{self.image_size}, scale to [0, 1], normalise)"
        )
