"""After a fit: test the best checkpoint and leave the run's artifacts.

Writes `model.pth`, `predictions/{test,val}.csv`, the figures, the HParams entry and
`metrics.json`, from the checkpoint chosen on validation (never on test).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from deepfake_detection.checkpoint_io import safe_torch_load
from deepfake_detection.data.layout import root_names
from deepfake_detection.detector.scoring import score_split
from deepfake_detection.files import METRICS_FILE, PREDICTIONS_DIR, WEIGHTS_FILE, write_json
from deepfake_detection.metrics.binary import compute_metrics
from deepfake_detection.metrics.operating_points import validation_points
from deepfake_detection.metrics.per_source import mean_over, per_source_metrics
from deepfake_detection.metrics.predictions import Predictions
from deepfake_detection.metrics.threshold import THRESHOLD_RULE, youden_threshold
from deepfake_detection.reports.figures import (
    dataset_distribution_figure,
    learning_curves_figure,
    per_source_figure,
    prediction_figures,
    render_pngs,
    save_pngs,
)
from deepfake_detection.reports.operating_point_tables import interval_metrics, scored_points
from deepfake_detection.reports.per_clip_tables import flat, report_per_clip
from deepfake_detection.reports.per_source_tables import FIGURE_NAME as PER_SOURCE_FIGURE
from deepfake_detection.reports.per_source_tables import report_per_source
from deepfake_detection.reports.protocol import (
    datamodule_preprocessing,
    protocol_record,
    split_record,
)
from deepfake_detection.training.artifacts import save_state_dict
from deepfake_detection.training.fit import FittedRun
from deepfake_detection.training.hparams import log_hparams, run_hparams
from deepfake_detection.training.loggers import share_figures, tensorboard_writer

log = logging.getLogger(__name__)


def _relative(path: str, start: Path) -> str:
    """`path` relative to the run dir when inside it, so the run dir can be moved."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(start.resolve()))
    except ValueError:
        return str(resolved)


def _val_threshold(predictions: Predictions) -> float | None:
    """Youden's J threshold on validation scores; None when validation lacks a class."""
    try:
        return youden_threshold(predictions.probs, predictions.targets)
    except ValueError as err:
        log.warning("no validation threshold: %s", err)
        return None


#: Thresholded test metrics that are also reported at the validation threshold, as
#: `test/<name>@val`: at 0.5 they undersell a model whose scores sit elsewhere.
AT_VAL_METRICS = ("acc", "precision", "recall", "f1", "real_acc", "fake_acc", "balanced_acc")


def at_val_threshold(predictions: Predictions, threshold: float | None) -> dict[str, Any]:
    """`test/<name>@val`: the test split's thresholded metrics at the validation threshold."""
    if threshold is None:
        return {f"test/{name}@val": None for name in AT_VAL_METRICS}
    values = compute_metrics(predictions.probs, predictions.targets, threshold)
    return {f"test/{name}@val": values[name] for name in AT_VAL_METRICS}


def _validation_points(predictions: Predictions) -> dict[str, dict[str, Any]] | None:
    """The standard operating points on the best checkpoint's validation scores."""
    try:
        return validation_points(predictions.probs, predictions.targets)
    except ValueError as err:
        log.warning("no validation operating points: %s", err)
        return None


def _protocol(run: FittedRun, best_path: str | None, val_threshold: float | None) -> dict:
    """The protocol record of the test metrics: the test and validation splits scored, the
    preprocessing, the checkpoint rule (what was monitored) and the threshold rule."""
    datamodule, checkpoint = run.datamodule, run.checkpoint
    return protocol_record(
        data=split_record(datamodule, "test"),
        validation=split_record(datamodule, "val"),
        preprocessing=datamodule_preprocessing(datamodule),
        checkpoint={
            "rule": f"best {checkpoint.monitor}" if best_path else "the last weights",
            "mode": checkpoint.mode if best_path else None,
            "epoch": _checkpoint_epoch(best_path) if best_path else run.trainer.current_epoch,
        },
        threshold={"rule": "fixed", "value": 0.5, "val": val_threshold},
        calibration={"method": "none", "temperature": None},
        perturbation=datamodule.perturbation.label,
        backbone_library=run.model.backbone_library,
    )


