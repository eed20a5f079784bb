"""What every command's entry point shares: user errors as one line, not a traceback.

The commands themselves are listed in `deepfake_detection.commands`.
"""

from __future__ import annotations

import logging
import signal
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from deepfake_detection.config import check_group_choices
from deepfake_detection.console import FILE_ONLY, is_first_process
from deepfake_detection.errors import UserInputError, find_user_error, one_line
from deepfake_detection.files import ERROR_FILE, atomic_write_bytes
from deepfake_detection.training.resume import TrainingInterrupted

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Exit status for mistakes in the user's input, as argparse uses.
USER_ERROR_EXIT = 2


def fail(error: UserInputError) -> NoReturn:
    print(f"error: {one_line(error)}", file=sys.stderr)
    sys.exit(USER_ERROR_EXIT)


def command_line_overrides(argv: list[str]) -> list[str]:
    """The `key=value` overrides of a command line (not Hydra's own flags)."""
    return [arg for arg in argv if "=" in arg and not arg.startswith("-")]


def check_groups_or_fail(argv: list[str]) -> None:
    """An unknown `group=option` ends the command with one line, before Hydra starts."""
    # conf/hydra/launcher/submitit_*.yaml set the submitit plugin's own options, which Hydra
    # checks against the plugin's schema of the same name: intended, not worth a warning.
    warnings.filterwarnings("ignore", message=r"(?s).*validated against ConfigStore schema")
    try:
        check_group_choices(command_line_overrides(argv))
    except UserInputError as err:
        fail(err)


def run_task(task: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """Run a Hydra task; a user error ends it with one `error:` line and exit status 2.

    In a multirun, the error fails that job only: Hydra records it and the sweep goes on.
    """
    try:
        return task(cfg)
    except TrainingInterrupted as stop:
        # The run dir is consistent (every file is written atomically): say how to go on.
        print(f"stopped: {stop}", file=sys.stderr)
        sys.exit(128 + getattr(signal, stop.signal_name))
    except Exception as err:
        user_error = find_user_error(err)
        if user_error is None:
            # Into the process's log file too (the console gets Hydra's report): in a
            # multi-process run it is the record of which process failed, and why.
            log.error("failed: %s", err, exc_info=err, extra=FILE_ONLY)
        if _in_multirun():
            if is_first_process():  # another process's error stays in its own log file
                _record_job_error(err, user_error)
            if user_error is None:
                raise
            log.error("error: %s", one_line(user_error))
            raise user_error from None
        if user_error is None:
            raise
        fail(user_error)


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _record_job_error(err: BaseException, user_error: UserInputError | None) -> None:
    """Leave the reason a sweep job failed in its job dir, where `compare` reports it."""
    if user_error is not None:
        text = f"error: {one_line(user_error)}\n"
    else:
        text = "".join(traceback.format_exception(err))
    try:
        atomic_write_bytes(Path(HydraConfig.get().runtime.output_dir) / ERROR_FILE, text.encode())
    except OSError as write_err:
        log.warning("could not record the job's error: %s", write_err)
