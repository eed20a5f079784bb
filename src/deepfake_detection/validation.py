"""Up-front checks of the user-facing config keys, before anything is instantiated.

A bad value should cost the user one clear line naming the key, not a traceback from deep
inside a constructor after minutes of indexing images or downloading weights. So each entry
point checks its composed config against a declarative table, `key -> Rule`, first thing.

Only keys present in the composed config are checked: which ones exist depends on the chosen
groups (`model.widths` only for custom_cnn, no `scheduler.*` when `scheduler` is null).
Values are checked as resolved, since interpolations and resolvers (`${trainer.max_epochs}`,
`${dd.default_image_size:...}`) are what the constructors will receive. `paths.*` and
`hydra.*` are never looked at: `${hydra:...}` only resolves inside a Hydra run.

The sets of accepted names (metrics, precisions, splits, freeze strategies) are spelled out
here rather than imported, because importing Lightning or torch just to check a config costs
seconds; each such constant says where its source of truth lives.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from omegaconf import DictConfig, ListConfig, OmegaConf

from deepfake_detection.config import metric_mode, register_resolvers
from deepfake_detection.data.images import BAD_IMAGE_POLICIES
from deepfake_detection.errors import ConfigError
from deepfake_detection.files import run_dir_problem

#: Storage types of `data.feature_cache_dtype` (`deepfake_detection.data.feature_store`).
FEATURE_CACHE_DTYPES = ("float32", "float16")

#: Metrics logged while fitting, so the only ones callbacks can monitor. Keep in sync with
#: `binary_metrics` (metrics/binary.py) and `BaseDetector.on_validation_epoch_end`.
FIT_METRICS: tuple[str, ...] = tuple(
    f"{split}/{name}"
    for split in ("train", "val")
    for name in ("loss", "acc", "precision", "recall", "f1", "auroc")
) + ("val/auroc_best",)

#: `trainer.precision` values Lightning 2 accepts (its `_PRECISION_INPUT`); a command-line
#: `trainer.precision=32` arrives as the int 32, which Lightning accepts too.
PRECISIONS: tuple[str | int, ...] = (
    "32-true",
    "16-mixed",
    "bf16-mixed",
    "16-true",
    "bf16-true",
    "64-true",
    "32",
    "16",
    "bf16",
    "64",
    32,
    16,
    64,
)

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")

#: `trainer.strategy` values this project runs: one process, or DistributedDataParallel
#: (Lightning's registry names; `ddp_spawn` and `fsdp` are not supported here).
STRATEGIES = ("auto", "single_device", "ddp", "ddp_find_unused_parameters_true")

#: Split names `evaluate` understands, any case (data/discovery.py: SPLIT_ALIASES).
SPLITS = ("train", "val", "valid", "validation", "test")

#: Freeze strategies (models/freeze.py: FREEZE_NAMES).
FREEZE_NAMES = ("none", "backbone", "last_n")

#: Lightning's `seed_everything` only takes seeds that fit in 32 unsigned bits.
MAX_SEED = 2**32 - 1

#: Longest rendering of a bad value in a message, so one line stays readable.
MAX_SHOWN_CHARS = 80

Extra = Callable[[Any, DictConfig], str | None]


@dataclass(frozen=True)
class Rule:
    """What one config key accepts.

    `accepts` is the type-and-range test, described by `expected` (it completes "must be
    ..."). `extra` runs only on accepted values, for what needs the file system or other
    keys, and returns the whole reason when it objects.
    """

    expected: str
    accepts: Callable[[Any], bool]
    nullable: bool = False
    required: bool = False
    blank_is_null: bool = False
    extra: Extra | None = None

    def problem(self, key: str, value: Any, cfg: DictConfig) -> str | None:
        """The one-line message for `value` at `key`, or None when it is fine."""
        if self.blank_is_null and value == "":
            value = None
        if value is None and self.required:
            return f"{key} is required: must be {self.expected}"
        if value is None and self.nullable:
            return None
        if not self.accepts(value):
            null = "null or " if self.nullable else ""
            return f"{key}={show(value)}: must be {null}{self.expected}"
        reason = self.extra(value, cfg) if self.extra else None
        return f"{key}={show(value)}: {reason}" if reason else None


class Problem(NamedTuple):
    key: str
    message: str


# --- rendering -------------------------------------------------------------------------------


def show(value: Any) -> str:
    """`value` as the user would type it (`null`, `true`), kept to one short line."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value if value and value.isprintable() else repr(value)
    elif isinstance(value, Mapping):
        text = "{" + ", ".join(f"{show(k)}: {show(v)}" for k, v in value.items()) + "}"
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(show(v) for v in value) + "]"
    else:
        text = " ".join(str(value).split())
    if isinstance(value, str) and value.isprintable() and ("/" in value or os.sep in value):
        return text  # a path is shown whole: its end names the file
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 3] + "..."


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _range_text(
    low: float | None, high: float | None, low_open: bool = False, high_open: bool = False
) -> str:
    if low is not None and high is not None:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        return f"in {left}{_bound(low)}, {_bound(high)}{right}"
    if low is not None:
        return f"{'>' if low_open else '>='} {_bound(low)}"
    if high is not None:
        return f"{'<' if high_open else '<='} {_bound(high)}"
    return ""


