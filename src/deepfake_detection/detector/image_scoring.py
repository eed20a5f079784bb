"""An image in, the model inputs of its faces out; the faces' scores back, one verdict out.

`predict` and the service score pictures, not dataset crops: a picture may hold several
faces, or none, or one face so small that a model trained on tight crops cannot judge it.
`image_inputs` gives the inputs to score for one decoded image (one per face with the face
stage, else the whole image) and what the user should know about them; `ScoredImage` puts
the faces' scores together into the image's verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

import torch
from PIL import Image

from deepfake_detection.data.preprocess import Preprocessing
from deepfake_detection.faces.settings import DEFAULT_WARN_SMALL_FACE, FaceSettings

#: The longer side, in pixels, at which a picture is first searched for the framing note. A
#: face large enough to need no note (10 % of the picture by default) is still some 30 px
#: wide there, well above the smallest face YuNet finds, and the search costs a fraction of
#: one at the detector's full 640 px. On 2 cores YuNet takes about 0.5 ms at 96 px, 1.0-1.3
#: ms at 160 px and 26 ms for a 1024 px photo at full size; over 720 pictures with a face
#: pasted at several sizes, 96 px and 160 px settled the same share of them.
QUICK_DETECT_SIZE = 96


@cache
def _finder(detect_size: int | None = None):
    """The default detector, for models trained without the face stage: only to warn."""
    from deepfake_detection.faces.stage import FaceStage

    settings = FaceSettings()
    return FaceStage(
        settings if detect_size is None else replace(settings, detect_size=detect_size)
    )


def framing_note(image: Image.Image, warn_below: float | None) -> str:
    """For a model trained on whole images (face=none): a note when the picture's largest
    face covers less than `warn_below` of it, or when it has no face at all.

    A quick search at `QUICK_DETECT_SIZE` settles the common case, a face large enough; only
    a larger picture that may need a note is searched again at full size, for the note's
    numbers (the detector never enlarges: a small picture's quick search is the full one)."""
    if warn_below is None:
        return ""
    faces = _finder(QUICK_DETECT_SIZE).find(image)
    area = image.size[0] * image.size[1]
    if faces and faces[0].area / area >= warn_below:
        return ""
    if max(image.size) > QUICK_DETECT_SIZE:
        faces = _finder().find(image)
    if not faces:
        return "no face found in this image; the model scored it whole"
    share = faces[0].area / area
    if share >= warn_below:
        return ""
    return (
        "this model was trained on tight face crops; the face here covers "
        f"{share:.1%} of the image: use a model trained with face=crop"
    )


@dataclass
class ImageInputs:
    """What one image gives the model: one input per face (or the whole image), the faces'
    descriptions (box, detection score, share of the image; empty when scored whole), and a
    note for the user."""

    inputs: list[torch.Tensor]
    faces: list[dict[str, Any]]
    note: str = ""
    size: tuple[int, int] = (0, 0)
    #: Each face's crop, as the model saw it before its resize (`keep_crops`; for Grad-CAM).
    crops: list[Image.Image] = field(default_factory=list)


def image_inputs(
    preprocessing: Preprocessing,
    image: Image.Image,
    name: Any,
    warn_small_face: float | None = DEFAULT_WARN_SMALL_FACE,
    keep_crops: bool = False,
) -> ImageInputs:
    """The model inputs of a decoded image. `BadImageError` names it when unusable, and
    `NoFaceError` (a `BadImageError`) when it has no face under `face.on_missing=skip`."""
    stage = preprocessing.face_stage
    if stage is None:
        note = framing_note(image, warn_small_face)
        return ImageInputs([preprocessing.model_input(image, name)], [], note, image.size)
    crops = stage.crops(image)
    if not crops:
        stage.check_missing(name)  # face.on_missing: skip and error raise here
        preprocessing.check_shape(image, name)
        whole = preprocessing.transform()(image)
        return ImageInputs([whole], [], "no face found: scored as a whole image", image.size)
    inputs = [preprocessing.transform()(crop.image) for crop in crops]
    faces = [crop.describe(image.size) for crop in crops]
    kept = [crop.image for crop in crops] if keep_crops else []
    return ImageInputs(inputs, faces, "", image.size, kept)


def per_image(probs: list[float], given: Sequence[ImageInputs]) -> list[list[float]]:
    """The scores of a batch that holds every input of `given` in order, split back per image."""
    return split_counts(probs, [len(inputs.inputs) for inputs in given])


def split_counts(probs: list[float], counts: Sequence[int]) -> list[list[float]]:
    """`probs` cut into consecutive runs of `counts[i]` scores (one run per image)."""
    split, start = [], 0
    for count in counts:
        split.append(probs[start : start + count])
        start += count
    return split


def verdict_of(probs: list[float], how: str) -> float:
    """An image's P(Fake) from its faces' (largest first): the highest, the mean, or the
    largest face's."""
    if how == "mean":
        return sum(probs) / len(probs)
    if how == "largest":
        return probs[0]
    return max(probs)


@dataclass
class ScoredImage:
    """One image's verdict and the score of each of its faces."""

    name: str
    prob: float
    faces: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    @classmethod
    def of(cls, name: str, given: ImageInputs, probs: list[float], verdict: str) -> ScoredImage:
        faces = [
            {**face, "prob_fake": prob} for face, prob in zip(given.faces, probs, strict=False)
        ]
        return cls(name, verdict_of(probs, verdict), faces, given.note)

    def as_json(self, label: Any) -> dict[str, Any]:
        """The image's entry in an answer: its score, call, faces (each with its own call)."""
        return {
            "prob_fake": self.prob,
            "label": label(self.prob),
            "faces": [{**face, "label": label(face["prob_fake"])} for face in self.faces],
            "note": self.note,
        }


def no_face_note(reason: str) -> str:
    return f"{reason}: not scored (face.on_missing=skip)"


def verdict_rule(preprocessing: Preprocessing) -> str:
    """How an image's score follows from its faces' (`face.verdict`)."""
    return preprocessing.face.verdict if preprocessing.face is not None else "max"
