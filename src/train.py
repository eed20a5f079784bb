"""Train a detector, then test its best checkpoint: `python -m train [overrides]`."""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from deepfake_detection.config import check_group_choices, config_dir, register_resolvers
from deepfake_detection.errors import UserInputError, find_user_error, one_line

register_resolvers()
log = logging.getLogger("train")


def _fail(error: UserInputError) -> None:
    print(f"error: {one_line(error)}", file=sys.stderr)
    sys.exit(2)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def main(cfg: DictConfig) -> float | None:
    from deepfake_detection.training.pipeline import train

    try:
        return train(cfg)
    except Exception as err:
        user_error = find_user_error(err)
        if user_error is None:
            raise
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            # Fail this job only: Hydra records it and goes on with the rest of the sweep.
            log.error("error: %s", one_line(user_error))
            raise user_error from None
        _fail(user_error)


def cli() -> None:
    overrides = [arg for arg in sys.argv[1:] if "=" in arg and not arg.startswith("-")]
    try:
        check_group_choices(overrides)
    except UserInputError as err:
        _fail(err)
    main()


if __name__ == "__main__":
    cli()
