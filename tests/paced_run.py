"""Run a Python command with each training batch after the first epoch slowed down.

`python tests/paced_run.py -m train ...` or `python tests/paced_run.py job.py ...`. A test that
signals a run in its second epoch must find it mid-epoch: with `PACED_RUN_MARK=<file>` the
file appears once that epoch's first batch is done. Tiny test epochs take well
under a second, so on a loaded machine (a CI runner with every core busy) the test's own
process could wake only after the whole run ended; pacing the later epochs makes the window
seconds wide. Sleeping changes no result: the run is compared with an unpaced one.
"""

from __future__ import annotations

import os
import runpy
import sys
import time

import lightning.pytorch as pl

#: Seconds added to each training batch from the second epoch on.
PACE = float(os.environ.get("PACED_RUN_SECONDS", "0.1"))
#: A file written once the second epoch's first batch is done: the moment to signal.
MARK = os.environ.get("PACED_RUN_MARK")


def _paced(self: pl.LightningModule, outputs: object, batch: object, batch_idx: int) -> None:
    if self.trainer.current_epoch >= 1:
        if MARK and self.trainer.is_global_zero:
            open(MARK, "a").close()
        time.sleep(PACE)


# The module hook, not a callback's: no detector overrides it, and it runs after the
# callbacks', so a stop requested while it sleeps is acted on at the next batch's end.
pl.LightningModule.on_train_batch_end = _paced  # type: ignore[method-assign]

if __name__ == "__main__":
    if sys.argv[1] == "-m":
        sys.argv = [sys.argv[2], *sys.argv[3:]]
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = sys.argv[1:]
        runpy.run_path(sys.argv[0], run_name="__main__")
