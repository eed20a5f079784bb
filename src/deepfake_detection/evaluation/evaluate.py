"""Checkpoint + any Fake/Real dataset → metrics.json, per-image scores and figures."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from deepfake_detection.data.datamodule import DeepfakeDataModule
from deepfake_detection.data.discovery import split_name
from deepfake_detection.data.layout import root_names, split_children
from deepfake_detection.data.scan import write_skipped_files
from deepfake_detection.data.splitting import SPLIT_LISTS_DIR, read_split_lists
from deepfake_detection.detector.decision import READING_OVERRIDES, given
from deepfake_detection.detector.exported_model import EXPORT_FORMATS
from deepfake_detection.detector.scoring import ScoredSplit, score_split
from deepfake_detection.detector.trained import TrainedCheckpoint
from deepfake_detection.errors import ConfigError
from deepfake_detection.evaluation.split_report import report_split
from deepfake_detection.faces.settings import scoring_face
from deepfake_detection.files import METRICS_FILE, write_json
from deepfake_detection.metrics.per_source import mean_over
from deepfake_detection.reports.per_clip_tables import flat, report_per_clip
from deepfake_detection.reports.protocol import (
    checkpoint_record,
    datamodule_preprocessing,
    protocol_record,
    split_record,
)
from deepfake_detection.reports.summaries import evaluate_summary, roots_summary
from deepfake_detection.video.settings import scoring_video

log = logging.getLogger(__name__)

#: `data.*` keys of `evaluate` that replace the training run's values when not null.
DATA_OVERRIDES = (
    "root",
    "image_size",
    "batch_size",
    "num_workers",
    "class_aliases",
    "source_depth",
    "split_lists",
    "label",
)


def scoring_datamodule(
    train_data: dict[str, Any],
    overrides: DictConfig,
    split: str,
    perturb: Any = None,
    face: Any = None,
    video: Any = None,
) -> DeepfakeDataModule:
    """The training run's data settings, with the given overrides, reading only `split`,
    through the training run's face stage as the command's `face.*` (`face`) adjusts it,
    and its clips read and scored as the command's `video.*` adjusts the run's."""
    if overrides.get("label") is not None and same_folder(
        overrides.get("root"), train_data.get("root")
    ):
        raise ConfigError(
            f"data.label={overrides.label}: give data.root=<a folder of {overrides.label} "
            "images>; the training run's own dataset has both classes"
        )
    data = {**train_data, **given(overrides, DATA_OVERRIDES + READING_OVERRIDES)}
    video = OmegaConf.to_container(video) if OmegaConf.is_config(video) else video
    data["video"] = scoring_video(train_data.get("video"), video)
    face = OmegaConf.to_container(face) if OmegaConf.is_config(face) else face
    stage = scoring_face(train_data.get("face"), face)
    data["face"] = asdict(stage) if stage is not None else None
    required = [split]
    if same_folder(overrides.get("root"), train_data.get("root")):
        if is_flat_root(train_data.get("root")):
            # The training run's own flat root: split as in training (pinned by its recorded
            # file lists when it has them), not scored whole.
            required = list(dict.fromkeys(["train", "test", split]))
    elif overrides.get("split_lists") is None:
        # Another dataset: the training run's file lists name files of its own.
        data["split_lists"] = None
    perturb = OmegaConf.to_container(perturb) if OmegaConf.is_config(perturb) else perturb
    # A scored folder may hold one class: its false-positive (or detection) rate is reported.
    return DeepfakeDataModule(
        **{
            **data,
            "required_splits": required,
            "used_splits": [split],
            "perturb": perturb,
            "one_class": True,
        }
    )


def is_flat_root(root: str | None) -> bool:
    """Whether `root` has class folders but no split folders (a demo set never does)."""
    if root in (None, "") or not Path(root).expanduser().is_dir():
        return False
    return not split_children(Path(root).expanduser())


def same_folder(given: str | None, trained: str | None) -> bool:
    """Whether `data.root=given` is the training run's root (or not given at all)."""
    if given in (None, ""):
        return True
    if trained in (None, ""):
        return False
    return Path(given).expanduser().resolve() == Path(trained).expanduser().resolve()


