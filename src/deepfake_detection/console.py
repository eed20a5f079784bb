"""What the commands print: each line once, in one format, without third-party noise.

Hydra sends every log record to the console and to the run's `<command>.log`
(`conf/hydra/job_logging/deepfake.yaml`). Lightning adds a console handler of its own to the
`lightning` logger, so each of its lines would show twice: it is removed. Lightning's lines
that tell the user nothing (an advertisement, say) are kept off the console by `ConsoleOnly`
but stay in the log file. Warnings raised inside libraries about themselves are silenced by
their exact message and source, so that any other warning still shows (and, through
`logging.captureWarnings`, lands in the log file too).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

from deepfake_detection.startup import after_import

#: Lightning lines that tell the user nothing about their run: its advertisement, the absence
#: of accelerators nobody asked for (the GPU line stays), and the epoch or step limit being
#: reached, which the training's last line says in order (`ProgressLog`).
LIGHTNING_NOISE = (
    "💡 Tip:",
    "TPU available: False",
    "HPU available: False",
    "`Trainer.fit` stopped: `max_epochs=",
    "`Trainer.fit` stopped: `max_steps=",
)

#: (message regex, category name, module regex) of warnings raised inside libraries that a
#: user can do nothing about.
LIBRARY_WARNINGS = (
    # Lightning's own use of a torch API that torch deprecated.
    (
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        "FutureWarning",
        r"lightning\.pytorch\.utilities\._pytree",
    ),
    # BaseDetector logs torchmetrics results, which are reduced across processes already, and
    # its test pass keeps each image once however a distributed sampler pads the split.
    (
        r"It is recommended to use `self\.log\('(train|val|test)/",
        "PossibleUserWarning",
        r"lightning\.pytorch\.trainer\.connectors\.logger_connector\.result",
    ),
    (
        r"Using `DistributedSampler` with the dataloaders\. During `trainer\.test\(\)`",
        "PossibleUserWarning",
        r"lightning\.pytorch\.trainer\.connectors\.data_connector",
    ),
    # Frozen BatchNorm layers are kept in eval mode on purpose (`BaseDetector.train`).
    (
        r"Found \d+ module\(s\) in eval mode at the start of training",
        "PossibleUserWarning",
        r"lightning\.pytorch\.loops\.fit_loop",
    ),
)

#: Loggers Lightning may have given a console handler of their own.
LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning")


#: `extra=` for a record that belongs in the log file but not on the console.
FILE_ONLY = {"console": False}


#: Environment variables a launcher (Lightning's DDP, torchrun, SLURM) sets to a process's rank.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def process_rank() -> int:
    """This process's rank in a multi-process run; 0 when it runs alone."""
    for name in RANK_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


#: Environment variables a launcher sets to the machine's index in a multi-machine run.
NODE_VARIABLES = ("NODE_RANK", "GROUP_RANK", "SLURM_NODEID")


def is_first_process() -> bool:
    """Whether this is the process that writes a run's files: rank 0 of machine 0.

    For what happens before Lightning's Trainer exists (its `is_global_zero` says it after):
    every process of a distributed run executes the whole command.
    """

    def value(name: str) -> int:
        return int(os.environ[name]) if os.environ.get(name, "").isdigit() else 0

    if os.environ.get("RANK", "").isdigit():  # the global rank, when the launcher sets it
        return value("RANK") == 0
    # Lightning's own processes carry LOCAL_RANK (and NODE_RANK) even inside a SLURM task.
    if value("LOCAL_RANK") or any(value(name) for name in NODE_VARIABLES):
        return False
    return value("SLURM_PROCID") == 0 and value("JSM_NAMESPACE_RANK") == 0


class ConsoleOnly(logging.Filter):
    """What the console handler leaves out, though the log file keeps it.

    Records logged with `extra=FILE_ONLY`; Lightning's `LIGHTNING_NOISE` lines; and, in every
    process but the first of a multi-process run, anything short of an error, which the first
    process prints already.
    """

    def __init__(self) -> None:
        super().__init__()
        self.rank = process_rank()

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "console", True):
            return False
        if self.rank != 0 and record.levelno < logging.ERROR:
            return False
        return not (
            str(record.name).startswith("lightning") and str(record.msg).startswith(LIGHTNING_NOISE)
        )


class ConsoleFormatter(logging.Formatter):
    """`HH:MM:SS message`, with the level named only when it is a warning or worse.

    The run's log file keeps Hydra's full format (date, logger name, level).
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).rstrip()  # a captured warning ends with a newline
        if record.levelno >= logging.WARNING:
            stamp = self.formatTime(record, self.datefmt)
            text = f"{stamp} {record.levelname.lower()}: {text[len(stamp) + 1 :]}"
        return text


def _drop_own_handlers(name: str) -> None:
    """Let `name` reach the console only through the root logger's (Hydra's) handlers."""
    logger = logging.getLogger(name)
    for handler in list(logger.handlers):
        if type(handler) is logging.StreamHandler:  # Lightning's; a FileHandler is a subclass
            logger.removeHandler(handler)
    logger.propagate = True


def quiet_lightning() -> None:
    """Route Lightning's lines through the root logger's handlers only, so each shows once.

    Call after the root logger is configured (inside a Hydra task). Lightning adds a console
    handler of its own when it is imported: the handlers are dropped now if it is imported
    already, else right after its import, so a command that never needs Lightning (predict
    with an exported model) does not import it here (about a second).
    """
    after_import("lightning", _drop_lightning_handlers)


def _drop_lightning_handlers() -> None:
    if not logging.getLogger().handlers:
        return  # nothing else would print Lightning's lines: keep its own handler
    for name in LIGHTNING_LOGGERS:
        _drop_own_handlers(name)


def quiet_library_warnings() -> None:
    # Lightning's `PossibleUserWarning` is a `UserWarning`: filtering on its base, with the
    # exact message and module, silences the same warnings without importing Lightning.
    categories = {"FutureWarning": FutureWarning, "PossibleUserWarning": UserWarning}
    for message, category, module in LIBRARY_WARNINGS:
        warnings.filterwarnings(
            "ignore", message=message, category=categories[category], module=module
        )


def setup_console() -> None:
    """Everything above, and warnings recorded in the log file as well as shown."""
    quiet_library_warnings()
    logging.captureWarnings(True)
    quiet_lightning()


def is_terminal() -> bool:
    """Whether a live progress bar can be drawn; else progress goes to the log as lines."""
    return sys.stdout.isatty()


def show_progress_bar(setting: str | bool) -> bool:
    """`progress.bar`: `auto` draws a bar on a terminal only."""
    return is_terminal() if setting == "auto" else bool(setting)
