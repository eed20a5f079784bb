"""Train a detector, then test its best checkpoint: `python -m train [overrides]`."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from deepfake_detection.cli import fail, run_task
from deepfake_detection.config import check_group_choices, config_dir, register_resolvers
from deepfake_detection.errors import UserInputError
from deepfake_detection.training.resume import check_resume_dir, overridable_on_resume

register_resolvers()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def main(cfg: DictConfig) -> float | None:
    from deepfake_detection.training.pipeline import train

    return run_task(train, cfg)


def _resume_dir(overrides: list[str]) -> str | None:
    values = [o.removeprefix("resume=") for o in overrides if o.startswith("resume=")]
    return values[-1] if values and values[-1] not in ("", "null") else None


def _force_resume_overrides(argv: list[str]) -> list[str]:
    """`key=value` -> `++key=value` for the keys a resumed run may change.

    They go on the run's saved config, which may have keys the default config lacks (e.g.
    `model.weights_path` of a MobileNetV2 run): Hydra must not refuse them while composing.
    """
    return [
        f"++{arg}" if "=" in arg and overridable_on_resume(arg.split("=", 1)[0]) else arg
        for arg in argv
    ]


def cli() -> None:
    overrides = [arg for arg in sys.argv[1:] if "=" in arg and not arg.startswith("-")]
    try:
        check_group_choices(overrides)
        resume = _resume_dir(overrides)
        if resume is not None:
            check_resume_dir(resume)  # before Hydra makes dirs
            sys.argv[1:] = _force_resume_overrides(sys.argv[1:])
    except UserInputError as err:
        fail(err)
    main()


if __name__ == "__main__":
    cli()
