"""`python -m train resume=<run dir>`: continue a run in place, with the config it started with."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from deepfake_detection.errors import ConfigError

log = logging.getLogger(__name__)

RESOLVED_CONFIG_FILE = Path(".hydra") / "config.yaml"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


class TrainingInterrupted(Exception):
    """Fitting was stopped by SIGINT or SIGTERM; the run dir can be resumed."""

    def __init__(self, signal_name: str, run_dir: Path) -> None:
        super().__init__(
            f"interrupted by {signal_name}; continue with: python -m train resume={run_dir}"
        )
        self.signal_name = signal_name
        self.run_dir = run_dir


def check_resume_dir(value: str) -> Path:
    """The run dir to resume, or a one-line error naming `resume` (before Hydra makes dirs)."""
    run_dir = Path(value).expanduser()
    if not run_dir.is_dir():
        raise ConfigError(f"resume={value}: no such run directory")
    if not (run_dir / RESOLVED_CONFIG_FILE).is_file():
        raise ConfigError(
            f"resume={value}: not a training run directory (no {RESOLVED_CONFIG_FILE.as_posix()})"
        )
    return run_dir


def _plain_overrides(overrides: list[str]) -> list[tuple[str, object]]:
    """`key=value` overrides to apply on top of the saved config; config groups can't change."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from deepfake_detection.config import config_dir

    applied = []
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if key == "resume" or key.startswith("hydra"):
            continue
        if (config_dir() / key).is_dir() or override.is_delete() or override.is_add():
            raise ConfigError(
                f"{override.input_line}: a resumed run keeps its saved config; only plain "
                "key=value overrides such as trainer.max_epochs=20 can go with resume="
            )
        applied.append((key, override.value()))
    return applied


def resumed_config(cfg: DictConfig, overrides: list[str]) -> tuple[DictConfig, str | None]:
    """The saved run config (plus plain overrides) and the checkpoint to continue from.

    Without `last.ckpt` (stopped during the first epoch) the run restarts from scratch, in
    the same directory and with the same seed, which gives the same result.
    """
    run_dir = check_resume_dir(cfg.resume)
    saved = OmegaConf.load(run_dir / RESOLVED_CONFIG_FILE)
    for key, value in _plain_overrides(overrides):
        OmegaConf.update(saved, key, value, force_add=False)
    # Keep the run's own folder even if it was moved since.
    saved.paths.output_dir = str(run_dir)
    last = run_dir / LAST_CHECKPOINT
    if last.is_file():
        log.info("resuming %s from %s", run_dir, last)
        return saved, str(last)
    log.info("resuming %s: no epoch was completed, starting it again", run_dir)
    return saved, None
