"""Up-sampling fakes: a real face scaled down and brought back up as a generator would.

Fully generated faces are built by decoders that up-sample: nearest-neighbour and bilinear
resizes, and transposed convolutions, which leave periodic traces (the checkerboard). NPR
(CVPR 2024) detects them from neighbouring pixels, DRCT (ICML 2024) from reconstructions. A
real face put through one of these operations carries the same traces with a real face's
content: a fake that teaches the traces, not one generator's look.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from deepfake_detection.faces.detectors import opencv

#: The up-sampling operations, each drawn with equal chance.
UPSAMPLERS = ("nearest", "bilinear", "bicubic", "transposed", "decoder")


def _bilinear_kernel(factor: int) -> torch.Tensor:
    """The (2f, 2f) kernel with which a stride-f transposed convolution is a bilinear resize."""
    size = 2 * factor
    centre = (size - 1) / 2
    ramp = 1 - torch.abs(torch.arange(size, dtype=torch.float32) - centre) / factor
    return ramp[:, None] * ramp[None, :]


def _transposed(small: torch.Tensor, factor: int, generator: torch.Generator) -> torch.Tensor:
    """A transposed convolution whose kernel is a bilinear one with random errors: unequal
    kernel phases leave a checkerboard of period `factor`, as untrained or imperfect
    decoder layers do."""
    kernel = _bilinear_kernel(factor)
    strength = 0.03 + 0.12 * float(torch.rand((), generator=generator))
    noise = torch.randn(kernel.shape, generator=generator) * strength
    kernel = (kernel * (1 + noise)).clamp(min=0)
    kernel = kernel * (factor * factor / kernel.sum())
    weight = kernel.expand(3, 1, *kernel.shape).contiguous()
    padded = F.pad(small, (1, 1, 1, 1), mode="replicate")
    out = F.conv_transpose2d(padded, weight, stride=factor, padding=factor // 2, groups=3)
    crop = factor  # the one replicated pixel of padding, up-sampled
    return out[..., crop : crop + small.shape[-2] * factor, crop : crop + small.shape[-1] * factor]


def _decoder(small: torch.Tensor, factor: int, generator: torch.Generator) -> torch.Tensor:
    """A small randomly initialised decoder (transposed convolution, ReLU, convolution) as a
    residual on a bilinear up-sampling: its periodic traces, the image's colours."""
    base = F.interpolate(small, scale_factor=factor, mode="bilinear", align_corners=False)
    up = torch.randn(3, 8, 2 * factor, 2 * factor, generator=generator) / (2 * factor)
    mix = torch.randn(3, 8, 3, 3, generator=generator) / 8
    features = F.relu(F.conv_transpose2d(small, up, stride=factor, padding=factor // 2))
    residual = F.conv2d(features, mix, padding=1)
    residual = residual[..., : base.shape[-2], : base.shape[-1]]
    residual = residual / (residual.std() + 1e-6)
    return base + 0.04 * residual


def upsample_fake(rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """(the image scaled down by 2 or 4 and back up by one of `UPSAMPLERS`, uint8 (H, W, 3)
    the size of `rgb`; the operation's name)."""
    cv2 = opencv()
    height, width = rgb.shape[:2]
    factor = int(rng.choice((2, 2, 4)))
    factor = factor if min(height, width) >= 4 * factor else 1
    small_size = (max(1, width // factor), max(1, height // factor))
    small = cv2.resize(rgb, small_size, interpolation=cv2.INTER_AREA)
    how = str(rng.choice(UPSAMPLERS))
    if how in ("nearest", "bilinear", "bicubic"):
        flags = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR}
        up_size = (small_size[0] * factor, small_size[1] * factor)
        up = cv2.resize(small, up_size, interpolation=flags.get(how, cv2.INTER_CUBIC))
    else:
        generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        tensor = torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255.0
        make = _transposed if how == "transposed" else _decoder
        with torch.no_grad():
            out = make(tensor, factor, generator)
        up = (out[0].permute(1, 2, 0).clamp(0, 1) * 255.0).round().byte().numpy()
    # Back to the exact size: the last rows and columns a division by `factor` left out.
    up = np.pad(up, ((0, height - up.shape[0]), (0, width - up.shape[1]), (0, 0)), mode="edge")
    return up.astype(np.uint8), how
