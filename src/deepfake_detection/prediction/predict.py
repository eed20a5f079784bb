"""Checkpoint + image files → P(Fake) and a Fake/Real call per image, no labels needed."""

from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from deepfake_detection.data.dataset import ImageFileDataset
from deepfake_detection.data.discovery import IMAGE_EXTENSIONS, list_images
from deepfake_detection.data.images import BadImageError
from deepfake_detection.data.preprocess import Preprocessing
from deepfake_detection.data.scan import BadFile, apply_bad_image_policy, write_skipped_files
from deepfake_detection.detector.scoring import ScoringPass
from deepfake_detection.detector.trained import TrainedCheckpoint, score_files
from deepfake_detection.errors import DatasetError
from deepfake_detection.files import atomic_write_bytes, write_json

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.csv"
SUMMARY_FILE = "predict.json"
#: At most this many predictions are printed; all of them are in `predictions.csv`.
MAX_PRINTED = 50
UNKNOWN_LABEL = -1


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


def _save_csv(path: Path, files: list[Path], probs: torch.Tensor, threshold: float) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("path", "prob_fake", "prediction"))
    for file, prob in zip(files, probs.tolist(), strict=True):
        writer.writerow((str(file), f"{prob:.9g}", "Fake" if prob > threshold else "Real"))
    atomic_write_bytes(path, buffer.getvalue().encode())


def _score_with_torch(
    trained: TrainedCheckpoint, files: list[Path], data: dict[str, Any]
) -> tuple[list[Path], torch.Tensor, list[BadFile]]:
    """Check every image first (decoding it), then score the readable ones through
    Lightning's predict loop, on whichever device the config asks for."""
    skipped = apply_bad_image_policy(
        files, data["on_bad_image"], data["max_image_pixels"], workers=data["num_workers"] or 0
    )
    left_out = {path for path, _ in skipped}
    files = [f for f in files if str(f) not in left_out]
    if not files:
        return files, torch.empty(0), skipped
    dataset = ImageFileDataset(
        [(f, UNKNOWN_LABEL) for f in files],
        Preprocessing.of_data(data).transform(),
        max_pixels=data["max_image_pixels"],
    )
    loader = DataLoader(
        dataset, batch_size=data["batch_size"], num_workers=data["num_workers"] or 0
    )
    try:
        scoring = ScoringPass(trained.model, "predict", temperature=trained.decided.divisor)
        batches = trained.trainer.predict(scoring, dataloaders=loader)
    except BadImageError as err:  # changed on disk after the check
        raise DatasetError(f"{err}; it changed after the image check") from None
    probs = torch.cat([p for p, _ in batches]).cpu()
    order = torch.argsort(torch.cat([i for _, i in batches]).cpu())
    return files, probs[order], skipped


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Score every readable image of `cfg.input`; returns the summary written."""
    output_dir = Path(cfg.paths.output_dir)
    files = input_images(cfg.input)
    trained = TrainedCheckpoint.load(cfg)
    ckpt_file, model = trained.ckpt_file, trained.model
    threshold, rule, temperature = trained.threshold, trained.rule, trained.temperature
    data = _settings(trained.data, cfg.data)

    if cfg.get("backend", "torch") == "onnx":
        preprocessing = Preprocessing.of_data(data)
        runner = trained.onnx_runner(preprocessing, output_dir)
        started = time.perf_counter()  # reading and scoring, not the export
        files, probs, skipped = score_files(
            runner,
            preprocessing,
            files,
            data["batch_size"],
            data["num_workers"] or 0,
            data["on_bad_image"],
        )
    else:
        started = time.perf_counter()
        files, probs, skipped = _score_with_torch(trained, files, data)
    seconds = time.perf_counter() - started
    write_skipped_files(output_dir, skipped)
    if not files:
        raise DatasetError(f"input={cfg.input}: no readable image ({len(skipped)} skipped)")

    _save_csv(output_dir / PREDICTIONS_FILE, files, probs, threshold)
    fake = int((probs > threshold).sum())
    summary = {
        "checkpoint": str(ckpt_file),
        "model": model.model_name,
        "input": str(cfg.input),
        "images": len(files),
        "fake": fake,
        "real": len(files) - fake,
        "skipped": len(skipped),
        "threshold": threshold,
        "threshold/rule": rule,
        "calibration": cfg.get("calibration", "none"),
        "temperature": temperature,
        "image_size": data["image_size"],
        "backend": cfg.get("backend", "torch"),
        "seconds": round(seconds, 3),
        "images_per_s": round(len(files) / seconds, 2) if seconds > 0 else None,
    }
    write_json(output_dir / SUMMARY_FILE, summary)
    for file, prob in list(zip(files, probs.tolist(), strict=True))[:MAX_PRINTED]:
        print(f"{'Fake' if prob > threshold else 'Real'}\t{prob:.4f}\t{file}")
    if len(files) > MAX_PRINTED:
        print(f"... and {len(files) - MAX_PRINTED} more")
    print(
        f"{len(files)} image(s): {fake} Fake, {len(files) - fake} Real "
        f"(P(Fake) > {threshold:.4g}); {len(skipped)} skipped; see {output_dir / PREDICTIONS_FILE}"
    )
    return summary
