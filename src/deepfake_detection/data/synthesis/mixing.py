"""Where synthetic fakes enter a training split, and how one is made from a real image.

With `synth.only=false`, each training fake is replaced, with chance `synth.ratio`, by a
synthetic fake made from a real image of the split; which fakes, and from which real images,
is drawn from each sample's seed, so it changes every epoch and repeats exactly on a resumed
run. With `synth.only=true`, the split's fakes are left out and every real image appears
twice per epoch: as itself (Real) and as a synthetic fake (Fake), SBI's pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from deepfake_detection.data.synthesis.blending import Box, Landmarks, self_blend
from deepfake_detection.data.synthesis.settings import SynthSettings
from deepfake_detection.data.synthesis.upsampling import upsample_fake
from deepfake_detection.faces.settings import FaceSettings

#: The label of a sample to be turned into a synthetic fake (Fake, 1, once made).
SYNTHETIC = 2
Sample = tuple[Path, int]


@cache
def _finder():
    from deepfake_detection.faces.stage import FaceStage

    return FaceStage(FaceSettings(min_size=8))


def _rng(seed: int, stream: int) -> np.random.Generator:
    """A generator of its own for each use of a sample's seed."""
    return np.random.default_rng([seed & (2**63 - 1), stream])


@dataclass
class Synthesizer:
    """Plans a training split's synthetic fakes and makes them."""

    settings: SynthSettings
    #: The run's face stage: its crops hold the face at a known place, the fallback when the
    #: detector (which places the blending mask by the face's landmarks) finds no face.
    face: FaceSettings | None = None
    _reals: list[int] = field(default_factory=list)

    def plan(self, samples: Sequence[Sample]) -> list[Sample]:
        """The training split as the loader will index it."""
        reals = [(path, label) for path, label in samples if label == 0]
        if not reals:
            from deepfake_detection.errors import DatasetError

            raise DatasetError("synth needs real images in the training split to make fakes from")
        if self.settings.only:
            planned = [*reals, *((path, SYNTHETIC) for path, _ in reals)]
        else:
            planned = list(samples)
        self._reals = [i for i, (_, label) in enumerate(planned) if label == 0]
        return planned

    def choose(self, samples: Sequence[Sample], position: int, seed: int) -> Sample:
        """The sample at `position` for this draw: itself, or (a real image, SYNTHETIC)."""
        path, label = samples[position]
        if self.settings.only or label != 1:
            return path, label
        rng = _rng(seed, 1)
        if rng.random() >= self.settings.ratio:
            return path, label
        real = self._reals[int(rng.integers(len(self._reals)))]
        return samples[real][0], SYNTHETIC

    def face_box(self, image: Image.Image) -> Box:
        """Where the face is: the box of `face_of`."""
        return self.face_of(image)[0]

    def face_of(self, image: Image.Image) -> tuple[Box, Landmarks | None]:
        """The face to blend: the detector's largest face with its landmarks; when none is
        found, the middle of a face crop (the run's face stage made it so), else the middle
        half of the image, without landmarks."""
        faces = _finder().find(image)
        if faces:
            return faces[0].box, faces[0].landmarks
        width, height = image.size
        if self.face is not None:
            side_w, side_h = width / self.face.margin, height / self.face.margin
            return ((width - side_w) / 2, (height - side_h) / 2, side_w, side_h), None
        return (width / 4, height / 4, width / 2, height / 2), None

    def make(self, image: Image.Image, seed: int) -> tuple[Image.Image, dict]:
        """A synthetic fake made from the real `image`, and how (its family, mask or
        operation), for figures and tests."""
        rng = _rng(seed, 2)
        family = str(rng.choice(self.settings.families))
        rgb = np.asarray(image.convert("RGB"))
        if family == "sbi":
            box, landmarks = self.face_of(image)
            blended, mask = self_blend(rgb, box, rng, landmarks)
            return Image.fromarray(blended), {"family": "sbi", "mask": mask}
        upsampled, how = upsample_fake(rgb, rng)
        return Image.fromarray(upsampled), {"family": "upsample", "operation": how}
