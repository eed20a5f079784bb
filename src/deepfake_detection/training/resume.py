"""`python -m train resume=<run dir>`: continue a run in place, with the config it started with."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from deepfake_detection.errors import ConfigError
from deepfake_detection.files import METRICS_FILE, RESOLVED_CONFIG_FILE, run_dir_problem

log = logging.getLogger(__name__)

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"

#: What may change when a run is resumed: where things are and how the trainer runs. Every
#: other key is fixed when a run starts: the optimizer and scheduler states, the model and the
#: callbacks come back from the checkpoint, so a new value would be silently ignored, or
#: (model shape) would not load.
RESUME_OVERRIDABLE_PREFIXES = ("trainer.", "progress.")
RESUME_OVERRIDABLE_KEYS = (
    "data.root",
    "data.num_workers",
    "data.pin_memory",
    "data.demo_cache_dir",
    "model.weights_path",
    "compile",
    "data.feature_cache_dir",
    "data.feature_cache_ram_mb",
)


#: Keys that change only what a run shows, not what it computes: a run saved before one of
#: them existed resumes with today's default.
DISPLAY_KEYS = ("progress", "trainer.enable_model_summary")


class TrainingInterrupted(Exception):
    """Fitting was stopped by SIGINT or SIGTERM; the run dir can be resumed."""

    def __init__(self, signal_name: str, run_dir: Path) -> None:
        super().__init__(
            f"interrupted by {signal_name}; continue with: python -m train resume={run_dir}"
        )
        self.signal_name = signal_name
        self.run_dir = run_dir


#: Set by SLURM in a job that was requeued (after its time-limit signal, or preempted).
RESTART_COUNT_VARIABLE = "SLURM_RESTART_COUNT"


def requeued_run_dir(cfg: DictConfig) -> Path | None:
    """The run dir of this job when it is a requeued cluster job whose run had not finished.

    A requeued job runs the same command with the same config, so it finds its own earlier
    start in `paths.output_dir`: the config it saved is there.
    """
    if not os.environ.get(RESTART_COUNT_VARIABLE, "0").isdigit():
        return None
    if int(os.environ.get(RESTART_COUNT_VARIABLE, "0")) < 1:
        return None
    run_dir = Path(str(cfg.paths.output_dir))
    # A run that had finished is resumed too: `resumed_config` then leaves it as it is.
    return run_dir if (run_dir / RESOLVED_CONFIG_FILE).is_file() else None


def check_resume_dir(value: str) -> Path:
    """The run dir to resume, or a one-line error naming `resume` (before Hydra makes dirs)."""
    problem = run_dir_problem(value)
    if problem:
        raise ConfigError(f"resume={value}: {problem}")
    return Path(value).expanduser()


def overridable_on_resume(key: str) -> bool:
    return key in RESUME_OVERRIDABLE_KEYS or key.startswith(RESUME_OVERRIDABLE_PREFIXES)


def resume_command_line(argv: list[str]) -> list[str]:
    """The training command line, ready for Hydra: with `resume=<run dir>`, the run dir is
    checked first (before Hydra makes dirs), and `key=value` becomes `++key=value` for the
    keys a resumed run may change.

    Those go on the run's saved config, which may have keys the default config lacks (e.g.
    `model.weights_path` of a MobileNetV2 run): Hydra must not refuse them while composing.
    """
    values = [a.removeprefix("resume=") for a in argv if a.startswith("resume=")]
    if not values or values[-1] in ("", "null"):
        return argv
    check_resume_dir(values[-1])
    return [
        f"++{arg}" if "=" in arg and overridable_on_resume(arg.split("=", 1)[0]) else arg
        for arg in argv
    ]


def _plain_overrides(overrides: list[str]) -> list[tuple[str, str, Any]]:
    """(override as typed, key, value) for each override that goes on the saved config."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    applied = []
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if key == "resume" or key.startswith("hydra"):
            continue
        typed = override.input_line.lstrip("+")  # `resume_command_line` adds `++`
        if override.is_delete():
            raise ConfigError(f"{typed}: a resumed run cannot delete keys of its config")
        if not overridable_on_resume(key):
            raise ConfigError(
                f"{typed}: a resumed run keeps the config it started with; only "
                f"{', '.join(p + '*' for p in RESUME_OVERRIDABLE_PREFIXES)}, "
                f"{', '.join(RESUME_OVERRIDABLE_KEYS)} can change with resume="
            )
        applied.append((typed, key, override.value()))
    return applied