def _in_range(
    value: float, low: float | None, high: float | None, low_open: bool, high_open: bool
) -> bool:
    # Written so that NaN fails every comparison, hence every range.
    if low is not None and not (value > low if low_open else value >= low):
        return False
    return high is None or (value < high if high_open else value <= high)


# --- value kinds ------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def integer(minimum: int | None = None, maximum: int | None = None, **options: Any) -> Rule:
    """An int (never a bool) in `[minimum, maximum]`."""
    limits = _range_text(minimum, maximum)
    return Rule(
        expected=f"an integer {limits}".rstrip(),
        accepts=lambda v: _is_int(v) and _in_range(v, minimum, maximum, False, False),
        **options,
    )


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    **options: Any,
) -> Rule:
    """A finite int or float (never a bool, never a numeric string) in the given range."""
    limits = _range_text(low, high, low_open, high_open)
    return Rule(
        expected=f"a number {limits}".rstrip(),
        accepts=lambda v: _is_number(v) and _in_range(v, low, high, low_open, high_open),
        **options,
    )


def boolean(**options: Any) -> Rule:
    return Rule(expected="true or false", accepts=lambda v: isinstance(v, bool), **options)


def text(**options: Any) -> Rule:
    """A non-empty string."""
    return Rule(
        expected="a non-empty string", accepts=lambda v: isinstance(v, str) and v != "", **options
    )


