"""Decode any image file into an upright RGB PIL image, or say exactly why it cannot be."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from deepfake_detection.errors import DatasetError

#: `data.on_bad_image`: leave unreadable files out and list them, or stop before training.
BAD_IMAGE_POLICIES = ("skip", "error")

#: Pillow's own default bound on pixels per image; `data.max_image_pixels` overrides it.
DEFAULT_MAX_PIXELS = 89_478_485

_HIGH_BIT_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


class BadImageError(DatasetError):
    """One file that is not a usable image; `reason` is short enough for a report line."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: cannot read image: {reason}")
        self.path = str(path)
        self.reason = reason


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


def _open_checked(source: Path | BinaryIO, name: str | Path, max_pixels: int) -> Image.Image:
    # Pillow refuses at twice its bound on its own; ours is checked from the header below,
    # before a single pixel is decoded.
    Image.MAX_IMAGE_PIXELS = max(max_pixels, DEFAULT_MAX_PIXELS)
    with Image.open(source) as image:
        width, height = image.size
        if width * height > max_pixels:
            raise BadImageError(
                name,
                f"{width}x{height} = {width * height} pixels is over "
                f"data.max_image_pixels={max_pixels} (a decompression bomb?)",
            )
        image.load()
        # Phones store rotation as an EXIF tag; apply it so faces are upright. Only then:
        # `exif_transpose` copies every image, and a copy costs half a decode.
        if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
            image = ImageOps.exif_transpose(image)
        return _to_rgb(image)


def _decode(path: Path, max_pixels: int) -> Image.Image:
    if path.is_symlink() and not path.exists():
        raise BadImageError(path, "broken symlink")
    if path.stat().st_size == 0:
        raise BadImageError(path, "empty file (0 bytes)")
    return _open_checked(path, path, max_pixels)


@contextmanager
def _reasons(name: str | Path) -> Iterator[None]:
    """Every way decoding fails, as a `BadImageError` naming `name` and the reason."""
    try:
        yield
    except BadImageError:
        raise
    except PermissionError:
        raise BadImageError(name, "permission denied") from None
    except FileNotFoundError:
        raise BadImageError(name, "file not found") from None
    except UnidentifiedImageError:
        raise BadImageError(name, "not an image (unrecognised format)") from None
    except Image.DecompressionBombError as err:
        raise BadImageError(name, f"too many pixels, a decompression bomb? ({err})") from None
    except Exception as err:
        # Pillow's decoders and EXIF parser raise a zoo of types on corrupt input (OSError,
        # ValueError, SyntaxError, struct.error, ...); each means the same to us.
        raise BadImageError(name, f"truncated or corrupt ({type(err).__name__}: {err})") from None


def load_rgb(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open `path` as upright RGB, whatever its mode (grayscale, CMYK, 16-bit, alpha).

    Raises `BadImageError` naming the file and the reason for anything unusable: empty,
    truncated, not an image, too large, unreadable, or a dangling link.
    """
    path = Path(path)
    with _reasons(path):
        return _decode(path, max_pixels)


def load_rgb_bytes(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """`load_rgb` for an image held in memory (an upload), reported under `name`."""
    if not data:
        raise BadImageError(name, "empty file (0 bytes)")
    with _reasons(name):
        return _open_checked(io.BytesIO(data), name, max_pixels)
