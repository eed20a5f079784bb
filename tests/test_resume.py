"""Interrupt and resume: SIGTERM mid-epoch, `resume=<run dir>`, atomic and safe checkpoints."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import make_dataset, run_cli, signal_in_second_epoch
from deepfake_detection.checkpoint_io import CheckpointError, SafeAtomicCheckpointIO
from deepfake_detection.errors import ConfigError
from deepfake_detection.training.interrupts import InterruptCheckpoint
from deepfake_detection.training.resume import TrainingInterrupted, relocate, resumed_config

# Deterministic CPU training with a DataLoader worker, slow enough to be stopped mid-epoch.
COMMON = [
    "data.image_size=64",
    "data.batch_size=2",
    "data.num_workers=1",
    "model.widths=[8,16]",
    "early_stopping=none",
    "trainer.max_epochs=3",
]


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_sigterm_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"train": 48, "valid": 8, "test": 8}, size=64)
    args = [f"data.root={data}", *COMMON]
    full = run_cli([*args, f"hydra.run.dir={tmp_path / 'full'}"], tmp_path)
    assert full.returncode == 0, full.stderr[-3000:]

    run_dir = tmp_path / "interrupted"
    # To the whole group, as a job scheduler does: the worker must not die of it.
    stopped = signal_in_second_epoch(
        [sys.executable, "-m", "train", *args, f"hydra.run.dir={run_dir}"],
        run_dir,
        tmp_path,
        signal.SIGTERM,
    )
    stderr = stopped.stderr
    assert stopped.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert f"python -m train resume={run_dir}" in stderr.splitlines()[-1]
    assert not (run_dir / "metrics.json").exists()
    # The stop saved where it was: epoch 1, part-way, and loads as a complete, safe file.
    stopped = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    progress = stopped["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
    assert stopped["epoch"] == 1 and 0 < progress["ready"] < 48
    assert "interrupted_mid_epoch" in stopped

    # The run dir may be moved before it is resumed: everything is written to its new place.
    moved = tmp_path / "moved"
    run_dir.rename(moved)
    resumed = run_cli([f"resume={moved}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not run_dir.exists()
    expected, got = read_metrics(tmp_path / "full"), read_metrics(moved)
    compared = [
        k for k, v in expected.items() if k.startswith(("test/", "val/")) and isinstance(v, float)
    ]
    assert "test/loss" in compared and "val/auroc_best" in compared
    for key in compared:
        assert got[key] == pytest.approx(expected[key], abs=1e-6), key
    assert got["epochs"] == expected["epochs"] == 3
    # last.ckpt is the final epoch's, although val/auroc stopped improving after epoch 0.
    assert (
        torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 2
    )
    # Not only the best checkpoint's metrics: the final weights are the same, which they are
    # only if the rest of the stopped epoch, and every epoch after it, shuffled, augmented
    # and dropped out as the uninterrupted run did.
    full_weights, resumed_weights = final_weights(tmp_path / "full"), final_weights(moved)
    assert full_weights.keys() == resumed_weights.keys()
    for name, tensor in full_weights.items():
        torch.testing.assert_close(resumed_weights[name], tensor, rtol=0, atol=1e-6, msg=name)
    # The run kept its own config and folder; the figures are there as after a normal run.
    saved = (moved / ".hydra" / "config.yaml").read_text()
    assert saved.count("resume: null") == 1 and str(run_dir) not in saved
    assert (moved / "figures" / "learning_curves.png").is_file()


def test_resume_refuses_a_checkpoint_that_would_run_code(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("seed: 1\n")
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (run_dir / "checkpoints").mkdir()
    torch.save({"state_dict": {}, "x": Payload()}, run_dir / "checkpoints" / "last.ckpt")
    with pytest.raises(CheckpointError, match="refused to load"):
        SafeAtomicCheckpointIO().load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: None, "no such run directory"),
        (lambda d: d.mkdir(), "not a training run directory"),
    ],
)
def test_resume_of_something_that_is_not_a_run(tmp_path: Path, make, message: str) -> None:
    target = tmp_path / "not-a-run"
    make(target)
    result = run_cli([f"resume={target}"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: resume={target}: {message}")
    assert not list(tmp_path.glob("outputs"))  # no run dir was made for the mistake


@pytest.mark.slow
def test_resume_rejects_config_group_changes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("seed: 1\n")
    result = run_cli([f"resume={run_dir}", "model=mobilenet_v2"], tmp_path)
    assert result.returncode == 2
    assert "model=mobilenet_v2: a resumed run keeps the config it started with" in result.stderr


@pytest.mark.slow
def test_a_finished_run_resumes_to_nothing_or_trains_longer(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"train": 6, "valid": 4, "test": 4}, size=32)
    run_dir = tmp_path / "run"
    args = ["data.image_size=32", "data.batch_size=4", "data.num_workers=0"]
    first = run_cli(
        [f"data.root={data}", *args, "trainer.max_epochs=1", f"hydra.run.dir={run_dir}"], tmp_path
    )
    assert first.returncode == 0, first.stderr[-3000:]
    before = read_metrics(run_dir)

    again = run_cli([f"resume={run_dir}"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "had finished" in again.stdout
    assert read_metrics(run_dir) == before  # nothing was trained or rewritten

    # A trainer option the run did not start with can be added too.
    longer = run_cli(
        [f"resume={run_dir}", "trainer.max_epochs=2", "trainer.limit_val_batches=1"], tmp_path
    )
    assert longer.returncode == 0, longer.stderr[-3000:]
    after = read_metrics(run_dir)
    assert after["epochs"] == 2 and before["epochs"] == 1
    assert (
        after["val/auroc_best"] is not None and after["val/auroc_best"] >= before["val/auroc_best"]
    )
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["epoch"] == 1 and saved["config"]["trainer"]["max_epochs"] == 2
    assert saved["config"]["trainer"]["limit_val_batches"] == 1

    # Restored from the checkpoint, so a new value would be silently ignored: refused.
    lr = run_cli([f"resume={run_dir}", "optimizer.lr=0.1"], tmp_path)
    assert lr.returncode == 2
    assert (
        lr.stderr.strip()
        .splitlines()[-1]
        .startswith("error: optimizer.lr=0.1: a resumed run keeps the config it started with")
    )


@pytest.mark.slow
def test_a_run_early_stopping_ended_stays_ended(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"train": 6, "valid": 4, "test": 4}, size=32)
    run_dir = tmp_path / "run"
    args = [f"data.root={data}", "data.image_size=32", "data.batch_size=4", "data.num_workers=0"]
    stop_at_once = "+early_stopping.stopping_threshold=100"  # val/loss < 100 after epoch 0
    first = run_cli(
        [*args, stop_at_once, "trainer.max_epochs=3", f"hydra.run.dir={run_dir}"], tmp_path
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert read_metrics(run_dir)["epochs"] == 1
    (run_dir / "metrics.json").unlink()  # as if it was stopped while testing
    again = run_cli([f"resume={run_dir}"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "early stopping had ended this run at epoch 0" in again.stdout + again.stderr
    assert read_metrics(run_dir)["epochs"] == 1


def saved_run(run_dir: Path, config: dict) -> Path:
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(config), run_dir / ".hydra" / "config.yaml")
    return run_dir


def test_resume_follows_a_moved_run_dir(tmp_path: Path) -> None:
    old = "/somewhere/else/run"
    run_dir = saved_run(
        tmp_path / "run",
        {
            "paths": {"output_dir": old},
            "checkpoint": {"dirpath": f"{old}/checkpoints"},
            "logger": {"save_dir": old},
            "data": {"root": "/data/kept"},
        },
    )
    plan = resumed_config(OmegaConf.create({"resume": str(run_dir)}), [])
    assert plan.old_dir == old and plan.run_dir == str(run_dir.resolve())
    assert plan.cfg.checkpoint.dirpath == f"{run_dir.resolve()}/checkpoints"
    assert plan.cfg.logger.save_dir == str(run_dir.resolve())
    assert plan.cfg.data.root == "/data/kept"
    assert relocate({f"{old}/a.ckpt": [f"{old}/b", f"{old}x"]}, old, "/new") == {
        "/new/a.ckpt": ["/new/b", f"{old}x"]
    }


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_epochs=20", "cosine schedule was laid out over scheduler.T_max=3 epochs"),
        ("model.weights_path=w.pth", "model.weights_path is not a key of this run's saved config"),
        ("~trainer.max_epochs", "a resumed run cannot delete keys of its config"),
        ("seed=3", "a resumed run keeps the config it started with"),
    ],
)
def test_resume_overrides_that_cannot_apply(tmp_path: Path, override: str, message: str) -> None:
    run_dir = saved_run(
        tmp_path / "run",
        {
            "paths": {"output_dir": str(tmp_path / "run")},
            "seed": 1,
            "trainer": {"max_epochs": 3},
            "scheduler": {"T_max": 3},
            "model": {"widths": [8]},
        },
    )
    with pytest.raises(ConfigError, match=message):
        resumed_config(OmegaConf.create({"resume": str(run_dir)}), [override])


@pytest.mark.slow
def test_an_empty_resume_starts_a_new_run(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"train": 4, "valid": 2, "test": 2}, size=32)
    result = run_cli(
        ["resume=", f"data.root={data}", "data.image_size=32", "+trainer.fast_dev_run=true"],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list((tmp_path / "outputs" / "train").iterdir())) == 1


def test_checkpoint_writes_are_atomic(tmp_path: Path, monkeypatch) -> None:
    io = SafeAtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"epoch": 1, "weights": torch.ones(3)}, path)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"epoch": 2, "weights": torch.zeros(3)}, path)
    assert io.load_checkpoint(path)["epoch"] == 1  # the previous checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


def test_any_error_after_a_signal_is_an_interrupt(tmp_path: Path) -> None:
    # SIGTERM sent to the whole process group also kills the DataLoader workers, and the
    # fit then dies of a worker error rather than Lightning's own clean exit.
    notice = InterruptCheckpoint(str(tmp_path))
    with pytest.raises(RuntimeError, match="worker"), notice.guard():
        raise RuntimeError("DataLoader worker (pid 1) is killed by signal")  # no signal seen
    with pytest.raises(TrainingInterrupted, match="interrupted by SIGINT"), notice.guard():
        raise KeyboardInterrupt  # e.g. Ctrl+C while the images are checked, before the fit
    notice.interrupted_by = "SIGTERM"
    with pytest.raises(TrainingInterrupted, match=f"resume={tmp_path}"), notice.guard():
        raise RuntimeError("DataLoader worker (pid 1) is killed by signal: Terminated.")


def fit_in_process(data: Path, run_dir: Path, *overrides: str) -> dict:
    from conftest import compose_train
    from deepfake_detection.commands import TRAIN

    train = TRAIN.run  # the command: its config checked, then run

    args = [f"data.root={data}", "data.image_size=32", "model.widths=[4,8]", "early_stopping=none"]
    train(compose_train([*args, "data.batch_size=4", "trainer.max_epochs=2", *overrides], run_dir))
    return read_metrics(run_dir)


def signal_at_batch(monkeypatch, signum: int, epoch: int, batch: int) -> None:
    """Send `signum` to this process once, while training step `batch` of `epoch` runs."""
    from deepfake_detection.models.base import BaseDetector

    step, sent = BaseDetector.training_step, []

    def training_step(self, batch_data, batch_idx):
        if not sent and self.current_epoch == epoch and batch_idx == batch:
            sent.append(True)
            os.kill(os.getpid(), signum)
        return step(self, batch_data, batch_idx)

    monkeypatch.setattr(BaseDetector, "training_step", training_step)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_mid_first_epoch_saves_a_checkpoint_that_resumes_exactly(
    tmp_path: Path, monkeypatch, signum: int
) -> None:
    # No workers: augmentation and dropout share this process's generator, the hardest case.
    data = make_dataset(tmp_path / "data", {"train": 12, "valid": 4, "test": 4}, size=32)
    expected = fit_in_process(data, tmp_path / "full")

    run_dir = tmp_path / "stopped"
    signal_at_batch(monkeypatch, signum, epoch=0, batch=2)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(TrainingInterrupted, match=f"resume={run_dir}"):
            fit_in_process(data, run_dir)
    finally:
        for s, handler in handlers.items():  # Lightning ignores Ctrl+C after one
            signal.signal(s, handler)
    monkeypatch.undo()
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    progress = saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
    assert saved["epoch"] == 0 and progress["ready"] == 3  # batches 0, 1 and 2 were trained
    assert saved["interrupted_mid_epoch"]["train_metrics"]["loss"]["update_count"] == 3

    got = fit_in_process(data, run_dir, f"resume={run_dir}")
    for key, value in expected.items():
        if key.startswith(("test/", "val/")) and isinstance(value, float):
            assert got[key] == pytest.approx(value, abs=1e-6), key
    full, resumed = (
        torch.load(d / "checkpoints" / "last.ckpt", weights_only=True)
        for d in (tmp_path / "full", run_dir)
    )
    for name, tensor in full["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][name], tensor, rtol=0, atol=1e-6)
    # The resumed epoch's train metrics cover the batches trained before the stop too.
    for epoch, row in full["history"].items():
        assert resumed["history"][epoch] == pytest.approx(row, abs=1e-6), epoch


@pytest.mark.slow
def test_the_worker_count_does_not_change_the_result(tmp_path: Path) -> None:
    # Each image's augmentation has its own seed, whichever process decodes it.
    data = make_dataset(tmp_path / "data", {"train": 8, "valid": 4, "test": 4}, size=32)
    fit_in_process(data, tmp_path / "w0", "trainer.max_epochs=1", "data.num_workers=0")
    fit_in_process(data, tmp_path / "w2", "trainer.max_epochs=1", "data.num_workers=2")
    weights = [final_weights(tmp_path / name) for name in ("w0", "w2")]
    for name, tensor in weights[0].items():
        torch.testing.assert_close(weights[1][name], tensor, rtol=0, atol=0)


def test_a_second_signal_stops_at_once(tmp_path: Path) -> None:
    stop = InterruptCheckpoint(str(tmp_path))
    stop._on_signal(signal.SIGINT, None)  # the first only asks for a stop after the batch
    assert stop.interrupted_by is None
    with pytest.raises(KeyboardInterrupt):
        stop._on_signal(signal.SIGTERM, None)
    assert stop.interrupted_by == "SIGTERM"
    with pytest.raises(TrainingInterrupted, match="interrupted by SIGTERM"), stop.guard():
        raise KeyboardInterrupt


@pytest.mark.slow
def test_a_run_saved_before_the_display_keys_existed_resumes(tiny_run: Path, tmp_path: Path):
    from conftest import compose_train
    from deepfake_detection.commands import TRAIN

    train = TRAIN.run  # the command: its config checked, then run

    run_dir = tmp_path / "old"
    shutil.copytree(tiny_run, run_dir)
    saved = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    saved.pop("progress")
    saved.trainer.pop("enable_model_summary")
    OmegaConf.save(saved, run_dir / ".hydra" / "config.yaml")
    (run_dir / "metrics.json").unlink()  # as if stopped while testing: it fits, then tests

    train(compose_train([f"resume={run_dir}"], run_dir))
    assert read_metrics(run_dir)["epochs"] == 2
    resumed = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["config"]
    assert resumed["progress"] == {"bar": "auto", "every_s": 30}
    assert resumed["trainer"]["enable_model_summary"] is False


def test_background_checkpoint_writes_keep_their_order(tmp_path: Path) -> None:
    """A checkpoint removed while its write is still queued does not reappear afterwards,
    and the writes are copies taken at the save point."""
    from deepfake_detection.checkpoint_io import BackgroundCheckpointIO

    class SlowIO(SafeAtomicCheckpointIO):
        def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
            time.sleep(0.2)
            super().save_checkpoint(checkpoint, path, storage_options)

    io = BackgroundCheckpointIO(SlowIO())
    weights = torch.zeros(3)
    first, second = tmp_path / "epoch_000.ckpt", tmp_path / "epoch_001.ckpt"
    io.save_checkpoint({"w": weights}, first)
    weights += 1  # training goes on: the saved copy must not change
    io.save_checkpoint({"w": weights}, second)
    io.remove_checkpoint(first)  # a better checkpoint replaced it before it was written
    io.teardown()
    assert not first.exists()
    assert torch.equal(SafeAtomicCheckpointIO().load_checkpoint(second)["w"], torch.ones(3))
