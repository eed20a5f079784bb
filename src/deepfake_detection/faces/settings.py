"""The `face.*` keys: how faces are found and cropped, and what each key accepts.

Kept free of torch and OpenCV, so that a command checks its config in a second. The crop
geometry (`margin`, `square`, `align`, `crop_size`) is fixed by the training run: a model
sees faces framed one way, so every later path crops the same way. What a scoring command
may change is listed in `SCORING_KEYS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from deepfake_detection.errors import ConfigError
from deepfake_detection.rules import (
    Rule,
    boolean,
    cache_dir,
    existing_file,
    integer,
    number,
    one_of,
    or_null,
    rules_of,
    setting,
)

#: `face.name`: no stage (the whole image is the model's input), or detect and crop faces.
FACE_MODES = ("none", "crop")
#: `face.detector` values built in; anything else is a `module:Class` of the user's.
BUILTIN_DETECTORS = ("yunet", "haar")
#: `face.on_missing`: an image without a face is scored whole, left out (counted), or stops.
ON_MISSING = ("whole", "skip", "error")
#: `face.select`: the largest face only, or every face (predict and serve).
SELECT = ("largest", "all")
#: `face.verdict`: how an image's score follows from its faces' scores.
VERDICTS = ("max", "mean", "largest")


def _detector_name(value: Any) -> bool:
    return isinstance(value, str) and (value in BUILTIN_DETECTORS or ":" in value)


DETECTOR = Rule(
    expected=f"one of: {', '.join(BUILTIN_DETECTORS)}, or module:Class of your own detector",
    accepts=_detector_name,
)


@dataclass(frozen=True)
class FaceSettings:
    """The keys of `face.*`; the defaults are `face=crop` (conf/face/crop.yaml)."""

    name: str = setting(one_of(*FACE_MODES), "crop")
    #: Which detector finds faces; `model_path` replaces its bundled model file.
    detector: str = setting(DETECTOR, "yunet")
    model_path: str | None = setting(existing_file(nullable=True, blank_is_null=True), None)
    #: Detections below this confidence are not faces (YuNet's score; Haar has none).
    score_threshold: float = setting(number(0, 1), 0.6)
    #: Images are searched at most this many pixels on their longer side (faster, and the
    #: detector's own input size); boxes are mapped back to the full image.
    detect_size: int = setting(integer(64), 640)
    #: Faces narrower than this, in pixels of the original image, are ignored.
    min_size: int = setting(integer(1), 24)
    #: The crop covers the face box enlarged this many times (DeepfakeBench uses 1.3).
    margin: float = setting(number(1, 4), 1.3)
    square: bool = setting(boolean(), True)
    #: Rotate each face so its eyes are level (needs a detector with landmarks: yunet).
    align: bool = setting(boolean(), False)
    #: Side of the crop, in pixels, before the model's own resize and centre crop.
    crop_size: int = setting(integer(32, 2048), 256)
    on_missing: str = setting(one_of(*ON_MISSING), "whole")
    select: str = setting(one_of(*SELECT), "largest")
    verdict: str = setting(one_of(*VERDICTS), "max")
    #: Crops of a training run's images are computed once and kept here (null: the cache).
    cache: bool = setting(boolean(), True)
    cache_dir: str | None = setting(cache_dir(), None)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> FaceSettings | None:
        """From `face.*`; None when the stage is off (`face=none`, or a run from before it)."""
        values = dict(cfg or {})
        if values.get("name", "none") == "none":
            return None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"face.{unknown[0]}: not a face key")
        settings = cls(**values)
        if settings.align and settings.detector == "haar":
            raise ConfigError(
                "face.align=true: the haar detector finds no eye landmarks to align on; "
                "use face.detector=yunet or face.align=false"
            )
        return settings

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> FaceSettings:
        """These settings with the non-null keys of a scoring command's `face.*`."""
        given = {k: v for k, v in dict(overrides or {}).items() if v is not None}
        known = {f.name for f in fields(self)}
        return dataclasses.replace(self, **{k: v for k, v in given.items() if k in known})

    def geometry_key(self) -> dict[str, Any]:
        """What a crop depends on: the store's key, and what an export records."""
        return {
            "detector": self.detector,
            "model_path": self.model_path,
            "score_threshold": self.score_threshold,
            "detect_size": self.detect_size,
            "min_size": self.min_size,
            "margin": self.margin,
            "square": self.square,
            "align": self.align,
            "crop_size": self.crop_size,
        }

    def describe(self) -> dict[str, Any]:
        """Every key, as `model.json` and a run's hyperparameters record them."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "cache_dir"}


#: Keys whose change alters how a found face is framed, not which faces are found.
GEOMETRY_KEYS = ("margin", "square", "align", "crop_size")


@dataclass(frozen=True)
class ScoringFaceSettings:
    """`face.*` of the commands that score with a trained detector (conf/face/trained.yaml):
    `name` null keeps the training run's stage, with each non-null key replacing its value;
    `face=crop` or `face=none` chooses a stage of its own."""

    name: str | None = setting(or_null(one_of(*FACE_MODES)), None)
    detector: str | None = setting(or_null(DETECTOR), None)
    model_path: str | None = setting(existing_file(nullable=True, blank_is_null=True), None)
    score_threshold: float | None = setting(or_null(number(0, 1)), None)
    detect_size: int | None = setting(or_null(integer(64)), None)
    min_size: int | None = setting(or_null(integer(1)), None)
    margin: float | None = setting(or_null(number(1, 4)), None)
    square: bool | None = setting(or_null(boolean()), None)
    align: bool | None = setting(or_null(boolean()), None)
    crop_size: int | None = setting(or_null(integer(32, 2048)), None)
    on_missing: str | None = setting(or_null(one_of(*ON_MISSING)), None)
    select: str | None = setting(or_null(one_of(*SELECT)), None)
    verdict: str | None = setting(or_null(one_of(*VERDICTS)), None)
    cache: bool | None = setting(or_null(boolean()), None)
    cache_dir: str | None = setting(cache_dir(), None)


def scoring_face(
    trained: Mapping[str, Any] | None, given: Mapping[str, Any] | None
) -> FaceSettings | None:
    """The face stage a scoring command uses: the training run's (`trained`, its `face`
    data argument) with the command's `face.*` (`given`) applied."""
    given = {k: v for k, v in dict(given or {}).items() if v is not None}
    name = given.pop("name", None)
    if name == "none":
        return None
    if name == "crop":
        return FaceSettings.from_config({"name": "crop", **given})
    base = FaceSettings.from_config(trained)
    if base is None:
        return None
    chosen = base.with_overrides(given)
    changed = [k for k in GEOMETRY_KEYS if getattr(chosen, k) != getattr(base, k)]
    if changed:
        import logging

        logging.getLogger(__name__).warning(
            "face.%s differs from the training run's: faces are framed unlike the crops "
            "the model learned from",
            changed[0],
        )
    return chosen


#: `warn_small_face` of predict and serve: a model trained without the face stage gets a note
#: on each picture whose largest face covers less than this share of it (null: never look).
DEFAULT_WARN_SMALL_FACE = 0.1
WARN_SMALL_FACE = or_null(number(0, 1))

#: Keys of the `face` group of a training run.
FACE_RULES: dict[str, Rule] = rules_of(FaceSettings, "face")


#: Keys of `face.*` for a command that scores with a trained detector.
SCORING_FACE_RULES: dict[str, Rule] = rules_of(ScoringFaceSettings, "face")
