"""`deepfake-evaluate ckpt_path=model.onnx`: an exported model scored on a labelled split.

What ships is the exported file, maybe quantized: its numbers are the ones that matter. It is
scored as `deepfake-predict` and the service score it (its own preprocessing and runtime,
from `model.json`), and reported as a checkpoint's evaluation is: metrics with intervals,
the split at each operating point the export recorded, per-source tables, figures and the
protocol record.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from deepfake_detection.data.datamodule import auto_num_workers
from deepfake_detection.data.discovery import discover, split_name
from deepfake_detection.data.scan import write_skipped_files
from deepfake_detection.data.split_fingerprint import split_fingerprint
from deepfake_detection.detector.exported_model import load_detector
from deepfake_detection.detector.file_scoring import score_files
from deepfake_detection.detector.spec import ExportSpec
from deepfake_detection.errors import ConfigError, DatasetError
from deepfake_detection.evaluation.split_report import report_split
from deepfake_detection.files import METRICS_FILE, SKIPPED_FILE, write_json
from deepfake_detection.metrics.binary import compute_metrics
from deepfake_detection.metrics.predictions import Predictions
from deepfake_detection.reports.protocol import preprocessing_record, protocol_record
from deepfake_detection.reports.summaries import evaluate_summary

log = logging.getLogger(__name__)


def _refuse_what_needs_a_checkpoint(cfg: DictConfig) -> None:
    """Settings an exported file cannot honour: one line, before anything is scored."""
    if cfg.get("data", {}).get("test_roots"):
        raise ConfigError(
            "data.test_roots: score one root at a time with an exported model (data.root=...)"
        )
    perturb = cfg.get("perturb") or {}
    if perturb.get("name", "none") != "none":
        raise ConfigError(
            f"perturb={perturb.get('name')}: perturbations are applied with a checkpoint; "
            "give ckpt_path=<the run the model was exported from>"
        )


def _root(cfg: DictConfig, spec: ExportSpec, path: Path) -> str:
    """`data.root`, else the dataset the export was validated on (its training data)."""
    given = cfg.data.get("root")
    recorded = (spec.protocol.get("data") or {}).get("root")
    if given not in (None, ""):
        return str(given)
    if recorded:
        return str(recorded)
    raise ConfigError(f"data.root is required: {path} does not record the data it was trained on")


def evaluate_export(cfg: DictConfig) -> dict[str, Any]:
    """Score `data.split` of a dataset with the exported model at `cfg.ckpt_path`."""
    _refuse_what_needs_a_checkpoint(cfg)
    output_dir = Path(cfg.paths.output_dir)
    path = Path(str(cfg.ckpt_path)).expanduser()
    detector = load_detector(cfg, explain=False)
    spec = ExportSpec.load(path, check_hash=False)  # checked when the detector loaded
    split = split_name(cfg.data.split)
    data = cfg.data
    index = discover(
        _root(cfg, spec, path),
        required=(split,),
        class_aliases=data.get("class_aliases"),
        source_depth=data.get("source_depth") or 1,
        split_lists=data.get("split_lists"),
        one_class=True,
        label=data.get("label"),
    )
    samples = index.splits[split]
    labels = {str(file): label for file, label in samples}
    scored, skipped = score_files(
        detector.score,
        detector.preprocessing,
        [file for file, _ in samples],
        int(data.get("batch_size") or 32),
        auto_num_workers() if data.get("num_workers") is None else int(data.num_workers),
        data.get("on_bad_image") or "skip",
        None,
    )
    write_skipped_files(output_dir, skipped)
    if not scored:
        raise DatasetError(
            f"data.root={index.root}: no readable image in the {split} split "
            f"({len(skipped)} skipped, see {SKIPPED_FILE})"
        )
    predictions = Predictions(
        torch.tensor([s.prob for s in scored], dtype=torch.float32),
        torch.tensor([labels[s.name] for s in scored]),
        tuple(s.name for s in scored),
    )
    threshold, rule = detector.threshold, detector.threshold_rule
    metrics: dict[str, Any] = {
        f"{split}/{name}": value
        for name, value in compute_metrics(
            predictions.probs, predictions.targets, threshold
        ).items()
    }
    metrics.update(
        report_split(
            output_dir,
            predictions,
            index,
            split,
            threshold,
            rule,
            detector.operating_points,
        )
    )
    scored_files = [(Path(name), labels[name]) for name in predictions.paths]
    metrics.update(
        {
            "protocol": protocol_record(
                data={
                    "root": str(index.root),
                    "split": split,
                    **split_fingerprint(index.root, scored_files),
                },
                validation=spec.protocol.get("data"),
                preprocessing=preprocessing_record(detector.preprocessing),
                checkpoint={"rule": "an exported model", "file": path.name, "sha256": spec.sha256},
                threshold={"rule": rule, "value": threshold},
                calibration={
                    "method": "built into the export" if spec.temperature else "none",
                    "temperature": spec.temperature,
                },
                perturbation="clean",
                backbone_library=None,
            ),
            "threshold": threshold,
            "threshold/rule": rule,
            "checkpoint": str(path),
            "model": detector.model_name,
            "backend": detector.backend,
            "quantization": spec.quantization,
            "data/root": str(index.root),
            "data/split": split,
            "data/images": len(predictions),
            "data/image_size": detector.preprocessing.image_size,
            "data/skipped": len(skipped),
            "perturb": "clean",
        }
    )
    backbone = (spec.protocol.get("versions") or {}).get("backbone")
    if backbone:  # the library the exported network came from, as the export recorded it
        metrics["protocol"]["versions"]["backbone"] = backbone
    write_json(output_dir / METRICS_FILE, metrics)
    log.info(evaluate_summary(metrics, split, output_dir))
    return metrics
