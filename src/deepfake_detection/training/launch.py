"""How a DDP run's other processes are started when the run is one job of a sweep.

Lightning starts the other processes of a single-machine DDP run by running this process's
command line again (with the run dir and a job name added). In a sweep job that command line
is the whole sweep (`python -m train -m ...`), or submitit's job runner: each extra process
would run every job of the sweep, in a sweep dir of its own. For the time of the job, the
command line is made this job alone, as a single run in the job's own dir.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import open_dict, read_write

#: The script the extra processes run: `python -m train`, as a file.
TRAIN_SCRIPT = Path(__file__).resolve().parents[2] / "train.py"


#: What Lightning's launcher sets in the first process to connect the others; a sweep's next
#: job in the same process must start its own processes, so they go when a job ends.
LAUNCH_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


#: Seconds a sweep job waits for its other processes to exit before the next job starts.
CHILD_EXIT_TIMEOUT_S = 300


class SweepJob:
    """What `sweep_job_as_single_run` needs from the job: its Trainer, once there is one."""

    trainer: Any = None

    def wait_for_other_processes(self) -> None:
        """The processes Lightning started for this job finish it (their test phase) on
        their own: wait for them, so that none is left when the next job starts its own."""
        launcher = getattr(getattr(self.trainer, "strategy", None), "launcher", None)
        for proc in getattr(launcher, "procs", []):
            try:
                proc.wait(timeout=CHILD_EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def sweep_job_as_single_run(output_dir: str | Path) -> Iterator[SweepJob]:
    """Around one sweep job (fit and test): Lightning's DDP launcher starts
    `train.py <this job's overrides>` in `output_dir`, and the next job starts afresh."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    job = SweepJob()
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        yield job
        return
    import __main__

    hydra_cfg = HydraConfig.get()
    saved = list(sys.argv), getattr(__main__, "__spec__", None), hydra_cfg.run.dir
    saved_env = {name: os.environ.get(name) for name in LAUNCH_VARIABLES}
    sys.argv = [str(TRAIN_SCRIPT), *hydra_cfg.overrides.task]
    __main__.__spec__ = None  # Lightning then runs sys.argv[0] as a script
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.run.dir = str(output_dir)  # what Lightning passes as hydra.run.dir
    try:
        yield job
        job.wait_for_other_processes()
    finally:
        sys.argv, __main__.__spec__ = saved[0], saved[1]
        with read_write(hydra_cfg), open_dict(hydra_cfg):
            hydra_cfg.run.dir = saved[2]
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        import torch.distributed

        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # this job's processes are gone