def one_of(*choices: str | int, ignore_case: bool = False, **options: Any) -> Rule:
    """One of `choices`, compared with their type so that `true` never passes for `1`."""

    def accepts(value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if ignore_case and isinstance(value, str):
            return value.lower() in {str(c).lower() for c in choices}
        return any(type(value) is type(c) and value == c for c in choices)

    names = ", ".join(dict.fromkeys(str(c) for c in choices))
    suffix = " (any case)" if ignore_case else ""
    return Rule(expected=f"one of: {names}{suffix}", accepts=accepts, **options)


def either(*rules: Rule, expected: str, **options: Any) -> Rule:
    """Accepted by any of `rules`; their `extra` checks run for the first that accepts."""

    def extra(value: Any, cfg: DictConfig) -> str | None:
        rule = next(r for r in rules if r.accepts(value))
        return rule.extra(value, cfg) if rule.extra else None

    return Rule(
        expected=expected,
        accepts=lambda v: any(r.accepts(v) for r in rules),
        extra=extra,
        **options,
    )


def list_of(item: Rule, *, length: int | None = None, expected: str, **options: Any) -> Rule:
    """A non-empty list (of exactly `length` items, if given) whose items `item` accepts."""

    def accepts(value: Any) -> bool:
        if not isinstance(value, list) or not value:
            return False
        if length is not None and len(value) != length:
            return False
        return all(item.accepts(v) for v in value)

    return Rule(expected=expected, accepts=accepts, **options)


def _path_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _path(value: str) -> Path:
    return Path(value).expanduser()


def _check_dir(value: str, cfg: DictConfig) -> str | None:
    path = _path(value)
    if not path.exists():
        return "no such directory"
    return None if path.is_dir() else "not a directory"


def _check_file(value: str, cfg: DictConfig) -> str | None:
    path = _path(value)
    if not path.exists():
        return "no such file"
    return None if path.is_file() else "not a file"


def _check_exists(value: str, cfg: DictConfig) -> str | None:
    return None if _path(value).exists() else "no such file or directory"


def _check_run_dir(value: str, cfg: DictConfig) -> str | None:
    return run_dir_problem(value)


def _check_cache_dir(value: str, cfg: DictConfig) -> str | None:
    path = _path(value)
    return "exists but is not a directory" if path.exists() and not path.is_dir() else None


def cache_dir() -> Rule:
    """A folder a command creates when missing (null: the user's cache folder)."""
    return Rule(
        expected="a directory path",
        accepts=_path_text,
        extra=_check_cache_dir,
        nullable=True,
        blank_is_null=True,
    )


def existing_dir(**options: Any) -> Rule:
    return Rule(expected="an existing directory", accepts=_path_text, extra=_check_dir, **options)


def existing_file(**options: Any) -> Rule:
    return Rule(expected="an existing file", accepts=_path_text, extra=_check_file, **options)


# --- checks that look at other keys -----------------------------------------------------------


def _select(cfg: DictConfig, key: str) -> Any:
    """The resolved value at `key`, or None when it is absent, null or does not resolve."""
    try:
        return OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
    except Exception:  # a resolver that raises: its own key reports it
        return None


def _at_most(other_key: str) -> Extra:
    def check(value: Any, cfg: DictConfig) -> str | None:
        other = _select(cfg, other_key)
        if _is_int(other) and value > other:
            return f"must be <= {other_key} ({other})"
        return None

    return check


def _direction_of(monitor_key: str) -> Extra:
    """A callback's `mode` must follow its metric: stopping on a rising loss is silent harm."""

    def check(value: Any, cfg: DictConfig) -> str | None:
        monitor = _select(cfg, monitor_key)
        if monitor not in FIT_METRICS:
            return None  # the monitor's own rule reports it
        direction = metric_mode(monitor)
        if value != direction:
            return f"must be {direction} for {monitor_key}={monitor}"
        return None

    return check


def _last_n_needs_n(value: Any, cfg: DictConfig) -> str | None:
    if value == "last_n" and _select(cfg, "freeze.n") is None:  # a bad n reports itself
        return "needs an integer freeze.n, the number of top feature blocks to train"
    return None


#: perturbation -> (what `perturb.severity` means, its check, the check in words).
PERTURB_SEVERITIES: dict[str, tuple[str, Callable[[float], bool], str]] = {
    "jpeg": ("JPEG quality", lambda s: float(s).is_integer() and 1 <= s <= 100, "1..100"),
    "blur": ("Gaussian blur sigma (px)", lambda s: 0 < s <= 50, "in (0, 50]"),
    "resize": ("downscale factor", lambda s: 0 < s <= 1, "in (0, 1]"),
    "noise": ("noise sigma on [0, 1] pixels", lambda s: 0 < s <= 1, "in (0, 1]"),
}


def perturb_problem(name: str, severity: Any) -> str | None:
    """What is wrong with `perturb=<name>` at `severity`, or None."""
    if name == "none":
        return None
    if name not in PERTURB_SEVERITIES:
        choices = ", ".join(["none", *PERTURB_SEVERITIES])
        return f"perturb={name}: unknown perturb option; choose one of: {choices}"
    meaning, accepts, expected = PERTURB_SEVERITIES[name]
    if not _is_number(severity) or not accepts(severity):
        return f"perturb.severity={severity}: for perturb={name} it is the {meaning}, {expected}"
    return None


def _severity_fits(value: Any, cfg: DictConfig) -> str | None:
    problem = perturb_problem(str(_select(cfg, "perturb.name")), value)
    return problem.split(": ", 1)[1] if problem else None


def _sync_batchnorm_needs_gpus(value: Any, cfg: DictConfig) -> str | None:
    # torch's SyncBatchNorm runs on CUDA only; on CPU processes it fails at the first step.
    if value and _select(cfg, "trainer.accelerator") == "cpu":
        return "needs GPUs (SyncBatchNorm is CUDA-only): set it to false on the CPU"
    return None


def _nesterov_needs_momentum(value: Any, cfg: DictConfig) -> str | None:
    momentum = _select(cfg, "optimizer.momentum")
    if value and not (_is_number(momentum) and momentum > 0):
        return "needs optimizer.momentum > 0"
    return None


# --- the tables -------------------------------------------------------------------------------


def _trainer_device_rules(precision_nullable: bool) -> dict[str, Rule]:
    return {
        "trainer.accelerator": one_of(*ACCELERATORS),
        "trainer.devices": either(
            one_of("auto", -1),
            integer(1),
            list_of(integer(0), expected="device indices"),
            expected="auto, -1 (all), an integer >= 1 or a non-empty list of device indices",
        ),
        "trainer.precision": one_of(*PRECISIONS, nullable=precision_nullable),
    }


def _monitor() -> Rule:
    return one_of(*FIT_METRICS)


def _fractions_add_up(value: Any, cfg: DictConfig) -> str | None:
    if abs(sum(value) - 1.0) > 1e-6:
        return f"adds up to {sum(value):g}, not 1"
    return None


def _is_alias_map(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"fake", "real"}
        and all(
            isinstance(names, list)
            and names
            and all(isinstance(n, str) and n.strip() for n in names)
            for names in value.values()
        )
    )


