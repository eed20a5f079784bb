"""Self-Blended Images: a real face blended back into itself, as SBI makes its fakes.

A copy of the image is changed a little (colour, sharpness, scale, position) and pasted back
over the face through a soft, randomly deformed elliptical mask: the result carries what
every face swap carries, a blending boundary and a face whose statistics differ slightly from
its surroundings, and nothing of any particular generator. Outside the mask the image is
left exactly as it was.
"""

from __future__ import annotations

import math

import numpy as np

from deepfake_detection.faces.detectors import opencv

Box = tuple[float, float, float, float]

#: Blend strengths, as SBI draws them: mostly a full paste, sometimes a partial one.
BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)


def _changed_copy(rgb: np.ndarray, box: Box, rng: np.random.Generator) -> np.ndarray:
    """The source face: a colour shift, blur or sharpening, and a slight scale and shift."""
    cv2 = opencv()
    source = rgb.astype(np.float32)
    if rng.random() < 0.5:
        source += rng.uniform(-15, 15, size=3).astype(np.float32)
    if rng.random() < 0.5:
        mean = source.mean()
        source = (source - mean) * rng.uniform(0.9, 1.1) + mean * rng.uniform(0.9, 1.1)
    if rng.random() < 0.5:
        sigma = float(rng.uniform(0.4, 1.2))
        blurred = cv2.GaussianBlur(source, (0, 0), sigma)
        if rng.random() < 0.5:
            source = blurred
        else:  # unsharp masking: the opposite change of sharpness
            source = source + float(rng.uniform(0.3, 1.0)) * (source - blurred)
    x, y, w, h = box
    scale = float(rng.uniform(0.95, 1.05))
    shift = rng.uniform(-0.03, 0.03, size=2) * (w, h)
    matrix = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), 0.0, scale)
    matrix[:, 2] += shift
    source = cv2.warpAffine(
        source, matrix, (rgb.shape[1], rgb.shape[0]), borderMode=cv2.BORDER_REFLECT
    )
    return np.clip(source, 0, 255)


def blend_mask(shape: tuple[int, int], box: Box, rng: np.random.Generator) -> np.ndarray:
    """A soft mask in [0, 1] (H, W): an ellipse over the face box with a jagged, jittered
    outline, blurred, scaled by a blend strength. Exactly 0 far from the face."""
    cv2 = opencv()
    x, y, w, h = box
    cx = x + w / 2 + rng.uniform(-0.05, 0.05) * w
    cy = y + h / 2 + rng.uniform(-0.05, 0.05) * h
    ax, ay = w * rng.uniform(0.38, 0.52), h * rng.uniform(0.42, 0.58)
    tilt = math.radians(rng.uniform(-10, 10))
    angles = np.linspace(0, 2 * math.pi, 24, endpoint=False)
    radii = 1 + rng.uniform(-0.08, 0.08, size=angles.size)
    px, py = ax * radii * np.cos(angles), ay * radii * np.sin(angles)
    points = np.stack(
        [
            cx + px * math.cos(tilt) - py * math.sin(tilt),
            cy + px * math.sin(tilt) + py * math.cos(tilt),
        ],
        axis=1,
    )
    mask = np.zeros(shape, np.float32)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1.0)
    sigma = max(1.0, float(rng.uniform(0.02, 0.08)) * max(w, h))
    radius = int(math.ceil(3 * sigma))
    mask = cv2.GaussianBlur(mask, (2 * radius + 1, 2 * radius + 1), sigma)
    peak = float(mask.max())
    if peak > 0:
        mask /= peak
    return mask * float(rng.choice(BLEND_RATIOS))


def self_blend(
    rgb: np.ndarray, box: Box, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(the blended image, uint8 (H, W, 3); the mask it was blended through, (H, W))."""
    source = _changed_copy(rgb, box, rng)
    mask = blend_mask(rgb.shape[:2], box, rng)[..., None]
    blended = source * mask + rgb.astype(np.float32) * (1 - mask)
    # Where the mask is 0 the sum above is the original value exactly: rounding keeps it.
    return np.rint(blended).astype(np.uint8), mask[..., 0]
