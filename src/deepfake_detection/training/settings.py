"""The keys of a training run (`python -m train`) beside those of its data and model, and the
one table its config is checked against when the command starts."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from omegaconf import DictConfig

from deepfake_detection.config import metric_mode
from deepfake_detection.data.augment import AUGMENT_RULES
from deepfake_detection.data.settings import DATA_RULES
from deepfake_detection.data.synthesis.settings import SYNTH_RULES
from deepfake_detection.detector.settings import (
    ACCELERATOR,
    DEVICES,
    PRECISION,
    DeviceSettings,
)
from deepfake_detection.faces.settings import FACE_RULES
from deepfake_detection.files import run_dir_problem
from deepfake_detection.models.freeze import FREEZE_RULES
from deepfake_detection.models.registry import every_model_rule, model_rules
from deepfake_detection.rules import (
    Extra,
    Rule,
    at_most,
    boolean,
    either,
    integer,
    is_number,
    list_of,
    number,
    one_of,
    ordered,
    path_to,
    random_seed,
    rules_of,
    setting,
    text,
    validate,
    value_at,
)
from deepfake_detection.video.settings import VIDEO_RULES

#: Metrics logged while fitting, so the only ones callbacks can monitor. Keep in sync with
#: `binary_metrics` (metrics/binary.py), `BaseDetector.on_validation_epoch_end` and
#: `training.validation_sources` (the mean AUROC over the validation split's sources).
FIT_METRICS: tuple[str, ...] = tuple(
    f"{split}/{name}"
    for split in ("train", "val")
    for name in ("loss", "acc", "precision", "recall", "f1", "auroc")
) + ("val/auroc_best", "val/auroc_sources")

#: Logged after each validation epoch when `data.select_on` names a selection set
#: (`deepfake_detection.training.selection`).
SELECT_METRICS: tuple[str, ...] = ("select/auroc", "select/auroc_sources")


def _needs_select_on(value: Any, cfg: DictConfig) -> str | None:
    if value in SELECT_METRICS and not value_at(cfg, "data.select_on"):
        return "is logged only with a selection set: give data.select_on=<dataset>"
    return None


#: `trainer.strategy` values this project runs: one process, or DistributedDataParallel
#: (Lightning's registry names; `ddp_spawn` and `fsdp` are not supported here).
STRATEGIES = ("auto", "single_device", "ddp", "ddp_find_unused_parameters_true")


def _direction_of(monitor_key: str) -> Extra:
    """A callback's `mode` must follow its metric: stopping on a rising loss is silent harm."""

    def check(value: Any, cfg: DictConfig) -> str | None:
        monitor = value_at(cfg, monitor_key)
        if monitor not in FIT_METRICS:
            return None  # the monitor's own rule reports it
        direction = metric_mode(monitor)
        if value != direction:
            return f"must be {direction} for {monitor_key}={monitor}"
        return None

    return check


def _sync_batchnorm_needs_gpus(value: Any, cfg: DictConfig) -> str | None:
    # torch's SyncBatchNorm runs on CUDA only; on CPU processes it fails at the first step.
    if value and value_at(cfg, "trainer.accelerator") == "cpu":
        return "needs GPUs (SyncBatchNorm is CUDA-only): set it to false on the CPU"
    # timm fuses the activation into many of its BatchNorm layers (BatchNormAct2d); torch's
    # conversion to SyncBatchNorm keeps the statistics and silently drops the activation.
    target = str(value_at(cfg, "model._target_") or "")
    if value and target.endswith("TimmDetector"):
        return "is not supported with model=timm (its fused BatchNorm activations would be lost)"
    return None


def _nesterov_needs_momentum(value: Any, cfg: DictConfig) -> str | None:
    momentum = value_at(cfg, "optimizer.momentum")
    if value and not (is_number(momentum) and momentum > 0):
        return "needs optimizer.momentum > 0"
    return None


def _run_dir(value: Any, cfg: DictConfig) -> str | None:
    return run_dir_problem(value)


_MONITOR = replace(one_of(*FIT_METRICS, *SELECT_METRICS), extra=_needs_select_on)
_MODE = one_of("min", "max")


@dataclass(frozen=True)
class TrainSettings:
    """The root keys of conf/train.yaml."""

    seed: int = setting(random_seed(), 42)
    optimized_metric: str | None = setting(text(nullable=True), "val/auroc_best")  # null: none
    compile: bool = setting(boolean(), False)
    resume: str | None = setting(
        path_to("a previous training run's directory", _run_dir, nullable=True, blank_is_null=True),
        None,
    )


@dataclass(frozen=True)
class OptimizerSettings:
    """The keys of the `optimizer` group (conf/optimizer/, `adam` by default); `momentum` and
    `nesterov` only for `sgd`, `betas` only when given."""

    lr: float = setting(number(0, low_open=True), 1e-4)
    weight_decay: float = setting(number(0), 0.0)
    momentum: float | None = setting(number(0, 1, high_open=True), None)  # sgd: 0.9
    nesterov: bool | None = setting(replace(boolean(), extra=_nesterov_needs_momentum), None)
    betas: list[float] | None = setting(
        list_of(number(0, 1, high_open=True), length=2, expected="a list of 2 numbers in [0, 1)"),
        None,
    )


