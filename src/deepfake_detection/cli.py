"""What every command-line entry point shares: user errors as one line, not a traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from deepfake_detection.errors import UserInputError, find_user_error, one_line

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Exit status for mistakes in the user's input, as argparse uses.
USER_ERROR_EXIT = 2


def fail(error: UserInputError) -> NoReturn:
    print(f"error: {one_line(error)}", file=sys.stderr)
    sys.exit(USER_ERROR_EXIT)


def run_task(task: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """Run a Hydra task; a user error ends it with one `error:` line and exit status 2.

    In a multirun, the error fails that job only: Hydra records it and the sweep goes on.
    """
    try:
        return task(cfg)
    except Exception as err:
        user_error = find_user_error(err)
        if user_error is None:
            raise
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            log.error("error: %s", one_line(user_error))
            raise user_error from None
        fail(user_error)
