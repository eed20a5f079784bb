"""Compare the jobs of a sweep as soon as it ends.

Enable with `hydra.callbacks.compare._target_:
deepfake_detection.comparison.hydra_callback.CompareOnMultirunEnd`;
`hydra.callbacks.compare.mixed_protocols=allow` ranks jobs with different protocols together,
as `deepfake-compare ... compare.mixed_protocols=allow` does.
"""

from __future__ import annotations

import atexit
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from deepfake_detection.comparison.compare import compare_runs
from deepfake_detection.comparison.protocols import check_mixed_protocols

log = logging.getLogger(__name__)
#: The setting as it is written on a training command line.
CALLBACK_KEY = "hydra.callbacks.compare.mixed_protocols"


class CompareOnMultirunEnd(Callback):
    """Writes the comparison into the sweep folder and prints its table.

    Hydra's basic sweeper raises as soon as a finished batch holds a failed job, which skips
    `on_multirun_end`; the comparison is then made at interpreter exit instead, so a sweep
    with failures still ends with its table (failed jobs listed) and a non-zero exit status.

    Never raises once the sweep has started (a bad `mixed_protocols` fails at the start,
    before any job runs): the sweep's jobs are done and saved, and a failed comparison can be redone
    with `deepfake-compare <sweep dir>`, so it must not turn the sweep into an error.
    """

    def __init__(self, plots: bool = True, mixed_protocols: str = "refuse") -> None:
        # Checked here, when Hydra starts the sweep: a typo must not wait for the last job.
        self.mixed_protocols = check_mixed_protocols(mixed_protocols, CALLBACK_KEY)
        self.plots = plots
        self._sweep_dir: Path | None = None
        self._done = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._sweep_dir = Path(config.hydra.sweep.dir)
        atexit.register(self._compare_once)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._sweep_dir = Path(config.hydra.sweep.dir)
        self._compare_once()

    def _compare_once(self) -> None:
        if self._done or self._sweep_dir is None:
            return
        self._done = True
        try:
            result = compare_runs(
                [self._sweep_dir], plots=self.plots, mixed_protocols=self.mixed_protocols
            )
            print(result.report, flush=True)
            print(f"comparison written to {result.output_dir}", flush=True)
        except Exception as err:
            log.warning("could not compare the runs in %s: %s", self._sweep_dir, err)
