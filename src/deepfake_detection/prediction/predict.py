"""Checkpoint + image and video files → P(Fake) and a Fake/Real call per file, no labels
needed: per image (and face), and per clip with its sampled frames' scores and a timeline."""

from __future__ import annotations

import csv
import io
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from deepfake_detection.data.discovery import IMAGE_EXTENSIONS, list_images
from deepfake_detection.data.layout import VIDEO_EXTENSIONS, list_videos
from deepfake_detection.data.preprocess import Preprocessing
from deepfake_detection.data.scan import write_skipped_files
from deepfake_detection.detector.clip_scoring import ScoredVideo, score_clip
from deepfake_detection.detector.exported_model import EXPORT_FORMATS, load_detector
from deepfake_detection.detector.file_scoring import score_files
from deepfake_detection.detector.formats import Runner
from deepfake_detection.detector.image_scoring import ScoredImage
from deepfake_detection.errors import ConfigError, DatasetError
from deepfake_detection.faces.settings import DEFAULT_WARN_SMALL_FACE
from deepfake_detection.files import atomic_write_bytes, write_json
from deepfake_detection.prediction.video_outputs import (
    FRAME_HEADER,
    FRAMES_FILE,
    VIDEO_HEADER,
    VIDEOS_FILE,
    frame_rows,
    save_timelines,
    video_rows,
)
from deepfake_detection.video.reading import BadVideoError, is_video, read_clip
from deepfake_detection.video.settings import VideoSettings

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.csv"
FACES_FILE = "faces.csv"
SUMMARY_FILE = "predict.json"
#: At most this many predictions are printed; all of them are in `predictions.csv`.
MAX_PRINTED = 50


def input_files(value: str) -> tuple[list[Path], list[Path]]:
    """(images, videos): one file, or every image and clip under a folder (recursively,
    hidden files left out)."""
    path = Path(value).expanduser()
    if path.is_dir():
        images, videos = list_images(path), list_videos(path)
        if not images and not videos:
            looked_for = ", ".join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))
            raise DatasetError(
                f"input={value}: no images or videos found (looked for {looked_for})"
            )
        return images, videos
    return ([], [path]) if is_video(path) else ([path], [])


def _settings(train_data: dict[str, Any], overrides: DictConfig) -> dict[str, Any]:
    """The training run's data settings, replaced by the `data.*` values given."""
    return {**train_data, **{k: v for k, v in overrides.items() if v is not None}}


