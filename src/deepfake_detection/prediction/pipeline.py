"""Checkpoint + image files → P(Fake) and a Fake/Real call per image, no labels needed."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from deepfake_detection.data.dataset import ImageFileDataset
from deepfake_detection.data.discovery import IMAGE_EXTENSIONS, list_images
from deepfake_detection.data.images import BadImageError
from deepfake_detection.data.preprocess import Preprocessing
from deepfake_detection.data.scan import apply_bad_image_policy, write_skipped_files
from deepfake_detection.errors import DatasetError
from deepfake_detection.evaluation.pipeline import ReadyModel
from deepfake_detection.files import atomic_write_bytes, write_json
from deepfake_detection.validation import validate_predict_config

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


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Score every readable image of `cfg.input`; returns the summary written."""
    validate_predict_config(cfg)  # every key, before anything is loaded
    output_dir = Path(cfg.paths.output_dir)
    files = input_images(cfg.input)
    ready = ReadyModel.load(cfg)
    ckpt_file, model, trainer = ready.ckpt_file, ready.model, ready.trainer
    threshold, rule, temperature = ready.threshold, ready.rule, ready.temperature
    data = _settings(ready.data, cfg.data)

    skipped = apply_bad_image_policy(
        files, data["on_bad_image"], data["max_image_pixels"], workers=data["num_workers"] or 0
    )
    write_skipped_files(output_dir, skipped)
    left_out = {path for path, _ in skipped}
    files = [f for f in files if str(f) not in left_out]
    if not files:
        raise DatasetError(f"input={cfg.input}: no readable image ({len(skipped)} skipped)")

    dataset = ImageFileDataset(
        [(f, UNKNOWN_LABEL) for f in files],
        Preprocessing.of_data(data).transform(),
        max_pixels=data["max_image_pixels"],
    )
    loader = DataLoader(
        dataset, batch_size=data["batch_size"], num_workers=data["num_workers"] or 0
    )
    try:
        batches = trainer.predict(model, dataloaders=loader)
    except BadImageError as err:  # changed on disk after the check
        raise DatasetError(f"{err}; it changed after the image check") from None
    probs = torch.cat([p for p, _ in batches]).cpu()
    order = torch.argsort(torch.cat([i for _, i in batches]).cpu())
    probs = probs[order]

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
