"""Train a detector, then test its best checkpoint: `python -m train [overrides]`."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from deepfake_detection.cli import fail, run_task
from deepfake_detection.config import check_group_choices, config_dir, register_resolvers
from deepfake_detection.errors import UserInputError
from deepfake_detection.training.resume import check_resume_dir

register_resolvers()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def main(cfg: DictConfig) -> float | None:
    from deepfake_detection.training.pipeline import train

    return run_task(train, cfg)


def cli() -> None:
    overrides = [arg for arg in sys.argv[1:] if "=" in arg and not arg.startswith("-")]
    try:
        check_group_choices(overrides)
        for override in overrides:
            if override.startswith("resume=") and override != "resume=null":
                check_resume_dir(override.removeprefix("resume="))  # before Hydra makes dirs
    except UserInputError as err:
        fail(err)
    main()


if __name__ == "__main__":
    cli()
