"""Image files → the detector's verdicts: decoded, face cropped and scored in one pass.

`predict`, the evaluation of an exported model and INT8 export's accuracy check score lists
of files the same way: DataLoader workers decode the next images while the model scores, bad
files are counted (or stop the pass), and each image's faces are put back together.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from deepfake_detection.data.images import BadImageError
from deepfake_detection.data.preprocess import Preprocessing
from deepfake_detection.data.scan import BadFile, stop_on_bad_image
from deepfake_detection.detector.formats import Runner
from deepfake_detection.detector.image_scoring import (
    ImageInputs,
    ScoredImage,
    image_inputs,
    split_counts,
    verdict_rule,
)
from deepfake_detection.faces.settings import DEFAULT_WARN_SMALL_FACE
from deepfake_detection.faces.stage import NoFaceError

log = logging.getLogger(__name__)


class _InputsOrReason(Dataset):
    """Each file's model inputs (one per face with the face stage), or the reason it gives
    none: one decoding pass, in the DataLoader's workers."""

    def __init__(
        self, files: list[Path], preprocessing: Preprocessing, warn_small_face: float | None
    ) -> None:
        self.files, self.preprocessing = files, preprocessing
        self.warn_small_face = warn_small_face

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[ImageInputs | None, int, str, bool]:
        """(inputs, index, "", False), or (None, index, the reason, whether it is only that
        the image has no face, under `face.on_missing=skip`)."""
        path = self.files[index]
        try:
            image = self.preprocessing.decode_file(path)
            given = image_inputs(self.preprocessing, image, path, self.warn_small_face)
            return given, index, "", False
        except BadImageError as err:
            return None, index, err.reason, isinstance(err, NoFaceError)


def _collate(items: list[tuple[ImageInputs | None, int, str, bool]]):
    """(the batch, each good image's inputs without their tensors with its input count and
    index, the bad ones). The tensors travel once, stacked: a worker sends each tensor it
    returns through its own shared-memory file, which costs more than scoring a small one."""
    given = [(given, index) for given, index, _, _ in items if given is not None]
    bad = [(index, reason, faceless) for given, index, reason, faceless in items if given is None]
    tensors = [tensor for inputs, _ in given for tensor in inputs.inputs]
    good = [(replace(inputs, inputs=[]), len(inputs.inputs), index) for inputs, index in given]
    return (torch.stack(tensors) if tensors else None), good, bad


def score_files(
    score: Runner,
    preprocessing: Preprocessing,
    files: list[Path],
    batch_size: int,
    num_workers: int,
    on_bad_image: str,
    warn_small_face: float | None = DEFAULT_WARN_SMALL_FACE,
) -> tuple[list[ScoredImage], list[BadFile]]:
    """(each scored file's verdict and faces, the files skipped) by `score`: decoded, face
    cropped and scored in one pass, DataLoader workers preparing while the model scores;
    bad files (and, under `face.on_missing=skip`, faceless ones) are counted as they turn
    up, or stop the pass under `on_bad_image=error`."""
    loader = DataLoader(
        _InputsOrReason(files, preprocessing, warn_small_face),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
    )
    verdict = verdict_rule(preprocessing)
    scored: list[ScoredImage] = []
    skipped: list[BadFile] = []
    for batch, good, bad in loader:
        for index, reason, faceless in bad:
            if on_bad_image == "error" and not faceless:  # a faceless image is not a bad one
                raise stop_on_bad_image(files[index], reason)
            skipped.append((str(files[index]), reason))
        probs = score(batch).tolist() if batch is not None else []
        own = split_counts(probs, [count for _, count, _ in good])
        for (given, _, index), probs_of in zip(good, own, strict=True):
            scored.append(ScoredImage.of(str(files[index]), given, probs_of, verdict))
    if skipped:
        log.warning("skipped %d file(s), e.g. %s: %s", len(skipped), *skipped[0])
    return scored, skipped
