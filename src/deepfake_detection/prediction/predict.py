"""Checkpoint + image files → P(Fake) and a Fake/Real call per image, no labels needed."""

from __future__ import annotations

import csv
import io
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from deepfake_detection.data.discovery import IMAGE_EXTENSIONS, list_images
from deepfake_detection.data.preprocess import Preprocessing
from deepfake_detection.data.scan import write_skipped_files
from deepfake_detection.detector.image_scoring import ScoredImage
from deepfake_detection.detector.trained import TrainedCheckpoint, device_runner, score_files
from deepfake_detection.errors import DatasetError
from deepfake_detection.faces.settings import DEFAULT_WARN_SMALL_FACE
from deepfake_detection.files import atomic_write_bytes, write_json

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.csv"
FACES_FILE = "faces.csv"
SUMMARY_FILE = "predict.json"
#: At most this many predictions are printed; all of them are in `predictions.csv`.
MAX_PRINTED = 50


def input_images(value: str) -> list[Path]:
    """One image file, or every image under a folder (recursively, hidden files left out)."""
    path = Path(value).expanduser()
    if path.is_dir():
        images = list_images(path)
        if not images:
            raise DatasetError(
                f"input={value}: no images found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        return images
    return [path]


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


def save_predictions(output_dir: Path, scored: list[ScoredImage], threshold: float) -> None:
    """`predictions.csv`, one row per image (its verdict, face count and note), and
    `faces.csv`, one row per face found (box, detection score, share, P(Fake), call)."""
    images = [
        (s.name, f"{s.prob:.9g}", _call(s.prob, threshold), len(s.faces), s.note) for s in scored
    ]
    _save_csv(
        output_dir / PREDICTIONS_FILE, images, ("path", "prob_fake", "prediction", "faces", "note")
    )
    faces = [
        (
            s.name,
            number,
            *face["box"],
            face["score"],
            face["area"],
            f"{face['prob_fake']:.9g}",
            _call(face["prob_fake"], threshold),
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


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Score every readable image of `cfg.input`; returns the summary written."""
    output_dir = Path(cfg.paths.output_dir)
    files = input_images(cfg.input)
    trained = TrainedCheckpoint.load(cfg)
    ckpt_file, model = trained.ckpt_file, trained.model
    threshold, rule, temperature = trained.threshold, trained.rule, trained.temperature
    data = _settings(trained.data, cfg.data)
    face = cfg.get("face")
    preprocessing = Preprocessing.of_data(data).with_face(
        OmegaConf.to_container(face) if face is not None else None
    )
    if preprocessing.face is not None:
        log.info("face stage: %s", preprocessing.describe()["steps"][1])

    if cfg.get("backend", "torch") == "onnx":
        runner = trained.onnx_runner(preprocessing, output_dir)
    else:
        runner = device_runner(model, trained.decided.divisor, trained.trainer)
    started = time.perf_counter()  # reading and scoring, not loading or exporting
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
    write_skipped_files(output_dir, skipped)
    if not scored:
        raise DatasetError(f"input={cfg.input}: no readable image ({len(skipped)} skipped)")

    save_predictions(output_dir, scored, threshold)
    fake = sum(1 for s in scored if s.prob > threshold)
    noted = [s for s in scored if s.note]
    summary = {
        "checkpoint": str(ckpt_file),
        "model": model.model_name,
        "input": str(cfg.input),
        "images": len(scored),
        "fake": fake,
        "real": len(scored) - fake,
        "skipped": len(skipped),
        "faces": sum(len(s.faces) for s in scored),
        "face": asdict(preprocessing.face) if preprocessing.face else None,
        "notes": len(noted),
        "threshold": threshold,
        "threshold/rule": rule,
        "calibration": cfg.get("calibration", "none"),
        "temperature": temperature,
        "image_size": data["image_size"],
        "backend": cfg.get("backend", "torch"),
        "seconds": round(seconds, 3),
        "images_per_s": round(len(scored) / seconds, 2) if seconds > 0 else None,
    }
    write_json(output_dir / SUMMARY_FILE, summary)
    for s in scored[:MAX_PRINTED]:
        faces = f"\t{len(s.faces)} face(s)" if preprocessing.face is not None else ""
        note = f"\t({s.note})" if s.note else ""
        print(f"{_call(s.prob, threshold)}\t{s.prob:.4f}\t{s.name}{faces}{note}")
    if len(scored) > MAX_PRINTED:
        print(f"... and {len(scored) - MAX_PRINTED} more")
    if noted:
        log.warning(
            "%d image(s) have a note in %s, e.g. %s: %s",
            len(noted),
            PREDICTIONS_FILE,
            noted[0].name,
            noted[0].note,
        )
    print(
        f"{len(scored)} image(s): {fake} Fake, {len(scored) - fake} Real "
        f"(P(Fake) > {threshold:.4g}); {len(skipped)} skipped; see {output_dir / PREDICTIONS_FILE}"
    )
    return summary
