"""Decode any image file into an RGB PIL image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from deepfake_detection.errors import DatasetError

_HIGH_BIT_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        # Pillow clips 16-bit and float images to 8 bits instead of rescaling them.
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low) * 255.0 if high > low else np.zeros_like(array)
        return Image.fromarray(scaled.astype(np.uint8)).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        # Composite on black rather than keeping whatever colour hides under alpha=0.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_rgb(path: str | Path) -> Image.Image:
    """Open `path` and return it as RGB, whatever its mode (grayscale, CMYK, 16-bit, alpha)."""
    try:
        with Image.open(path) as image:
            image.load()
            return _to_rgb(image)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DatasetError(f"{path}: cannot read image ({err})") from err
