"""A clip's sampled frames → each frame's P(Fake) → the clip's P(Fake) and verdict.

Each frame goes through the model's own preprocessing (`image_inputs`): with a face stage,
its largest face (`video.faces=largest`, one person followed through the clip) or every
face; a frame without a face is scored whole or left out, as `face.on_missing` says for
pictures, and counted either way. The clip's score is an aggregate of its frames' scores
(`video.aggregate`); DeepfakeBench's video-level AUC uses their mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from deepfake_detection.data.preprocess import Preprocessing
from deepfake_detection.detector.formats import Runner
from deepfake_detection.detector.image_scoring import (
    ImageInputs,
    image_inputs,
    per_image,
    verdict_of,
    verdict_rule,
)
from deepfake_detection.faces.stage import NoFaceError
from deepfake_detection.metrics.per_clip import aggregate
from deepfake_detection.video.reading import BadVideoError, Clip
from deepfake_detection.video.settings import VideoSettings


@dataclass
class ScoredFrame:
    """One sampled frame: its time, P(Fake) (None when left out for lack of a face), its
    faces with their own scores, and whether a face was found."""

    time: float
    prob: float | None
    faces: list[dict[str, Any]] = field(default_factory=list)
    faceless: bool = False


@dataclass
class ScoredVideo:
    """A clip's verdict and the frames behind it."""

    name: str
    prob: float
    frames: list[ScoredFrame]
    clip: dict[str, Any]
    aggregate: str
    note: str = ""

    @property
    def used(self) -> int:
        """Frames whose score counts in the clip's."""
        return sum(1 for f in self.frames if f.prob is not None)

    @property
    def without_face(self) -> int:
        return sum(1 for f in self.frames if f.faceless)

    @property
    def faces(self) -> int:
        return sum(len(f.faces) for f in self.frames)

    def as_json(self, label: Any) -> dict[str, Any]:
        """The clip's entry in an answer: its score and call, and every frame's."""
        return {
            "prob_fake": self.prob,
            "label": label(self.prob),
            "aggregate": self.aggregate,
            "frames_used": self.used,
            "frames_without_face": self.without_face,
            **self.clip,
            "frames": [
                {
                    "time": f.time,
                    "prob_fake": f.prob,
                    "label": label(f.prob) if f.prob is not None else None,
                    "faces": [{**face, "label": label(face["prob_fake"])} for face in f.faces],
                }
                for f in self.frames
            ],
            "note": self.note,
        }


def video_preprocessing(preprocessing: Preprocessing, settings: VideoSettings) -> Preprocessing:
    """The model's preprocessing, with the face stage taking `video.faces` of each frame."""
    if preprocessing.face is None or preprocessing.face.select == settings.faces:
        return preprocessing
    return replace(preprocessing, face=replace(preprocessing.face, select=settings.faces))


@dataclass
class ClipInputs:
    """The model inputs of a clip's frames (None for a frame left out for lack of a face),
    and which frames had no face."""

    clip: Clip
    given: list[ImageInputs | None]
    faceless: list[bool]
    preprocessing: Preprocessing

    @property
    def tensors(self) -> list[torch.Tensor]:
        return [t for g in self.given if g is not None for t in g.inputs]


def clip_inputs(clip: Clip, preprocessing: Preprocessing, settings: VideoSettings) -> ClipInputs:
    """Each sampled frame through the model's preprocessing. `BadVideoError` when no frame
    is left to score (every frame faceless under `face.on_missing=skip`)."""
    preprocessing = video_preprocessing(preprocessing, settings)
    given: list[ImageInputs | None] = []
    faceless: list[bool] = []
    for frame in clip.frames:
        try:
            inputs = image_inputs(preprocessing, frame.image, clip.path, warn_small_face=None)
        except NoFaceError:
            given.append(None)
            faceless.append(True)
            continue
        given.append(inputs)
        faceless.append(preprocessing.face is not None and not inputs.faces)
    if all(g is None for g in given):
        raise BadVideoError(clip.path, f"no face in any of its {len(clip.frames)} sampled frames")
    return ClipInputs(clip, given, faceless, preprocessing)


def scored_video(inputs: ClipInputs, probs: list[float], settings: VideoSettings) -> ScoredVideo:
    """The clip's verdict from the scores of `inputs.tensors`, in order."""
    own = iter(per_image(probs, [g for g in inputs.given if g is not None]))
    verdict = verdict_rule(inputs.preprocessing)
    frames = []
    for frame, given, no_face in zip(
        inputs.clip.frames, inputs.given, inputs.faceless, strict=True
    ):
        if given is None:
            frames.append(ScoredFrame(frame.time, None, [], True))
            continue
        frame_probs = next(own)
        faces = [
            {**face, "prob_fake": p} for face, p in zip(given.faces, frame_probs, strict=False)
        ]
        frames.append(ScoredFrame(frame.time, verdict_of(frame_probs, verdict), faces, no_face))
    used = [f.prob for f in frames if f.prob is not None]
    video = ScoredVideo(
        inputs.clip.path,
        aggregate(used, settings.aggregate, settings.topk),
        frames,
        inputs.clip.describe(),
        settings.aggregate,
    )
    notes = []
    if video.without_face:
        what = "left out" if len(used) < len(frames) else "scored whole"
        notes.append(f"{video.without_face} of {len(frames)} frame(s) without a face ({what})")
    if inputs.clip.damaged:
        notes.append(f"{inputs.clip.damaged} damaged packet(s) skipped while decoding")
    video.note = "; ".join(notes)
    return video


def score_clip(
    clip: Clip,
    preprocessing: Preprocessing,
    score: Runner,
    settings: VideoSettings,
    batch_size: int = 32,
) -> ScoredVideo:
    """Score every sampled frame of `clip` with `score`, `batch_size` at a time, and
    aggregate (`clip_inputs`, then `scored_video`)."""
    inputs = clip_inputs(clip, preprocessing, settings)
    tensors = inputs.tensors
    probs: list[float] = []
    for start in range(0, len(tensors), batch_size):
        probs += score(torch.stack(tensors[start : start + batch_size])).tolist()
    return scored_video(inputs, probs, settings)
