"""Interrupt and resume: SIGTERM mid-epoch, `resume=<run dir>`, atomic and safe checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import make_dataset, run_cli
from deepfake_detection.checkpoints import CheckpointError, SafeAtomicCheckpointIO

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


def test_sigterm_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"train": 48, "valid": 8, "test": 8}, size=64)
    args = [f"data.root={data}", *COMMON]
    full = run_cli([*args, f"hydra.run.dir={tmp_path / 'full'}"], tmp_path)
    assert full.returncode == 0, full.stderr[-3000:]

    run_dir = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [sys.executable, "-m", "train", *args, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MOBILENET_V2_WEIGHTS": ""},
    )
    deadline = time.monotonic() + 300
    while not (run_dir / "checkpoints" / "last.ckpt").exists():  # epoch 0 is done
        assert proc.poll() is None and time.monotonic() < deadline, "run ended too early"
        time.sleep(0.02)
    time.sleep(0.15)  # well into the next epoch
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert f"python -m train resume={run_dir}" in stderr.splitlines()[-1]
    assert not (run_dir / "metrics.json").exists()
    torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)  # complete and safe

    resumed = run_cli([f"resume={run_dir}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = read_metrics(tmp_path / "full"), read_metrics(run_dir)
    compared = [
        k for k, v in expected.items() if k.startswith(("test/", "val/")) and isinstance(v, float)
    ]
    assert "test/loss" in compared and "val/auroc_best" in compared
    for key in compared:
        assert got[key] == pytest.approx(expected[key], abs=1e-6), key
    assert got["epochs"] == expected["epochs"] == 3
    # The run kept its own config and folder; the figures are there as after a normal run.
    assert (run_dir / ".hydra" / "config.yaml").read_text().count("resume: null") == 1
    assert (run_dir / "figures" / "learning_curves.png").is_file()


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


def test_resume_rejects_config_group_changes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("seed: 1\n")
    result = run_cli([f"resume={run_dir}", "model=mobilenet_v2"], tmp_path)
    assert result.returncode == 2
    assert "model=mobilenet_v2: a resumed run keeps its saved config" in result.stderr


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