def _aliases_disjoint(value: Any, cfg: DictConfig) -> str | None:
    both = {n.strip().lower() for n in value["fake"]} & {n.strip().lower() for n in value["real"]}
    if both:
        return f"{', '.join(sorted(both))} would name both classes"
    return None


def _layout_rules(nullable: bool = False) -> dict[str, Rule]:
    """How a dataset's folders are read (`deepfake_detection.data.layout`, `.splitting`);
    `nullable` for commands where null means "as in the training run"."""
    return {
        "data.split_fractions": replace(
            list_of(
                number(0, 1, low_open=True),
                length=3,
                expected="[train, val, test], each in (0, 1], adding up to 1",
            ),
            extra=_fractions_add_up,
            nullable=nullable,
        ),
        "data.split_lists": existing_dir(nullable=True, blank_is_null=True),
        "data.class_aliases": Rule(
            expected="{fake: [names], real: [names]}, non-empty lists of folder names",
            accepts=_is_alias_map,
            extra=_aliases_disjoint,
            nullable=nullable,
        ),
        "data.source_depth": integer(1, nullable=nullable),
    }


def _image_reading_rules(nullable: bool) -> dict[str, Rule]:
    return {
        "data.on_bad_image": one_of(*BAD_IMAGE_POLICIES, nullable=nullable),
        "data.max_image_pixels": integer(1, nullable=nullable),
    }


def _range(low: float, high: float, *, integers: bool = False, open_low: bool = False) -> Rule:
    """A list [a, b] with low <= a <= b <= high (low < a with `open_low`)."""
    kind = "integers" if integers else "numbers"
    bound = "<" if open_low else "<="

    def accepts(v: Any) -> bool:
        if not (isinstance(v, list) and len(v) == 2):
            return False
        if not all(_is_int(x) if integers else _is_number(x) for x in v):
            return False
        above = v[0] > low if open_low else v[0] >= low
        return above and v[0] <= v[1] <= high

    top = "" if math.isinf(high) else f" <= {_bound(high)}"
    return Rule(
        expected=f"a list [a, b] of {kind}, {_bound(low)} {bound} a <= b{top}", accepts=accepts
    )


#: The random steps of the `augment` group; each has an `augment.<step>_p` probability.
AUGMENT_STEPS = ("flip", "blur", "jpeg", "jitter", "downscale", "noise")

#: Keys of the `augment` group (`deepfake_detection.data.augment.AugmentSettings`).
AUGMENT_RULES: dict[str, Rule] = {
    "augment.name": text(),
    "augment.crop": boolean(),
    **{f"augment.{step}_p": number(0, 1) for step in AUGMENT_STEPS},
    "augment.blur_sigma": _range(0, 50, open_low=True),
    "augment.jpeg_quality": _range(1, 100, integers=True),
    "augment.brightness": number(0),
    "augment.contrast": number(0),
    "augment.saturation": number(0),
    "augment.downscale_factor": _range(0, 1, open_low=True),
    "augment.noise_sigma": _range(0, 1),
}

