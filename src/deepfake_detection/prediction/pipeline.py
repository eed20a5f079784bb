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
from torch.utils.data import DataLoader, Dataset

from deepfake_detection.data.dataset import ImageFileDataset
from deepfake_detection.data.discovery import IMAGE_EXTENSIONS, list_images
from deepfake_detection.data.images import BadImageError
from deepfake_detection.data.preprocess import Preprocessing
from deepfake_detection.data.scan import (
    BadFile,
    apply_bad_image_policy,
    stop_on_bad_image,
    write_skipped_files,
)
from deepfake_detection.errors import DatasetError
from deepfake_detection.evaluation.pipeline import ReadyModel
from deepfake_detection.exporting.formats import Runner
from deepfake_detection.exporting.pipeline import onnx_runner_for
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
    ready: ReadyModel, files: list[Path], data: dict[str, Any]
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
        batches = ready.trainer.predict(ready.model, dataloaders=loader)
    except BadImageError as err:  # changed on disk after the check
        raise DatasetError(f"{err}; it changed after the image check") from None
    probs = torch.cat([p for p, _ in batches]).cpu()
    order = torch.argsort(torch.cat([i for _, i in batches]).cpu())
    return files, probs[order], skipped


class _DecodedOrReason(Dataset):
    """Each file as a model input, or the reason it is not an image: one decoding pass."""

    def __init__(self, files: list[Path], preprocessing: Preprocessing) -> None:
        self.files, self.preprocessing = files, preprocessing

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        try:
            return self.preprocessing.file(self.files[index]), index, ""
        except BadImageError as err:
            return torch.empty(0), index, err.reason


def _collate(items: list[tuple[torch.Tensor, int, str]]):
    good = [(tensor, index) for tensor, index, reason in items if not reason]
    bad = [(index, reason) for _, index, reason in items if reason]
    batch = torch.stack([tensor for tensor, _ in good]) if good else None
    return batch, [index for _, index in good], bad


def _score_with_onnx(
    runner: Runner, files: list[Path], data: dict[str, Any]
) -> tuple[list[Path], torch.Tensor, list[BadFile]]:
    """Decode and score in one pass: DataLoader workers decode while ONNX Runtime scores,
    and bad files are counted as they turn up."""
    loader = DataLoader(
        _DecodedOrReason(files, Preprocessing.of_data(data)),
        batch_size=data["batch_size"],
        num_workers=data["num_workers"] or 0,
        collate_fn=_collate,
    )
    kept: list[int] = []
    scores: list[torch.Tensor] = []
    skipped: list[BadFile] = []
    for batch, indices, bad in loader:
        for index, reason in bad:
            if data["on_bad_image"] == "error":
                raise stop_on_bad_image(files[index], reason)
            skipped.append((str(files[index]), reason))
        if batch is not None:
            scores.append(runner(batch))
            kept += indices
    if skipped:
        log.warning("skipped %d unreadable file(s), e.g. %s: %s", len(skipped), *skipped[0])
    probs = torch.cat(scores) if scores else torch.empty(0)
    return [files[i] for i in kept], probs, skipped


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Score every readable image of `cfg.input`; returns the summary written."""
    output_dir = Path(cfg.paths.output_dir)
    files = input_images(cfg.input)
    ready = ReadyModel.load(cfg)
    ckpt_file, model = ready.ckpt_file, ready.model
    threshold, rule, temperature = ready.threshold, ready.rule, ready.temperature
    data = _settings(ready.data, cfg.data)

    if cfg.get("backend", "torch") == "onnx":
        runner = onnx_runner_for(ready, Preprocessing.of_data(data), output_dir)
        started = time.perf_counter()  # reading and scoring, not the export
        files, probs, skipped = _score_with_onnx(runner, files, data)
    else:
        started = time.perf_counter()
        files, probs, skipped = _score_with_torch(ready, files, data)
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