def relocate(value: Any, old_dir: str, new_dir: str) -> Any:
    """`value` with every path under `old_dir` moved under `new_dir` (strings, keys, nesting).

    A run dir that was moved or copied before being resumed must write to its new place, and
    find its own checkpoints there, although the saved config and the checkpoint callback's
    state hold absolute paths.
    """
    if isinstance(value, str):
        if value == old_dir or value.startswith(old_dir + os.sep):
            return new_dir + value[len(old_dir) :]
        return value
    if isinstance(value, dict):
        return {
            relocate(k, old_dir, new_dir): relocate(v, old_dir, new_dir) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(relocate(v, old_dir, new_dir) for v in value)
    return value


def _check_schedule_fits(saved: DictConfig, key: str, value: Any) -> None:
    t_max = OmegaConf.select(saved, "scheduler.T_max")
    if key == "trainer.max_epochs" and t_max is not None and value != t_max:
        raise ConfigError(
            f"trainer.max_epochs={value}: this run's cosine schedule was laid out over "
            f"scheduler.T_max={t_max} epochs when it started and a resume cannot stretch it; "
            "start a new run to train for longer"
        )


@dataclass(frozen=True)
class ResumePlan:
    """What `resume=<run dir>` continues.

    `old_dir` is where the run was made (it may have moved since); `finished` means the run
    had written its metrics and nothing asks for more, so there is nothing to do.
    """

    cfg: DictConfig
    checkpoint: str | None
    old_dir: str
    finished: bool

    @property
    def run_dir(self) -> str:
        return str(self.cfg.paths.output_dir)


def resumed_config(cfg: DictConfig, overrides: list[str]) -> ResumePlan:
    """The saved run config (plus allowed overrides) and the checkpoint to continue from.

    Without `last.ckpt` (stopped during the first epoch) the run restarts from scratch, in
    the same directory and with the same seed, which gives the same result.
    """
    run_dir = check_resume_dir(cfg.resume).resolve()
    plain = _plain_overrides(overrides)
    saved = OmegaConf.load(run_dir / RESOLVED_CONFIG_FILE)
    old_dir = str(OmegaConf.select(saved, "paths.output_dir") or run_dir)
    saved = OmegaConf.create(relocate(OmegaConf.to_container(saved), old_dir, str(run_dir)))
    OmegaConf.update(saved, "paths.output_dir", str(run_dir))
    # Runs saved before `last.ckpt` got its own callback also asked Lightning for one.
    OmegaConf.select(saved, "checkpoint", default={}).pop("save_last", None)
    for key in DISPLAY_KEYS:
        default = OmegaConf.select(cfg, key, default=None)
        if default is not None and OmegaConf.select(saved, key, default=KeyError) is KeyError:
            plain_default = (
                OmegaConf.to_container(default) if OmegaConf.is_config(default) else default
            )
            OmegaConf.update(saved, key, plain_default, force_add=True)
    for typed, key, value in plain:
        new_trainer_option = key.startswith("trainer.")  # e.g. trainer.limit_val_batches
        if not new_trainer_option and OmegaConf.select(saved, key, default=KeyError) is KeyError:
            raise ConfigError(f"{typed}: {key} is not a key of this run's saved config")
        _check_schedule_fits(saved, key, value)
        OmegaConf.update(saved, key, value, force_add=new_trainer_option)
    if old_dir != str(run_dir):
        log.info("the run was moved from %s: continuing in %s", old_dir, run_dir)
    finished = (run_dir / METRICS_FILE).is_file() and not plain
    last = run_dir / LAST_CHECKPOINT
    if last.is_file():
        log.info("resuming %s from %s", run_dir, last)
        return ResumePlan(saved, str(last), old_dir, finished)
    log.info("resuming %s: no epoch was completed, starting it again", run_dir)
    return ResumePlan(saved, None, old_dir, finished)