def _checkpoint_epoch(path: str) -> int:
    """The epoch a checkpoint was saved at the end of, counted from 1 like `epochs` and the
    progress lines (Lightning's file names count from 0)."""
    return int(safe_torch_load(path)["epoch"]) + 1


def _render_figures(
    run: FittedRun, test: Predictions, threshold: float, per_source: dict[str, Any] | None
) -> dict[str, bytes]:
    figures = {
        **prediction_figures(test, threshold),
        "learning_curves": learning_curves_figure(run.history),
        "dataset_distribution": dataset_distribution_figure(run.datamodule.index.counts()),
    }
    if per_source is not None:
        figures[PER_SOURCE_FIGURE] = per_source_figure(per_source)
    return render_pngs(figures)


#: Metrics of each of `data.test_roots`, and averaged over them (each root weighs the same).
ROOT_METRICS = ("auroc", "ap", "eer", "acc@val", "real_acc@val", "fake_acc@val")
#: The thresholded ones, reported at the validation threshold.
AT_ROOT_THRESHOLD = ("acc", "real_acc", "fake_acc")


def test_other_roots(run: FittedRun, val_threshold: float | None) -> dict[str, Any]:
    """`test_roots` and `test_roots/mean`: the best checkpoint on the test split of each of
    `data.test_roots` (other sources), at the validation threshold, with its per-source
    table in `test_roots/<name>/`."""
    trainer, model, datamodule = run.trainer, run.model, run.datamodule
    threshold = 0.5 if val_threshold is None else val_threshold
    blocks: dict[str, dict[str, Any]] = {}
    for name, root in zip(root_names(datamodule.test_roots), datamodule.test_roots, strict=True):
        other = datamodule.for_root(root)
        log.info("test root %s: %s", name, other.describe())
        scored = score_split(trainer, model, other, "test", threshold=threshold, log_metrics=False)
        predictions = scored.predictions
        # Scored at the validation threshold: its thresholded metrics are the `@val` ones.
        block = {
            **{key: scored.metrics[f"test/{key}"] for key in ("auroc", "ap", "eer")},
            **{
                f"{key}@val": scored.metrics[f"test/{key}"]
                for key in ("acc", "real_acc", "fake_acc")
            },
            "images": len(predictions),
            "root": str(other.index.root),
            "auroc_ci": interval_metrics(predictions, "test", {})["test/auroc_ci"],
            "fingerprint": split_record(other, "test")["fingerprint"],
        }
        if trainer.is_global_zero:
            folder = run.output_dir / "test_roots" / name
            predictions.save_csv(folder / PREDICTIONS_DIR / "test.csv")
            per_source = report_per_source(
                folder, predictions, other.index, "test", threshold, THRESHOLD_RULE
            )
            if per_source is not None:
                block["per_source_mean_auroc"] = per_source["mean"]["auroc"]
        blocks[name] = block
        log.info(
            "test root %s: AUROC %.4f, acc %.4f, real acc %.4f at the validation threshold",
            name,
            block["auroc"],
            block["acc@val"],
            block["real_acc@val"],
        )
    mean = mean_over(blocks.values(), ROOT_METRICS)
    log.info("test roots, mean of %d: AUROC %.4f", len(blocks), mean.get("auroc", float("nan")))
    return {"test_roots": blocks, "test_roots/mean": {**mean, "roots": len(blocks)}}


