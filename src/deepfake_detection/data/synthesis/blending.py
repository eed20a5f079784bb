"""Self-Blended Images: a real face blended back into itself, as SBI makes its fakes.

A copy of the image is changed a little (colour, sharpness, scale, position) and pasted back
over the face through a soft, randomly deformed mask: the convex hull of the face's outline
as its landmarks place it (so it follows the head's tilt and turn), or, without landmarks, an
ellipse over the face box. The result carries what every face swap carries, a blending
boundary and a face whose statistics differ slightly from its surroundings, and nothing of
any particular generator. Outside the mask the image is left exactly as it was.
"""

from __future__ import annotations

import math

import numpy as np

from deepfake_detection.faces.detectors import opencv

Box = tuple[float, float, float, float]
#: A face's five landmarks as the face stage's detector gives them: the subject's right eye,
#: left eye, nose tip, right and left mouth corners, (x, y) each.
Landmarks = tuple[tuple[float, float], ...]

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


def _ellipse(box: Box, rng: np.random.Generator) -> np.ndarray:
    """An outline over the face box: an ellipse with a jagged, jittered edge."""
    x, y, w, h = box
    cx = x + w / 2 + rng.uniform(-0.05, 0.05) * w
    cy = y + h / 2 + rng.uniform(-0.05, 0.05) * h
    ax, ay = w * rng.uniform(0.38, 0.52), h * rng.uniform(0.42, 0.58)
    tilt = math.radians(rng.uniform(-10, 10))
    angles = np.linspace(0, 2 * math.pi, 24, endpoint=False)
    radii = 1 + rng.uniform(-0.08, 0.08, size=angles.size)
    px, py = ax * radii * np.cos(angles), ay * radii * np.sin(angles)
    return np.stack(
        [
            cx + px * math.cos(tilt) - py * math.sin(tilt),
            cy + px * math.sin(tilt) + py * math.cos(tilt),
        ],
        axis=1,
    )


def landmark_outline(landmarks: Landmarks, rng: np.random.Generator) -> np.ndarray:
    """The face's outline from its five landmarks, (N, 2): the eyes and mouth corners pushed
    out to the temples, cheeks, chin and forehead along the face's own axes, by random
    amounts (a hull as wide as the whole face, or as narrow as its inner part, as SBI's
    landmark hulls vary), each point then jittered."""
    points = np.asarray(landmarks, dtype=np.float64)[:5]
    right_eye, left_eye, _, right_mouth, left_mouth = points
    eyes, mouth = (right_eye + left_eye) / 2, (right_mouth + left_mouth) / 2
    down = mouth - eyes  # eyes to mouth: the face's vertical axis and its scale
    across = left_eye - right_eye  # the face's horizontal axis
    if np.hypot(*down) < 1 or np.hypot(*across) < 1:
        raise ValueError("degenerate landmarks")
    top, side, chin = rng.uniform(0.5, 1.1), rng.uniform(0.25, 0.6), rng.uniform(0.5, 1.0)
    outline = [
        eyes - top * down,
        eyes - top * 0.8 * down - 0.45 * across,
        eyes - top * 0.8 * down + 0.45 * across,
        right_eye - side * across,
        left_eye + side * across,
        right_mouth - 0.6 * side * across + 0.2 * down,
        left_mouth + 0.6 * side * across + 0.2 * down,
        mouth + chin * down,
        mouth + 0.8 * chin * down - 0.3 * across,
        mouth + 0.8 * chin * down + 0.3 * across,
    ]
    # Jittered along the face's axes too, so a turned face gets the same outline turned.
    jitter = rng.normal(0, 0.05, size=(len(outline), 2))
    return np.asarray(outline) + jitter[:, :1] * down + jitter[:, 1:] * across


def blend_mask(
    shape: tuple[int, int],
    box: Box,
    rng: np.random.Generator,
    landmarks: Landmarks | None = None,
) -> np.ndarray:
    """A soft mask in [0, 1] (H, W): the convex hull of the landmark outline (else an ellipse
    over the face box), grown or shrunk a little, blurred, scaled by a blend strength.
    Exactly 0 far from the face."""
    cv2 = opencv()
    points = None
    if landmarks is not None:
        try:
            points = landmark_outline(landmarks, rng)
        except ValueError:
            points = None
    if points is None:
        points = _ellipse(box, rng)
    hull = cv2.convexHull(np.round(points).astype(np.int32))
    mask = np.zeros(shape, np.float32)
    cv2.fillConvexPoly(mask, hull, 1.0)
    size = max(box[2], box[3])
    grow = int(round(rng.uniform(-0.04, 0.04) * size))
    if grow:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(grow) + 1,) * 2)
        mask = (cv2.dilate if grow > 0 else cv2.erode)(mask, kernel)
    sigma = max(1.0, float(rng.uniform(0.02, 0.08)) * size)
    radius = int(math.ceil(3 * sigma))
    mask = cv2.GaussianBlur(mask, (2 * radius + 1, 2 * radius + 1), sigma)
    peak = float(mask.max())
    if peak > 0:
        mask /= peak
    return mask * float(rng.choice(BLEND_RATIOS))


def self_blend(
    rgb: np.ndarray, box: Box, rng: np.random.Generator, landmarks: Landmarks | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(the blended image, uint8 (H, W, 3); the mask it was blended through, (H, W))."""
    source = _changed_copy(rgb, box, rng)
    mask = blend_mask(rgb.shape[:2], box, rng, landmarks)[..., None]
    blended = source * mask + rgb.astype(np.float32) * (1 - mask)
    # Where the mask is 0 the sum above is the original value exactly: rounding keeps it.
    return np.rint(blended).astype(np.uint8), mask[..., 0]