def warn_about_training_files(
    run_dir: Path | None, datamodule: DeepfakeDataModule, split: str
) -> None:
    """Warn when another root holds files at the paths of the run's recorded training files.

    That is what the training run's flat dataset looks like after being moved or copied:
    scored whole, its training images would inflate every metric.
    """
    lists_dir = run_dir / SPLIT_LISTS_DIR if run_dir is not None else None
    if datamodule.split_lists or lists_dir is None or not (lists_dir / "train.txt").is_file():
        return
    trained = set(read_split_lists(lists_dir).get("train", []))
    index = datamodule.index
    # A clip's frames live in the frame store: the clip is what the split lists recorded.
    files = {Path(datamodule.clip_of.get(str(path), path)) for path, _ in index.splits[split]}
    scored = [p.relative_to(index.root).as_posix() for p in files if p.is_relative_to(index.root)]
    overlap = sum(1 for path in scored if path in trained)
    if overlap:
        log.warning(
            "%d of the %d scored files have the paths of this run's training images: if "
            "%s is the training data moved, give data.split_lists=%s to score its recorded "
            "%s split",
            overlap,
            len(scored),
            index.root,
            lists_dir,
            split,
        )


@dataclass
class ScoringJob:
    """A trained checkpoint, one split of a dataset, and the logger of this command's run:
    what every command that scores a labelled split starts from."""

    output_dir: Path
    split: str
    trained: TrainedCheckpoint
    datamodule: DeepfakeDataModule
    logger: TensorBoardLogger

    def score(self, log_metrics: bool = True, **dataset_options: Any) -> ScoredSplit:
        """The split scored at the checkpoint's threshold and temperature."""
        decision = self.trained.decided
        return score_split(
            self.trained.trainer,
            self.trained.model,
            self.datamodule,
            self.split,
            threshold=decision.threshold,
            temperature=decision.divisor,
            log_metrics=log_metrics,
            **dataset_options,
        )

    @classmethod
    def start(cls, cfg: DictConfig) -> ScoringJob:
        """Load `cfg.ckpt_path`, index and check `cfg.data.split`, choose the threshold."""
        output_dir = Path(cfg.paths.output_dir)
        split = split_name(cfg.data.split)
        logger = TensorBoardLogger(str(output_dir), name="tensorboard", version="")
        trained = TrainedCheckpoint.load(cfg, logger, decide=False)
        datamodule = scoring_datamodule(
            trained.data, cfg.data, split, cfg.get("perturb"), cfg.get("face"), cfg.get("video")
        )
        log.info("checkpoint: %s (%s)", trained.ckpt_file, trained.model.model_name)
        log.info("data: %s", datamodule.describe())  # indexes and checks every image
        warn_about_training_files(trained.run_dir, datamodule, split)
        write_skipped_files(output_dir, datamodule.skipped)
        trained.decide(points=True if one_class_split(datamodule, split) else None)
        return cls(output_dir, split, trained, datamodule, logger)

    def protocol(self, cfg: DictConfig) -> dict[str, Any]:
        """The protocol record of this job's scores (`reports.protocol`)."""
        trained, datamodule = self.trained, self.datamodule
        return protocol_record(
            data=split_record(datamodule, self.split),
            preprocessing=datamodule_preprocessing(datamodule),
            checkpoint=checkpoint_record(trained.ckpt_file, trained.run_dir, trained.checkpoint),
            threshold={"rule": trained.rule, "value": trained.threshold},
            calibration={
                "method": cfg.get("calibration", "none"),
                "temperature": trained.temperature,
            },
            perturbation=datamodule.perturbation.label,
            backbone_library=trained.model.backbone_library,
            validation=trained.decided.validation,
        )


def one_class_split(datamodule: DeepfakeDataModule, split: str) -> bool:
    """Whether the split to score holds images of one class only."""
    return len({label for _, label in datamodule.index.splits[split]}) == 1