#: Keys of `python -m train`. `trainer.max_epochs` must be >= 1: Lightning's -1 (unlimited)
#: would make the cosine schedule's T_max meaningless and the run endless without early stop.
TRAIN_RULES: dict[str, Rule] = {
    "seed": integer(0, MAX_SEED),
    "optimized_metric": text(nullable=True),  # null: nothing for a sweeper to maximise
    "compile": boolean(),
    "resume": Rule(
        expected="a previous training run's directory",
        accepts=_path_text,
        extra=_check_run_dir,
        nullable=True,
        blank_is_null=True,
    ),
    "data.root": existing_dir(nullable=True, blank_is_null=True),
    "data.image_size": integer(16),
    "data.batch_size": integer(1),
    "data.num_workers": integer(0, nullable=True),
    "data.val_fraction": number(0, 1, low_open=True, high_open=True),
    **_layout_rules(),
    "data.crop_scale": _range(0, 1, open_low=True),
    "data.eval_crop_fraction": number(0, 1, low_open=True),
    "data.seed": integer(0, MAX_SEED),
    "data.demo_cache_dir": cache_dir(),
    **_image_reading_rules(nullable=False),
    "data.feature_cache": boolean(),
    "data.feature_cache_dir": cache_dir(),
    "data.feature_cache_views": integer(1),
    "data.feature_cache_dtype": one_of(*FEATURE_CACHE_DTYPES),
    "data.feature_cache_ram_mb": number(0),
    "model.widths": list_of(integer(1), expected="a non-empty list of integers >= 1"),
    "model.hidden_units": integer(1),
    "model.dropout": number(0, 1, high_open=True),
    "model.pooled_size": integer(1),
    "model.channels_last": boolean(),
    "model.pretrained": boolean(),
    "model.weights_path": existing_file(nullable=True, blank_is_null=True),
    "freeze.name": replace(one_of(*FREEZE_NAMES), extra=_last_n_needs_n),
    "freeze.n": integer(0),
    "optimizer.lr": number(0, low_open=True),
    "optimizer.weight_decay": number(0),
    "optimizer.momentum": number(0, 1, high_open=True),
    "optimizer.nesterov": replace(boolean(), extra=_nesterov_needs_momentum),
    "optimizer.betas": list_of(
        number(0, 1, high_open=True), length=2, expected="a list of 2 numbers in [0, 1)"
    ),
    "scheduler.T_max": integer(1),
    "scheduler.eta_min": number(0),
    "scheduler.step_size": integer(1),
    "scheduler.gamma": number(0, 1, low_open=True),
    "scheduler.factor": number(0, 1, low_open=True, high_open=True),
    "scheduler.patience": integer(0),
    # BaseDetector.configure_optimizers has ReduceLROnPlateau watch val/loss.
    "scheduler.mode": replace(
        one_of("min"), expected="min, as ReduceLROnPlateau watches val/loss (lower is better)"
    ),
    "early_stopping.monitor": _monitor(),
    "early_stopping.mode": replace(
        one_of("min", "max"), extra=_direction_of("early_stopping.monitor")
    ),
    "early_stopping.patience": integer(0),
    "checkpoint.monitor": _monitor(),
    "checkpoint.mode": replace(one_of("min", "max"), extra=_direction_of("checkpoint.monitor")),
    "checkpoint.save_top_k": integer(-1),
    "checkpoint.filename": text(),
    "checkpoint.auto_insert_metric_name": boolean(),
    "trainer.max_epochs": integer(1),
    "trainer.min_epochs": replace(integer(0), extra=_at_most("trainer.max_epochs")),
    **_trainer_device_rules(precision_nullable=False),
    "trainer.log_every_n_steps": integer(1),
    # `trainer=ddp`: Lightning's strategy names (a string; an instance is not config).
    "trainer.strategy": one_of(*STRATEGIES),
    "trainer.num_nodes": integer(1),
    "trainer.sync_batchnorm": replace(boolean(), extra=_sync_batchnorm_needs_gpus),
    "trainer.use_distributed_sampler": Rule(
        expected="false: the data module shards every split itself (each image once)",
        accepts=lambda v: v is False,
    ),
    "trainer.deterministic": either(
        boolean(), one_of("warn"), expected="true, false or warn", nullable=True
    ),
    "trainer.benchmark": boolean(nullable=True),
    "trainer.fast_dev_run": either(
        boolean(), integer(0), expected="true, false or an integer >= 0"
    ),
    "trainer.enable_model_summary": boolean(),
    **AUGMENT_RULES,
    "logger.name": text(nullable=True),
    "logger.default_hp_metric": boolean(),
    "progress.bar": either(boolean(), one_of("auto"), expected="auto, true or false"),
    "progress.every_s": number(0),
}


