"""Cluster sweeps with Hydra's submitit launcher: configs, a local sweep, time-limit requeue."""

from __future__ import annotations

import json
import os
import signal
import sys
import warnings
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import make_dataset, run_cli, signal_in_second_epoch
from deepfake_detection.config import config_dir, register_resolvers
from deepfake_detection.files import RESOLVED_CONFIG_FILE

TINY = [
    "data.image_size=32",
    "data.batch_size=4",
    "data.num_workers=0",
    "early_stopping=none",
    "trainer.max_epochs=1",
]


def _launcher(overrides: list[str]):
    register_resolvers()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the plugin's schema of the same name (expected)
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
    return cfg.hydra.launcher


def test_slurm_launcher_defaults_follow_the_trainer() -> None:
    launcher = _launcher(
        ["hydra/launcher=submitit_slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"]
    )
    assert launcher._target_.endswith("SlurmLauncher")
    # Lightning on SLURM: one task per device, on every node.
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert launcher.signal_delay_s > 60 and launcher.max_num_timeout > 0
    assert launcher.partition is None and launcher.timeout_min == 240
    overridden = _launcher(
        [
            "hydra/launcher=submitit_slurm",
            "hydra.launcher.partition=gpu",
            "hydra.launcher.timeout_min=30",
            "trainer.accelerator=cpu",
        ]
    )
    assert (overridden.partition, overridden.timeout_min) == ("gpu", 30)
    assert (overridden.tasks_per_node, overridden.gpus_per_node) == (1, None)


@pytest.mark.slow
def test_a_submitit_local_sweep_ends_with_the_comparison_table(tmp_path: Path) -> None:
    # The cluster sweep's shape: every job trains with 2 processes (gloo here).
    data = make_dataset(tmp_path / "data", {"train": 6, "valid": 3, "test": 3})
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
    result = run_cli(
        [
            "-m",
            "hydra/launcher=submitit_local",
            f"data.root={data}",
            *TINY,
            *ddp,
            "model.widths=[4],[4,8]",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 runs: 2 ok, 0 failed, 0 unfinished" in result.stdout
    assert "Best performing model" in result.stdout
    [sweep] = (tmp_path / "multirun").iterdir()
    assert (sweep / ".submitit").is_dir()  # the jobs ran through submitit
    for job in ("0", "1"):
        assert json.loads((sweep / job / "metrics.json").read_text())["epochs"] == 1
        # The job's second process ran that job alone, in its dir (not the whole sweep).
        assert (sweep / job / "train_ddp_process_1.log").is_file()
    assert sorted(p.name for p in (tmp_path / "multirun").iterdir()) == [sweep.name]
    assert "validated against ConfigStore schema" not in result.stderr


#: Stands in for submitit in a cluster job: its handler of the time-limit signal requeues the
#: job (here: leaves a mark) and exits the process.
REQUEUEING_JOB = """
import signal, sys
from pathlib import Path

MARK = Path(sys.argv[1])

def requeue(signum, frame):
    MARK.write_text("requeued")
    sys.exit(-1)

signal.signal(signal.SIGUSR2, requeue)
sys.argv = ["train", *sys.argv[2:]]
from deepfake_detection.commands import TRAIN
TRAIN.cli()
"""


@pytest.mark.slow
def test_the_time_limit_signal_saves_requeues_and_the_job_continues_in_place(
    tmp_path: Path,
) -> None:
    data = make_dataset(tmp_path / "data", {"train": 48, "valid": 4, "test": 4}, size=64)
    run_dir = tmp_path / "job"
    args = [
        f"data.root={data}",
        "data.image_size=64",
        "data.batch_size=2",
        "data.num_workers=0",
        "model.widths=[8,16]",
        "early_stopping=none",
        "trainer.max_epochs=2",
        f"hydra.run.dir={run_dir}",
    ]
    script = tmp_path / "job.py"
    script.write_text(REQUEUEING_JOB)
    mark = tmp_path / "requeued"
    result = signal_in_second_epoch(
        [sys.executable, str(script), str(mark), *args], run_dir, tmp_path, signal.SIGUSR2
    )
    stderr = result.stderr
    assert result.returncode != 0, stderr[-3000:]
    assert mark.exists(), stderr[-3000:]
    # Saved first, then handed over: the launcher's handler ran after the checkpoint.
    assert mark.read_text() == "requeued"
    stopped = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert stopped["epoch"] == 1 and "interrupted_mid_epoch" in stopped
    assert not (run_dir / "metrics.json").exists()

    # The requeued job: the same command in the same dir, with SLURM's restart count.
    again = run_cli(args, tmp_path, SLURM_RESTART_COUNT="1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"requeued job: continuing {run_dir} in place" in again.stdout + again.stderr
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 2


def test_a_first_start_is_not_taken_for_a_requeue(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from deepfake_detection.training.resume import requeued_run_dir

    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}})
    os.environ.pop("SLURM_RESTART_COUNT", None)
    assert requeued_run_dir(cfg) is None  # nothing ran here before
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_RESTART_COUNT", "1")
        assert requeued_run_dir(cfg) is None  # requeued, but no earlier start in this dir
        (tmp_path / RESOLVED_CONFIG_FILE).parent.mkdir()
        (tmp_path / RESOLVED_CONFIG_FILE).write_text("seed: 1\n")
        assert requeued_run_dir(cfg) == tmp_path
        (tmp_path / "metrics.json").write_text("{}")
        # Requeued after it finished: resumed all the same, which leaves a finished run be.
        assert requeued_run_dir(cfg) == tmp_path


def test_the_launcher_without_its_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from deepfake_detection.config import check_group_choices
    from deepfake_detection.errors import ConfigError

    check_group_choices(["hydra/launcher=submitit_slurm"])  # installed here: accepted
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        ConfigError, match=r'submitit_slurm: .*pip install "deepfake-detection\[slurm\]"'
    ):
        check_group_choices(["hydra/launcher=submitit_slurm"])
    check_group_choices(["hydra/launcher=basic"])  # Hydra's own options are Hydra's to check


def test_a_slurm_sweep_over_what_sizes_its_jobs_is_refused() -> None:
    from deepfake_detection.config import check_group_choices
    from deepfake_detection.errors import ConfigError

    with pytest.raises(ConfigError, match="trainer.devices: hydra/launcher=submitit_slurm sizes"):
        check_group_choices(["hydra/launcher=submitit_slurm", "trainer.devices=2,4"])
    check_group_choices(["hydra/launcher=submitit_slurm", "model=custom_cnn,mobilenet_v2"])
    check_group_choices(["trainer.devices=2,4"])  # the local launcher starts each job's own


@pytest.mark.parametrize(
    ("env", "subdir", "log"),
    [({}, ".hydra", "train"), ({"SLURM_PROCID": "2"}, None, "train_process_2")],
)
def test_each_slurm_task_logs_to_its_own_file_and_one_writes_the_config(
    monkeypatch: pytest.MonkeyPatch, env, subdir, log
) -> None:
    from deepfake_detection.config import _hydra_subdir, _log_name

    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "SLURM_NODEID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _hydra_subdir(None) == subdir
    assert _log_name("train") == log
    assert _log_name("train_ddp_process_1") == "train_ddp_process_1"  # Lightning's own name