def _report(cfg: DictConfig, job: ScoringJob, per_root: bool = False) -> dict[str, Any]:
    """Score `job`'s split and write its metrics, predictions, figures and per-source table
    into `job.output_dir`; returns the metrics. `per_root`: one of several roots, whose
    figures and metrics stay out of the shared TensorBoard run."""
    output_dir, split, datamodule = job.output_dir, job.split, job.datamodule
    trained = job.trained
    threshold, rule = trained.threshold, trained.rule
    if rule != "fixed" and split == "val" and cfg.data.get("root") is None:
        log.warning("threshold=val on the validation split: these metrics are optimistic")
    scored = job.score(log_metrics=not per_root)
    predictions = scored.predictions
    metrics = {
        **scored.metrics,
        **report_split(
            output_dir,
            predictions,
            datamodule.index,
            split,
            threshold,
            rule,
            trained.decided.operating_points,
            None if per_root else job.logger.experiment,
        ),
        "protocol": job.protocol(cfg),
        "threshold": threshold,
        "threshold/rule": rule,
        "checkpoint": str(trained.ckpt_file),
        "model": trained.model.model_name,
        "data/root": str(datamodule.index.root),
        "data/split": split,
        "perturb": datamodule.perturbation.label,
        "calibration": cfg.get("calibration", "none"),
        "temperature": trained.temperature,
        "data/images": len(predictions),
        "data/image_size": datamodule.image_size,
        "data/skipped": len(datamodule.skipped),
        "face": asdict(datamodule.face) if datamodule.face else None,
        "face/missing": len(datamodule.faceless) if datamodule.face else None,
    }
    if datamodule.clip_of:
        video = datamodule.video
        clips = report_per_clip(
            output_dir,
            predictions,
            datamodule.clip_of,
            split,
            threshold,
            video.aggregate,
            video.topk,
            scored.metrics,
        )
        if clips is not None:
            metrics.update(flat(split, clips))
    write_json(output_dir / METRICS_FILE, metrics)
    log.info(evaluate_summary(metrics, split, output_dir))
    return metrics


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score one split of a dataset with a trained checkpoint, or of each of
    `data.test_roots`; returns the metrics written."""
    if Path(str(cfg.ckpt_path)).suffix.lower() in EXPORT_FORMATS:
        from deepfake_detection.evaluation.exported import evaluate_export

        return evaluate_export(cfg)
    if cfg.data.get("test_roots"):
        return evaluate_roots(cfg, [str(root) for root in cfg.data.test_roots])
    return _report(cfg, ScoringJob.start(cfg))


#: Metrics averaged over the roots of `data.test_roots` (each root weighs the same).
MEAN_METRICS = ("auroc", "ap", "eer", "acc", "balanced_acc", "real_acc", "fake_acc")


def evaluate_roots(cfg: DictConfig, roots: list[str]) -> dict[str, Any]:
    """`data.split` of each root, at one threshold: one block (and folder `roots/<name>/`)
    per root, and their mean. Every root is indexed and checked before anything is scored,
    and the checkpoint's threshold is chosen once."""
    output_dir = Path(cfg.paths.output_dir)
    split = split_name(cfg.data.split)
    logger = TensorBoardLogger(str(output_dir), name="tensorboard", version="")
    trained = TrainedCheckpoint.load(cfg, logger, decide=False)
    log.info("checkpoint: %s (%s)", trained.ckpt_file, trained.model.model_name)
    jobs = []
    for name, root in zip(root_names(roots), roots, strict=True):
        overrides = OmegaConf.merge(cfg.data, {"root": root})
        datamodule = scoring_datamodule(
            trained.data, overrides, split, cfg.get("perturb"), cfg.get("face"), cfg.get("video")
        )
        log.info("data (%s): %s", name, datamodule.describe())
        root_dir = output_dir / "roots" / name
        write_skipped_files(root_dir, datamodule.skipped)
        jobs.append((name, ScoringJob(root_dir, split, trained, datamodule, logger)))
    one_class = any(one_class_split(job.datamodule, split) for _, job in jobs)
    trained.decide(points=True if one_class else None)
    blocks = {name: _report(cfg, job, per_root=True) for name, job in jobs}
    mean = mean_over(
        ({key: block.get(f"{split}/{key}") for key in MEAN_METRICS} for block in blocks.values()),
        MEAN_METRICS,
    )
    metrics = {
        "roots": blocks,
        "mean": {**mean, "roots": len(blocks)},
        "threshold": trained.threshold,
        "threshold/rule": trained.rule,
        "checkpoint": str(trained.ckpt_file),
        "model": trained.model.model_name,
        "data/split": split,
    }
    write_json(output_dir / METRICS_FILE, metrics)
    log.info(roots_summary(blocks, mean, split, output_dir))
    return metrics