def _scoring_rules(**first: Rule) -> dict[str, Rule]:
    """Keys of a command that scores images with a trained checkpoint (`evaluate`, `predict`);
    null data/trainer values mean "as in the training run"."""
    return {
        **_checkpoint_rules(**first),
        "data.image_size": integer(16, nullable=True),
        "data.batch_size": integer(1, nullable=True),
        "data.num_workers": integer(0, nullable=True),
        **_image_reading_rules(nullable=True),
        **_trainer_device_rules(precision_nullable=True),
    }


def _checkpoint_rules(**first: Rule) -> dict[str, Rule]:
    """A trained checkpoint and how its threshold and temperature are chosen."""
    return {
        "ckpt_path": Rule(
            expected="a training run dir or a .ckpt file, e.g. ckpt_path=outputs/train/<run>",
            accepts=_path_text,
            extra=_check_exists,
            required=True,
        ),
        **first,
        "threshold": either(number(0, 1), one_of("val"), expected="a number in [0, 1], or val"),
        "calibration": one_of("none", "temperature"),
    }


#: Keys of `deepfake-evaluate`.
EVALUATE_RULES: dict[str, Rule] = _scoring_rules(
    **{
        "data.split": one_of(*SPLITS, ignore_case=True),
        "data.root": existing_dir(nullable=True, blank_is_null=True),
        **_layout_rules(nullable=True),
        "perturb.name": one_of("none", *PERTURB_SEVERITIES),
        "perturb.severity": replace(number(nullable=True), extra=_severity_fits),
    }
)

#: Keys of `deepfake-robustness`; each severity of `grid` is checked with its perturbation.
ROBUSTNESS_RULES: dict[str, Rule] = _scoring_rules(
    **{
        "data.split": one_of(*SPLITS, ignore_case=True),
        "data.root": existing_dir(nullable=True, blank_is_null=True),
        **_layout_rules(nullable=True),
        "grid": Rule(
            expected="a mapping of perturbations to lists of severities, e.g. {jpeg: [50]}",
            accepts=lambda v: isinstance(v, dict) and bool(v),
        ),
    }
)

#: Keys of `deepfake-predict`.
PREDICT_RULES: dict[str, Rule] = _scoring_rules(
    input=Rule(
        expected="an image file or a folder of images",
        accepts=_path_text,
        extra=_check_exists,
        required=True,
    ),
    backend=one_of("torch", "onnx"),
)

#: `deepfake-export` formats.
EXPORT_FORMATS = ("onnx", "torch_export")

#: Keys of `deepfake-export`.
EXPORT_RULES: dict[str, Rule] = {
    **_checkpoint_rules(format=one_of(*EXPORT_FORMATS)),
    "parity.images": integer(1, 256),
    "parity.split": one_of(*SPLITS, ignore_case=True),
    "data.num_workers": integer(0, nullable=True),
    **_image_reading_rules(nullable=True),
    **_trainer_device_rules(precision_nullable=True),
}


def _is_origin_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


#: Keys of `deepfake-serve`; `ckpt_path` may also be an exported model.onnx or model.pt2.
SERVE_RULES: dict[str, Rule] = {
    **_checkpoint_rules(backend=one_of("torch", "onnx", nullable=True)),
    "host": text(),
    "port": integer(1, 65535),
    "api_key": text(nullable=True),
    "cors_origins": Rule(
        expected="a list of origins, e.g. [http://localhost:3000]", accepts=_is_origin_list
    ),
    "limits.max_upload_mb": number(0, low_open=True),
    "limits.max_files": integer(1),
    "limits.max_concurrent": integer(1),
    "limits.request_timeout_s": number(0, low_open=True),
    "limits.max_batch": integer(1),
    "data.num_workers": integer(0, nullable=True),
    **_image_reading_rules(nullable=True),
    **_trainer_device_rules(precision_nullable=True),
}

