"""The `video.*` keys: which frames of a clip are scored and how their scores become the
clip's, and the limits a clip must stay within. Kept free of torch and PyAV, so a command
checks its config at once.

The defaults follow DeepfakeBench's protocol (32 frames sampled uniformly over the clip, the
video score the mean of the frame scores), so video-level numbers compare with the field's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deepfake_detection.rules import (
    Rule,
    cache_dir,
    integer,
    number,
    one_of,
    or_null,
    rules_of,
    setting,
)

#: `video.aggregate`: how a clip's P(Fake) follows from its frames'.
AGGREGATES = ("mean", "median", "max", "topk_mean")
#: `video.faces`: the largest face of each frame (one person tracked), or every face found.
FACES = ("largest", "all")


@dataclass(frozen=True)
class VideoSettings:
    """The keys of `video.*` (conf/video/default.yaml)."""

    #: Frames sampled uniformly over the clip (ignored when `fps` is set).
    frames: int = setting(integer(1, 10_000), 32)
    #: Frames per second of the clip to score instead, at most `max_frames` of them.
    fps: float | None = setting(or_null(number(0, 240, low_open=True)), None)
    aggregate: str = setting(one_of(*AGGREGATES), "mean")
    #: `aggregate=topk_mean`: the mean of this many highest frame scores.
    topk: int = setting(integer(1), 4)
    faces: str = setting(one_of(*FACES), "largest")
    #: At most this many frames are decoded and scored per clip, whatever `fps` asks.
    max_frames: int = setting(integer(1, 100_000), 600)
    #: Clips of more frames than this in all are refused (null: no limit).
    max_clip_frames: int | None = setting(or_null(integer(1)), None)
    #: Clips longer than this many seconds are refused (null: no limit).
    max_seconds: float | None = setting(or_null(number(0, low_open=True)), 10_800)
    #: Frames larger than this many pixels (width × height) are refused (null: no limit).
    max_frame_pixels: int | None = setting(or_null(integer(1)), 8_294_400)
    #: The sampled frames of one clip are held in memory together: at most this many MB.
    max_decoded_mb: float = setting(number(0, low_open=True), 4000)
    #: Where a dataset's clips are kept as frames (null: the user cache).
    cache_dir: str | None = setting(cache_dir(), None)

    @classmethod
    def from_config(cls, node: Mapping[str, Any] | None) -> VideoSettings:
        """From a `video` config node (or a dict); missing keys take their defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in dict(node or {}).items() if k in known})

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Keys of `video.*`, for the commands that read video.
VIDEO_RULES: dict[str, Rule] = rules_of(VideoSettings, "video")


#: What a scoring command may change about how a dataset's clips are read and scored (null:
#: as in the training run): `deepfake-evaluate video.frames=32 video.aggregate=max`.
SCORING_KEYS = ("frames", "fps", "aggregate", "topk")
SCORING_VIDEO_RULES: dict[str, Rule] = {
    f"video.{name}": or_null(rule)
    for name, rule in rules_of(VideoSettings, only=SCORING_KEYS).items()
}


def scoring_video(trained: Mapping[str, Any] | None, given: Mapping[str, Any] | None) -> dict:
    """The training run's `video` settings with a scoring command's non-null `video.*`."""
    changed = {k: v for k, v in dict(given or {}).items() if k in SCORING_KEYS and v is not None}
    return {**dict(trained or {}), **changed}
