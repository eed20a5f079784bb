"""A small synthetic Fake/Real face set, generated on first use so the project runs offline.

Real images are rendered at full resolution with independent per-pixel sensor noise. Fake
images come from the same scene generator at half resolution, then go through the kind of
2x upsampling a GAN or diffusion decoder does (nearest-neighbour plus a transposed-convolution
checkerboard). The classes therefore differ only in generator-like spectral traces, not in
content, which is the signal a deepfake detector has to learn.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

DEMO_VERSION = 1
#: Images per class in each split of the default demo set.
DEMO_SIZES: dict[str, int] = {"train": 800, "valid": 200, "test": 300}
DEMO_RESOLUTION = 64
_SEEDS = {"train": 0, "valid": 1, "test": 2}
#: Sensor-noise level of both classes; Fake noise is rendered at half resolution.
_NOISE = 0.06


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deepfake-detection"


def _ellipse(xx: np.ndarray, yy: np.ndarray, cx, cy, rx, ry, softness: float) -> np.ndarray:
    distance = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
    return np.clip((1.0 - distance) / softness, 0.0, 1.0)


def _scene(params: dict, size: int) -> np.ndarray:
    """Render a face-like scene as float RGB in [0, 1] at any resolution."""
    coords = (np.arange(size) + 0.5) / size
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    p = params
    t = np.cos(p["angle"]) * xx + np.sin(p["angle"]) * yy
    t = (t - t.min()) / (np.ptp(t) + 1e-8)
    image = p["bg0"] + (p["bg1"] - p["bg0"]) * t[..., None]
    for blob in p["blobs"]:
        mask = _ellipse(xx, yy, *blob["shape"], softness=0.3)[..., None]
        image = image * (1 - mask) + blob["colour"] * mask
    cx, cy, rx, ry = p["face"]
    face = _ellipse(xx, yy, cx, cy, rx, ry, softness=0.08)[..., None]
    shading = 1.0 - 0.35 * np.sqrt(((xx - cx + 0.1 * rx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
    image = image * (1 - face) + (p["skin"] * shading[..., None]) * face
    for dx in (-0.4, 0.4):
        eye = _ellipse(xx, yy, cx + dx * rx, cy - 0.25 * ry, 0.16 * rx, 0.08 * ry, 0.3)
        image = image * (1 - eye[..., None]) + p["eye"] * eye[..., None]
    mouth = _ellipse(xx, yy, cx, cy + 0.45 * ry, 0.35 * rx, 0.07 * ry, 0.3)[..., None]
    image = image * (1 - mouth) + p["lips"] * mouth
    return np.clip(image, 0.0, 1.0)


def _random_params(rng: np.random.Generator) -> dict:
    return {
        "angle": rng.uniform(0, 2 * np.pi),
        "bg0": rng.uniform(0.05, 0.95, 3),
        "bg1": rng.uniform(0.05, 0.95, 3),
        "blobs": [
            {
                "shape": (*rng.uniform(0, 1, 2), *rng.uniform(0.05, 0.25, 2)),
                "colour": rng.uniform(0, 1, 3),
            }
            for _ in range(rng.integers(1, 5))
        ],
        "face": (*rng.uniform(0.4, 0.6, 2), rng.uniform(0.2, 0.3), rng.uniform(0.28, 0.4)),
        "skin": rng.uniform([0.45, 0.3, 0.2], [0.95, 0.8, 0.7]),
        "eye": rng.uniform(0.0, 0.25, 3),
        "lips": rng.uniform([0.4, 0.1, 0.1], [0.8, 0.35, 0.35]),
    }


def render_real(rng: np.random.Generator, size: int) -> np.ndarray:
    image = _scene(_random_params(rng), size)
    return image + rng.normal(0.0, _NOISE, image.shape)


def render_fake(rng: np.random.Generator, size: int) -> np.ndarray:
    low = _scene(_random_params(rng), size // 2)
    low = low + rng.normal(0.0, _NOISE, low.shape)
    image = low.repeat(2, axis=0).repeat(2, axis=1)
    checker = np.where((np.add.outer(np.arange(size), np.arange(size)) % 2) == 0, 1.0, -1.0)
    amplitude = rng.uniform(0.03, 0.08)
    return image + amplitude * checker[..., None] * (0.5 + image)


def _save(image: np.ndarray, path: Path) -> None:
    pixels = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, format="PNG")


def generate(target: Path, sizes: dict[str, int], resolution: int) -> None:
    """Write `<target>/<split>/{Fake,Real}/*.png`; the same arguments give the same bytes."""
    for split, per_class in sizes.items():
        rng = np.random.default_rng(_SEEDS.get(split, len(_SEEDS)) + 1000 * DEMO_VERSION)
        for class_name, render in (("Real", render_real), ("Fake", render_fake)):
            folder = target / split / class_name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                _save(render(rng, resolution), folder / f"{class_name.lower()}_{i:05d}.png")


def ensure_demo_dataset(
    cache_dir: str | Path | None = None,
    sizes: dict[str, int] | None = None,
    resolution: int = DEMO_RESOLUTION,
) -> Path:
    """Return the demo dataset root, generating it once into the cache folder.

    Generation goes to a temporary folder that is renamed at the end, so an interrupted
    first run never leaves a half-written dataset behind.
    """
    sizes = dict(sizes or DEMO_SIZES)
    spec = {"version": DEMO_VERSION, "sizes": sizes, "resolution": resolution}
    tag = f"demo-v{DEMO_VERSION}-{resolution}px-" + "-".join(str(n) for n in sizes.values())
    cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    target = cache_dir / tag
    if (target / "demo.json").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{tag}-", dir=cache_dir))
    try:
        generate(staging, sizes, resolution)
        (staging / "demo.json").write_text(json.dumps(spec, indent=2))
        try:
            staging.rename(target)
        except OSError:
            if not (target / "demo.json").is_file():  # not a concurrent run that won the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
