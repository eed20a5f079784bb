"""What `deepfake-predict` writes for video clips: `videos.csv` (one verdict per clip),
`frames.csv` (one row per sampled frame and face) and a timeline figure per clip."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

from deepfake_detection.detector.clip_scoring import ScoredVideo

VIDEOS_FILE = "videos.csv"
FRAMES_FILE = "frames.csv"
TIMELINES_DIR = "timelines"

VIDEO_HEADER = (
    "path",
    "prob_fake",
    "prediction",
    "aggregate",
    "frames_used",
    "frames_without_face",
    "duration_s",
    "width",
    "height",
    "fps",
    "rotation",
    "damaged_packets",
    "note",
)
FRAME_HEADER = (
    "path",
    "frame",
    "time_s",
    "prob_fake",
    "prediction",
    "face",
    "x",
    "y",
    "width",
    "height",
    "detection_score",
    "face_prob_fake",
)


def video_rows(videos: Sequence[ScoredVideo], call: Callable[[float], str]) -> list[tuple]:
    return [
        (
            v.name,
            f"{v.prob:.9g}",
            call(v.prob),
            v.aggregate,
            v.used,
            v.without_face,
            v.clip["duration_s"],
            v.clip["width"],
            v.clip["height"],
            v.clip["fps"],
            v.clip["rotation"],
            v.clip["damaged_packets"],
            v.note,
        )
        for v in videos
    ]


def frame_rows(videos: Sequence[ScoredVideo], call: Callable[[float], str]) -> list[tuple]:
    """One row per sampled frame and face (a frame without a face has one row, no box)."""
    rows = []
    for video in videos:
        for number, frame in enumerate(video.frames):
            prob = f"{frame.prob:.9g}" if frame.prob is not None else ""
            verdict = call(frame.prob) if frame.prob is not None else "not scored"
            head = (video.name, number, f"{frame.time:.3f}", prob, verdict)
            if not frame.faces:
                rows.append((*head, "", "", "", "", "", "", ""))
            for face_number, face in enumerate(frame.faces):
                rows.append(
                    (
                        *head,
                        face_number,
                        *face["box"],
                        face["score"],
                        f"{face['prob_fake']:.9g}",
                    )
                )
    return rows


def timeline_name(path: str, taken: set[str]) -> str:
    """A file name for a clip's timeline, unique within one output folder."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem) or "clip"
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}_{n}"
    taken.add(name)
    return name


def save_timelines(output_dir: Path, videos: Sequence[ScoredVideo], threshold: float) -> list[Path]:
    """`timelines/<clip>.png`: each clip's frame scores against time, with the threshold."""
    from deepfake_detection.reports.figures import save_figures, timeline_figure

    taken: set[str] = set()
    paths = []
    for v in videos:  # one at a time: a figure per clip is freed once written
        figure = timeline_figure(
            [f.time for f in v.frames],
            [f.prob for f in v.frames],
            threshold,
            f"{Path(v.name).name}: P(Fake) {v.prob:.3f} ({v.aggregate} of {v.used} frames)",
            v.prob,
        )
        paths += save_figures(
            {timeline_name(v.name, taken): figure}, output_dir, folder=TIMELINES_DIR
        )
    return paths