def _save_csv(path: Path, rows: list[tuple], header: tuple[str, ...]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


def _call(prob: float, threshold: float) -> str:
    return "Fake" if prob > threshold else "Real"


def save_predictions(
    output_dir: Path,
    scored: list[ScoredImage],
    threshold: float,
    videos: list[ScoredVideo] | None = None,
) -> None:
    """`predictions.csv`, one row per image (its verdict, face count and note) and per clip
    (its verdict, the faces scored in its frames); `faces.csv`, one row per face found in
    an image (box, detection score, share, P(Fake), call); for clips, `videos.csv`,
    `frames.csv` and a timeline figure each (`video_outputs`)."""
    videos = videos or []
    call = lambda prob: _call(prob, threshold)  # noqa: E731
    rows = [(s.name, f"{s.prob:.9g}", call(s.prob), len(s.faces), s.note) for s in scored]
    rows += [(v.name, f"{v.prob:.9g}", call(v.prob), v.faces, _video_note(v)) for v in videos]
    _save_csv(
        output_dir / PREDICTIONS_FILE, rows, ("path", "prob_fake", "prediction", "faces", "note")
    )
    faces = [
        (
            s.name,
            number,
            *face["box"],
            face["score"],
            face["area"],
            f"{face['prob_fake']:.9g}",
            call(face["prob_fake"]),
        )
        for s in scored
        for number, face in enumerate(s.faces)
    ]
    header = (
        "path",
        "face",
        "x",
        "y",
        "width",
        "height",
        "detection_score",
        "area",
        "prob_fake",
        "prediction",
    )
    _save_csv(output_dir / FACES_FILE, faces, header)
    if videos:
        _save_csv(output_dir / VIDEOS_FILE, video_rows(videos, call), VIDEO_HEADER)
        _save_csv(output_dir / FRAMES_FILE, frame_rows(videos, call), FRAME_HEADER)
        save_timelines(output_dir, videos, threshold)


def _video_note(video: ScoredVideo) -> str:
    frames = f"video: {video.aggregate} of {video.used} frame(s) ({VIDEOS_FILE}, {FRAMES_FILE})"
    return f"{frames}; {video.note}" if video.note else frames


def score_videos(
    runner,
    preprocessing: Preprocessing,
    files: list[Path],
    settings: VideoSettings,
    batch_size: int,
    on_bad_image: str,
) -> tuple[list[ScoredVideo], list[tuple[str, str]]]:
    """(each readable clip's verdict, the clips skipped): sampled, decoded once, face
    cropped and scored clip by clip; a clip that cannot be read is counted, or stops the
    command under `on_bad_image=error`."""
    from deepfake_detection.data.scan import stop_on_bad_image

    scored: list[ScoredVideo] = []
    skipped: list[tuple[str, str]] = []
    for path in files:
        try:
            clip = read_clip(path, settings)
            scored.append(score_clip(clip, preprocessing, runner, settings, batch_size))
        except BadVideoError as err:
            if on_bad_image == "error":
                raise stop_on_bad_image(path, err.reason) from None
            skipped.append((str(path), err.reason))
            log.warning("skipped %s: %s", path, err.reason)
    return scored, skipped


@dataclass
class _Scorer:
    """What predict scores with, from a checkpoint or an exported file alike."""

    source: Path
    model_name: str
    backend: str
    runner: Runner
    preprocessing: Preprocessing
    #: Batch size, workers, bad-image policy and image size.
    data: dict[str, Any]
    threshold: float
    rule: str
    temperature: float | None
    operating_points: dict[str, Any] | None


def _from_checkpoint(cfg: DictConfig, output_dir: Path) -> _Scorer:
    # Lightning loads the checkpoint: imported here, so an exported model starts without it.
    from deepfake_detection.detector.trained import (
        TrainedCheckpoint,
        device_runner,
        with_operating_point,
    )

    trained = TrainedCheckpoint.load(with_operating_point(cfg))
    data = _settings(trained.data, cfg.data)
    face = cfg.get("face")
    preprocessing = Preprocessing.of_data(data).with_face(
        OmegaConf.to_container(face) if face is not None else None
    )
    backend = cfg.get("backend") or "torch"
    if backend == "onnx":
        runner = trained.onnx_runner(preprocessing, output_dir)
    else:
        runner = device_runner(trained.model, trained.decided.divisor, trained.trainer)
    return _Scorer(
        trained.ckpt_file,
        trained.model.model_name,
        backend,
        runner,
        preprocessing,
        data,
        trained.threshold,
        trained.rule,
        trained.temperature,
        trained.decided.operating_points,
    )


def _from_export(cfg: DictConfig) -> _Scorer:
    """An exported model.onnx / model.int8.onnx / model.pt2: its own preprocessing,
    threshold and operating points (model.json), checked when it loads."""
    detector = load_detector(cfg, explain=False)
    size = detector.preprocessing.image_size
    if cfg.data.get("image_size") not in (None, size):
        raise ConfigError(
            f"data.image_size={cfg.data.image_size}: {cfg.ckpt_path} was exported for "
            f"{size} px images"
        )
    given = {k: v for k, v in cfg.data.items() if v is not None}
    data = {"batch_size": 32, "num_workers": None, "on_bad_image": "skip", **given}
    return _Scorer(
        Path(detector.source),
        detector.model_name,
        detector.backend,
        detector.score,
        detector.preprocessing,
        {**data, "image_size": size},
        detector.threshold,
        detector.threshold_rule,
        detector.temperature,
        detector.operating_points,
    )


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Score every readable image and clip of `cfg.input`; returns the summary written."""
    output_dir = Path(cfg.paths.output_dir)
    files, clips = input_files(cfg.input)
    exported = Path(str(cfg.ckpt_path)).suffix.lower() in EXPORT_FORMATS
    scorer = _from_export(cfg) if exported else _from_checkpoint(cfg, output_dir)
    runner, preprocessing, data = scorer.runner, scorer.preprocessing, scorer.data
    threshold, rule, temperature = scorer.threshold, scorer.rule, scorer.temperature
    if preprocessing.face is not None:
        log.info("face stage: %s", preprocessing.describe()["steps"][1])
    video = VideoSettings.from_config(cfg.get("video"))
    started = time.perf_counter()  # reading and scoring, not loading or exporting
    scored, skipped = [], []
    if files:
        scored, skipped = score_files(
            runner,
            preprocessing,
            files,
            data["batch_size"],
            data["num_workers"] or 0,
            data["on_bad_image"],
            cfg.get("warn_small_face", DEFAULT_WARN_SMALL_FACE),
        )
    seconds = time.perf_counter() - started
    videos, skipped_clips = score_videos(
        runner, preprocessing, clips, video, data["batch_size"], data["on_bad_image"]
    )
    video_seconds = time.perf_counter() - started - seconds
    skipped += skipped_clips
    write_skipped_files(output_dir, skipped)
    if not scored and not videos:
        raise DatasetError(
            f"input={cfg.input}: no readable image or video ({len(skipped)} skipped)"
        )

    save_predictions(output_dir, scored, threshold, videos)
    calls = [s.prob for s in scored] + [v.prob for v in videos]
    fake = sum(1 for prob in calls if prob > threshold)
    noted = [s for s in scored if s.note]
    summary = {
        "checkpoint": str(scorer.source),
        "model": scorer.model_name,
        "input": str(cfg.input),
        "images": len(scored),
        "videos": len(videos),
        "fake": fake,
        "real": len(calls) - fake,
        "skipped": len(skipped),
        "faces": sum(len(s.faces) for s in scored),
        "face": asdict(preprocessing.face) if preprocessing.face else None,
        "video": video.describe() if clips else None,
        "notes": len(noted),
        "threshold": threshold,
        "threshold/rule": rule,
        "operating_points": scorer.operating_points,
        "calibration": cfg.get("calibration", "none"),
        "temperature": temperature,
        "image_size": data["image_size"],
        "backend": scorer.backend,
        "seconds": round(seconds, 3),
        "images_per_s": round(len(scored) / seconds, 2) if scored and seconds > 0 else None,
        "video_seconds": round(video_seconds, 3),
    }
    write_json(output_dir / SUMMARY_FILE, summary)
    _print_verdicts(scored, videos, threshold, preprocessing.face is not None)
    if noted:
        log.warning(
            "%d image(s) have a note in %s, e.g. %s: %s",
            len(noted),
            PREDICTIONS_FILE,
            noted[0].name,
            noted[0].note,
        )
    counts = f"{len(scored)} image(s)" + (f" and {len(videos)} video(s)" if clips else "")
    print(
        f"{counts}: {fake} Fake, {len(calls) - fake} Real "
        f"(P(Fake) > {threshold:.4g}); {len(skipped)} skipped; see {output_dir / PREDICTIONS_FILE}"
    )
    return summary


def _print_verdicts(
    scored: list[ScoredImage], videos: list[ScoredVideo], threshold: float, with_faces: bool
) -> None:
    lines = []
    for s in scored:
        faces = f"\t{len(s.faces)} face(s)" if with_faces else ""
        note = f"\t({s.note})" if s.note else ""
        lines.append(f"{_call(s.prob, threshold)}\t{s.prob:.4f}\t{s.name}{faces}{note}")
    for v in videos:
        frames = f"\t{v.used} frame(s), {v.without_face} without a face"
        lines.append(f"{_call(v.prob, threshold)}\t{v.prob:.4f}\t{v.name}{frames}")
    for line in lines[:MAX_PRINTED]:
        print(line)
    if len(lines) > MAX_PRINTED:
        print(f"... and {len(lines) - MAX_PRINTED} more")