def test_best_checkpoint(run: FittedRun) -> dict[str, Any]:
    """Score the test and validation splits with the best checkpoint; returns `metrics.json`."""
    trainer, model, datamodule, output_dir = run.trainer, run.model, run.datamodule, run.output_dir
    best_path = run.checkpoint.best_model_path or None
    if best_path is None:
        log.warning("no best checkpoint was saved (e.g. fast_dev_run): testing current weights")
    # Every process scores its shard of each split (the scores are gathered); the first
    # one alone writes the run's files.
    writer = trainer.is_global_zero
    started = time.perf_counter()
    with run.notice.guard():
        if best_path is not None:
            # The first process writes checkpoints (in the background): the others wait for
            # it to have finished before reading the best one.
            trainer.strategy.barrier("best checkpoint on disk")
            model.load_state_dict(safe_torch_load(best_path)["state_dict"])
        threshold = 0.5
        test = score_split(trainer, model, datamodule, "test", threshold=threshold)
        test_predictions, test_metrics = test.predictions, test.metrics
        per_source = None
        if writer:
            per_source = report_per_source(
                output_dir, test_predictions, datamodule.index, "test", threshold, "fixed"
            )
        # The figures need the test scores only: rendered to PNG in a thread while the
        # validation split is scored (in torch, outside the GIL). Files and TensorBoard are
        # written here, once the test loop has closed its TensorBoard writer for good.
        # Several processes (DDP) score in step with each other: draw after, in this thread.
        threads = 1 if trainer.world_size == 1 else 0
        with ThreadPoolExecutor(max(threads, 1), thread_name_prefix="figures") as pool:
            if threads:
                drawn = pool.submit(_render_figures, run, test_predictions, threshold, per_source)
            # Same weights, validation split: its scores choose the `threshold=val` of
            # `evaluate`.
            val_predictions = score_split(
                trainer, model, datamodule, "val", log_metrics=False
            ).predictions
            scoring_seconds = time.perf_counter() - started  # not the wait for the figures
            if writer:
                save_state_dict(output_dir / WEIGHTS_FILE, model.net)
                for split, predictions in (("test", test_predictions), ("val", val_predictions)):
                    predictions.save_csv(output_dir / PREDICTIONS_DIR / f"{split}.csv")
                pngs = (
                    drawn.result()
                    if threads
                    else _render_figures(run, test_predictions, threshold, per_source)
                )
    if writer:
        written = save_pngs(pngs, output_dir, tensorboard_writer(run.loggers), trainer.global_step)
        share_figures(run.loggers, written, trainer.global_step)

    best_score = run.checkpoint.best_model_score
    val_threshold = _val_threshold(val_predictions)
    val_points = _validation_points(val_predictions)
    acc_thresholds = {"acc": threshold}
    if val_threshold is not None:
        acc_thresholds["acc@val"] = val_threshold
    metrics = {
        **test_metrics,
        **at_val_threshold(test_predictions, val_threshold),
        **interval_metrics(test_predictions, "test", acc_thresholds),
        "val/auroc_ci": interval_metrics(val_predictions, "val", {})["val/auroc_ci"],
        "val/operating_points": val_points,
        "test/operating_points": scored_points(test_predictions, val_points, threshold, "fixed"),
        "protocol": _protocol(run, best_path, val_threshold),
        "val/auroc_best": run.val_auroc_best,
        "val/threshold": val_threshold,
        "val/threshold_rule": THRESHOLD_RULE,
        "best/monitor": run.checkpoint.monitor,
        "best/score": float(best_score) if best_score is not None else None,
        "best/epoch": _checkpoint_epoch(best_path) if best_path else None,
        "best/checkpoint": _relative(best_path, output_dir) if best_path else None,
        "epochs": trainer.current_epoch,
        "train_seconds": round(run.train_seconds, 3),
        "timing": {**run.timing, "best_checkpoint_scoring_s": round(scoring_seconds, 3)},
        "data/skipped": len(datamodule.skipped),
        **run.counts,
        "hparams": run_hparams(run.cfg, model, datamodule.image_size),
    }
    if per_source is not None:
        metrics["per_source"] = per_source
    index = datamodule.index
    val_sources = per_source_metrics(
        val_predictions,
        index.sources,
        0.5 if val_threshold is None else val_threshold,
        index.source_depth,
    )
    if val_sources is not None:
        # The validation split per source, at its own threshold: what `val/auroc_sources`
        # followed while fitting, for the checkpoint kept.
        metrics["val_per_source"] = val_sources
    if datamodule.clip_of:
        # Clips in the dataset: the video level beside the frame level, at the same threshold.
        video = datamodule.video
        clips = report_per_clip(
            output_dir if writer else None,
            test_predictions,
            datamodule.clip_of,
            "test",
            0.5 if val_threshold is None else val_threshold,
            video.aggregate,
            video.topk,
            test_metrics,
        )
        if clips is not None:
            metrics.update(flat("test", clips))
    if datamodule.test_roots:
        metrics.update(test_other_roots(run, val_threshold))
    if writer:
        log_hparams(run.loggers, metrics["hparams"], metrics)
        write_json(output_dir / METRICS_FILE, metrics)
    return metrics
