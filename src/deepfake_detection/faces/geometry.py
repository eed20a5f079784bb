"""Where a face's crop lies in the image, and cutting it out.

The crop is the face box enlarged `margin` times around its centre, made square (the longer
side) unless `square=false`, and, with `align=true`, rotated about the face centre so the
eyes are level. It is cut out with one affine warp straight to `crop_size` pixels; what lies
outside the image is filled by repeating the border pixels, so a face at the edge of a
picture keeps its framing (a black band would be a cue no training crop had).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from deepfake_detection.faces.detectors import Face, opencv
from deepfake_detection.faces.settings import FaceSettings


@dataclass(frozen=True)
class Region:
    """A crop's centre, size (before rotation) and rotation, in image pixels and degrees."""

    cx: float
    cy: float
    width: float
    height: float
    angle: float = 0.0

    def corners(self) -> list[tuple[float, float]]:
        """The four corners in the image, clockwise from the top left (for drawing)."""
        cos, sin = math.cos(math.radians(self.angle)), math.sin(math.radians(self.angle))
        half = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        return [
            (
                self.cx + dx * self.width / 2 * cos - dy * self.height / 2 * sin,
                self.cy + dx * self.width / 2 * sin + dy * self.height / 2 * cos,
            )
            for dx, dy in half
        ]


def eye_angle(face: Face) -> float:
    """Degrees the line from the subject's right eye to the left eye is turned from level."""
    if face.landmarks is None:
        return 0.0
    (rx, ry), (lx, ly) = face.landmarks[0], face.landmarks[1]
    # YuNet lists the eye on the image's left first; either order gives the same line.
    if rx > lx:
        (rx, ry), (lx, ly) = (lx, ly), (rx, ry)
    return math.degrees(math.atan2(ly - ry, lx - rx))


def region(face: Face, settings: FaceSettings) -> Region:
    """The crop around `face`: margin, square and alignment applied."""
    x, y, w, h = face.box
    width, height = w * settings.margin, h * settings.margin
    if settings.square:
        width = height = max(width, height)
    angle = eye_angle(face) if settings.align else 0.0
    return Region(x + w / 2, y + h / 2, width, height, angle)


def output_size(area: Region, settings: FaceSettings) -> tuple[int, int]:
    """(width, height) of the crop: `crop_size` on the longer side."""
    longer = max(area.width, area.height)
    return (
        max(1, round(settings.crop_size * area.width / longer)),
        max(1, round(settings.crop_size * area.height / longer)),
    )


def cut(rgb: np.ndarray, area: Region, size: tuple[int, int]) -> np.ndarray:
    """The pixels of `area`, rotated upright and resized to `size` (width, height)."""
    cv2 = opencv()
    scale = size[0] / area.width
    image, cx, cy = rgb, area.cx, area.cy
    if scale < 0.5:
        # A warp samples the source without averaging: shrink first (area averaging), so a
        # large face in a large photo does not alias into its crop.
        factor = scale * 2
        small = (max(1, round(rgb.shape[1] * factor)), max(1, round(rgb.shape[0] * factor)))
        image = cv2.resize(rgb, small, interpolation=cv2.INTER_AREA)
        factor_x, factor_y = small[0] / rgb.shape[1], small[1] / rgb.shape[0]
        cx, cy, scale = cx * factor_x, cy * factor_y, scale / factor_x
    matrix = cv2.getRotationMatrix2D((cx, cy), area.angle, scale)
    matrix[0, 2] += size[0] / 2 - cx
    matrix[1, 2] += size[1] / 2 - cy
    return cv2.warpAffine(
        np.ascontiguousarray(image),
        matrix,
        size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