#: Keys of `deepfake-audit`, which checks a dataset folder and so needs one.
AUDIT_RULES: dict[str, Rule] = {
    "data.root": existing_dir(required=True, blank_is_null=True),
    "data.max_image_pixels": integer(1),
    "seed": integer(0, MAX_SEED),
    **{
        key: rule
        for key, rule in _layout_rules().items()
        if key in ("data.split_fractions", "data.class_aliases")
    },
    "audit.fail_on_leakage": boolean(),
    "audit.fail_on": one_of("exact", "near", nullable=True),
    "audit.near_duplicates": boolean(),
    "audit.hash_size": integer(4),
    "audit.max_distance": integer(0),
    "audit.num_workers": integer(0, nullable=True),
}


# --- running the checks -----------------------------------------------------------------------


def _raw(parent: DictConfig, leaf: str) -> Any:
    return OmegaConf.to_container(parent, resolve=False)[leaf]


def _has(parent: Any, leaf: str) -> bool:
    # `leaf in parent` is False for a `???` value, which must still be reported.
    return isinstance(parent, DictConfig) and leaf in list(parent.keys())


def _check_leaf(cfg: DictConfig, key: str, parent: DictConfig, leaf: str, rule: Rule) -> str | None:
    if OmegaConf.is_missing(parent, leaf):
        return f"{key} is required: must be {rule.expected}"
    try:
        value = parent[leaf]
    except Exception as err:  # an interpolation or resolver that fails
        reason = next(iter(str(err).strip().splitlines()), type(err).__name__)
        return f"{key}={show(_raw(parent, leaf))}: cannot be resolved ({reason})"
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    return rule.problem(key, value, cfg)


def config_problems(cfg: DictConfig, rules: Mapping[str, Rule]) -> list[Problem]:
    """Every bad key of `cfg`, those set directly before those that copy another key.

    A value interpolated from another key (`scheduler.T_max: ${trainer.max_epochs}`) fails
    because of that key, so the key the user actually set is the one to name first. Keys
    absent from `cfg` are not part of the chosen groups and are skipped.
    """
    register_resolvers()  # `${dd.*}` values must resolve even when called outside a CLI
    parents: dict[str, Any] = {}
    found: list[tuple[bool, Problem]] = []
    for key, rule in rules.items():
        parent_key, _, leaf = key.rpartition(".")
        if parent_key not in parents:
            parents[parent_key] = _select(cfg, parent_key) if parent_key else cfg
        parent = parents[parent_key]
        if not _has(parent, leaf):
            continue
        message = _check_leaf(cfg, key, parent, leaf, rule)
        if message:
            found.append((OmegaConf.is_interpolation(parent, leaf), Problem(key, message)))
    return [problem for _, problem in sorted(found, key=lambda item: item[0])]


def validate(cfg: DictConfig, rules: Mapping[str, Rule]) -> None:
    """Raise one ConfigError line: the first bad key's message, then the other bad keys."""
    problems = config_problems(cfg, rules)
    if not problems:
        return
    message = problems[0].message
    if len(problems) > 1:
        message += f" (also invalid: {', '.join(p.key for p in problems[1:])})"
    raise ConfigError(message)


def validate_train_config(cfg: DictConfig) -> None:
    validate(cfg, TRAIN_RULES)


def validate_evaluate_config(cfg: DictConfig) -> None:
    validate(cfg, EVALUATE_RULES)


def validate_robustness_config(cfg: DictConfig) -> None:
    validate(cfg, ROBUSTNESS_RULES)


def validate_predict_config(cfg: DictConfig) -> None:
    validate(cfg, PREDICT_RULES)


def validate_export_config(cfg: DictConfig) -> None:
    validate(cfg, EXPORT_RULES)


def validate_serve_config(cfg: DictConfig) -> None:
    validate(cfg, SERVE_RULES)


def validate_audit_config(cfg: DictConfig) -> None:
    validate(cfg, AUDIT_RULES)