@dataclass(frozen=True)
class SchedulerSettings:
    """The keys of the `scheduler` group (conf/scheduler/; null by default): `T_max`, `eta_min`
    of `cosine`, `step_size`, `gamma` of `step`, `factor`, `patience`, `mode` of `plateau`."""

    T_max: int = setting(integer(1), 10)  # ${trainer.max_epochs}
    eta_min: float = setting(number(0), 0.0)
    step_size: int = setting(integer(1), 5)
    gamma: float = setting(number(0, 1, low_open=True), 0.1)
    factor: float = setting(number(0, 1, low_open=True, high_open=True), 0.1)
    patience: int = setting(integer(0), 1)
    # BaseDetector.configure_optimizers has ReduceLROnPlateau watch val/loss.
    mode: str = setting(
        replace(
            one_of("min"), expected="min, as ReduceLROnPlateau watches val/loss (lower is better)"
        ),
        "min",
    )


@dataclass(frozen=True)
class EarlyStoppingSettings:
    """The keys of the `early_stopping` group (`val_loss` by default; null: `none`)."""

    monitor: str = setting(_MONITOR, "val/loss")
    mode: str = setting(replace(_MODE, extra=_direction_of("early_stopping.monitor")), "min")
    patience: int = setting(integer(0), 3)


@dataclass(frozen=True)
class CheckpointCallbackSettings:
    """`checkpoint.*` of conf/train.yaml: which checkpoint is the run's best."""

    monitor: str = setting(_MONITOR, "val/auroc")
    mode: str = setting(replace(_MODE, extra=_direction_of("checkpoint.monitor")), "max")
    save_top_k: int = setting(integer(-1), 1)
    filename: str = setting(text(), "epoch_{epoch:03d}-val_auroc_{val/auroc:.4f}")
    auto_insert_metric_name: bool = setting(boolean(), False)


@dataclass(frozen=True)
class TrainerSettings(DeviceSettings):
    """`trainer.*` of a training run (conf/trainer/default.yaml; ddp.yaml adds `strategy`,
    `num_nodes` and `sync_batchnorm`). `trainer.max_epochs` must be >= 1: Lightning's -1
    (unlimited) would make the cosine schedule's T_max meaningless and the run endless
    without early stopping."""

    accelerator: str = setting(ACCELERATOR, "auto")
    devices: int | str | list[int] = setting(DEVICES, "auto")
    precision: str | int = setting(PRECISION, "32-true")  # ${dd.auto_precision:}: 16-mixed on CUDA
    max_epochs: int = setting(integer(1), 10)
    min_epochs: int = setting(replace(integer(0), extra=at_most("trainer.max_epochs")), 1)
    log_every_n_steps: int = setting(integer(1), 10)
    # `trainer=ddp`: Lightning's strategy names (a string; an instance is not config).
    strategy: str = setting(one_of(*STRATEGIES), "auto")
    num_nodes: int = setting(integer(1), 1)
    sync_batchnorm: bool = setting(replace(boolean(), extra=_sync_batchnorm_needs_gpus), False)
    use_distributed_sampler: bool = setting(
        Rule(
            expected="false: the data module shards every split itself (each image once)",
            accepts=lambda v: v is False,
        ),
        False,
    )
    deterministic: bool | str | None = setting(
        either(boolean(), one_of("warn"), expected="true, false or warn", nullable=True), "warn"
    )
    benchmark: bool | None = setting(boolean(nullable=True), False)
    fast_dev_run: bool | int = setting(
        either(boolean(), integer(0), expected="true, false or an integer >= 0"), False
    )
    enable_model_summary: bool = setting(boolean(), False)


@dataclass(frozen=True)
class LoggerSettings:
    """The keys of the `logger` group (conf/logger/tensorboard.yaml)."""

    name: str | None = setting(text(nullable=True), "tensorboard")
    default_hp_metric: bool = setting(boolean(), False)


@dataclass(frozen=True)
class ProgressSettings:
    """`progress.*` of conf/train.yaml: `bar` auto draws a bar on a terminal, else logs a
    line every `every_s` seconds."""

    bar: bool | str = setting(
        either(boolean(), one_of("auto"), expected="auto, true or false"), "auto"
    )
    every_s: float = setting(number(0), 30)


def _train_rules(model: dict[str, Rule]) -> dict[str, Rule]:
    return {
        **rules_of(TrainSettings),
        **DATA_RULES,
        **model,
        **FREEZE_RULES,
        **rules_of(OptimizerSettings, "optimizer"),
        **rules_of(SchedulerSettings, "scheduler"),
        **rules_of(EarlyStoppingSettings, "early_stopping"),
        **rules_of(CheckpointCallbackSettings, "checkpoint"),
        **ordered(rules_of(TrainerSettings, "trainer"), "trainer.max_epochs", "trainer.min_epochs"),
        **AUGMENT_RULES,
        **FACE_RULES,
        **SYNTH_RULES,
        **VIDEO_RULES,
        **rules_of(LoggerSettings, "logger"),
        **rules_of(ProgressSettings, "progress"),
    }


def train_rules(cfg: DictConfig) -> dict[str, Rule]:
    """The table `cfg` is checked against: `model.*` as its own architecture declares them."""
    return _train_rules(model_rules(cfg))


#: Every key `python -m train` may check, with the `model.*` keys of every architecture; a
#: config is checked against `train_rules(cfg)`, which has only those of its own.
TRAIN_RULES: dict[str, Rule] = _train_rules(every_model_rule())


def validate_train_config(cfg: DictConfig) -> None:
    validate(cfg, train_rules(cfg))
