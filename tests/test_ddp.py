"""Several processes (DDP, gloo on the CPU): shards, each image scored once, one writer, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import make_dataset, make_tree, run_cli, signal_in_second_epoch
from deepfake_detection.console import is_first_process
from deepfake_detection.data import loader
from deepfake_detection.data.loader import EpochShuffleSampler, ShardSampler
from deepfake_detection.metrics.binary import compute_metrics
from deepfake_detection.metrics.predictions import Predictions

#: Two CPU processes, tiny images, a few batches.
DDP = [
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "data.image_size=32",
    "data.batch_size=4",
    "data.num_workers=0",
    "model.widths=[4,8]",
    "early_stopping=none",
]


def _as_rank(monkeypatch: pytest.MonkeyPatch, rank: int, world: int) -> None:
    monkeypatch.setattr(loader, "process_group", lambda: (rank, world))


def test_each_process_trains_on_a_disjoint_shard_of_the_epoch_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alone = list(EpochShuffleSampler(11, seed=3, current_epoch=lambda: 2))
    shards = []
    for rank in range(3):
        _as_rank(monkeypatch, rank, 3)
        sampler = EpochShuffleSampler(11, seed=3, current_epoch=lambda: 2)
        shards.append(list(sampler))
        assert len(sampler) == len(shards[-1]) == 3  # equal: the processes step together
    # Rank r takes positions r, r + 3, ... of the same order, with the same per-image seeds.
    for rank, shard in enumerate(shards):
        assert shard == alone[rank:9:3]
    indices = [s.index for shard in shards for s in shard]
    assert len(set(indices)) == 9
    # A resumed pass leaves out the samples this process trained already.
    _as_rank(monkeypatch, 1, 3)
    sampler = EpochShuffleSampler(11, seed=3, current_epoch=lambda: 2)
    sampler.start_at(2, 1)
    assert list(sampler) == shards[1][1:]


def test_a_scored_split_is_sharded_without_padding(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    for rank in range(4):
        _as_rank(monkeypatch, rank, 4)
        sampler = ShardSampler(10)
        seen += list(sampler)
        assert len(sampler) == len(list(sampler))
    assert sorted(seen) == list(range(10))  # every image once: 3 + 3 + 2 + 2


@pytest.mark.parametrize(
    ("env", "first"),
    [
        ({}, True),
        ({"RANK": "0", "LOCAL_RANK": "0"}, True),
        ({"RANK": "1"}, False),
        ({"LOCAL_RANK": "1"}, False),
        ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False),
        ({"SLURM_PROCID": "0", "SLURM_NODEID": "0"}, True),
        ({"SLURM_PROCID": "3"}, False),
    ],
)
def test_only_the_first_process_writes(monkeypatch: pytest.MonkeyPatch, env, first) -> None:
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "SLURM_NODEID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert is_first_process() is first


@pytest.mark.slow
def test_two_processes_score_every_image_once_and_one_writes(tmp_path: Path) -> None:
    # Odd sizes: 2 processes cannot split them evenly, where padding would count images twice.
    data = make_dataset(tmp_path / "data", {"train": 13, "valid": 5, "test": 7})
    run_dir = tmp_path / "run"
    result = run_cli(
        [f"data.root={data}", *DDP, "trainer.max_epochs=2", f"hydra.run.dir={run_dir}"], tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for split, per_class in (("test", 7), ("val", 5)):
        scored = Predictions.load_csv(run_dir / "predictions" / f"{split}.csv")
        expected = sorted(str(p) for p in (data / split.replace("val", "valid")).rglob("*.png"))
        assert sorted(scored.paths) == expected and len(expected) == 2 * per_class
    test = Predictions.load_csv(run_dir / "predictions" / "test.csv")
    again = compute_metrics(test.probs, test.targets, 0.5)
    for name in ("acc", "auroc", "ap", "f1", "tp", "fp", "tn", "fn"):
        assert metrics[f"test/{name}"] == pytest.approx(again[name], abs=1e-6), name
    # The second process logs to its own file and writes nothing else: one Hydra record, and
    # none of the run's files twice under another name.
    assert (run_dir / "train_ddp_process_1.log").is_file()
    hidden = sorted(p.name for p in run_dir.iterdir() if p.name.startswith("."))
    assert hidden == [".hydra"]
    assert sorted(p.name for p in (run_dir / "predictions").iterdir()) == ["test.csv", "val.csv"]
    assert result.stdout.count("test metrics of the best checkpoint") == 1


def test_two_processes_choose_on_the_mean_over_validation_sources(tmp_path: Path) -> None:
    """`val/auroc_sources` is computed from both processes' shards (of unequal size): the
    kept checkpoint's score is the per-source mean of the whole validation split."""
    counts = {
        f"{split}/{source}/{cls}": n
        for split, n in (("train", 6), ("val", 3), ("test", 3))
        for source in ("gan", "swap")
        for cls in ("0_real", "1_fake")
    }
    data = make_tree(tmp_path / "data", {**counts, "val/gan/1_fake": 4}, seed=7)
    run_dir = tmp_path / "run"
    args = [f"data.root={data}", *DDP, "trainer.max_epochs=2", f"hydra.run.dir={run_dir}"]
    args += ["checkpoint.monitor=val/auroc_sources"]
    result = run_cli(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    table = metrics["val_per_source"]
    assert {name: row["images"] for name, row in table["sources"].items()} == {
        "gan": 7,
        "swap": 6,
    }
    assert metrics["best/score"] == pytest.approx(table["mean"]["auroc"], abs=1e-5)


@pytest.mark.slow
def test_sigterm_to_both_processes_then_resume_matches_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    data = make_dataset(tmp_path / "data", {"train": 60, "valid": 6, "test": 6}, size=64)
    args = [
        f"data.root={data}",
        *DDP,
        "data.image_size=64",
        "data.batch_size=2",
        "model.widths=[8,16]",
        "trainer.max_epochs=3",
    ]
    full = run_cli([*args, f"hydra.run.dir={tmp_path / 'full'}"], tmp_path)
    assert full.returncode == 0, full.stderr[-3000:]

    run_dir = tmp_path / "interrupted"
    result = signal_in_second_epoch(  # to both processes, as a scheduler signals them
        [sys.executable, "-m", "train", *args, f"hydra.run.dir={run_dir}"],
        run_dir,
        tmp_path,
        signal.SIGTERM,
    )
    assert result.returncode == 128 + signal.SIGTERM, result.stderr[-3000:]
    assert not (run_dir / "metrics.json").exists()
    stopped = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    progress = stopped["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
    assert stopped["epoch"] == 1 and 0 < progress["ready"] < 30  # 30 batches per process

    resumed = run_cli([f"resume={run_dir}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = json.loads((tmp_path / "full" / "metrics.json").read_text())
    got = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test/loss", "test/auroc", "test/acc", "val/auroc_best"):
        assert got[key] == pytest.approx(expected[key], abs=1e-6), key
    assert got["epochs"] == expected["epochs"] == 3
    # The interrupted epoch's train metrics too: each process kept counting its own shard.
    history = {
        name: torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True)[
            "history"
        ]
        for name in ("full", "interrupted")
    }
    for name, value in history["full"][1].items():
        assert history["interrupted"][1][name] == pytest.approx(value, abs=1e-6), name


#: `python -m train`, except that process 1 fails in its second training step.
FAILING_RANK = """
import os
from deepfake_detection.models import base

original = base.BaseDetector.training_step

def training_step(self, batch, batch_idx):
    if os.environ.get("LOCAL_RANK") == "1" and batch_idx == 1:
        raise RuntimeError("boom on rank 1")
    return original(self, batch, batch_idx)

base.BaseDetector.training_step = training_step
from deepfake_detection.commands import TRAIN
TRAIN.cli()
"""


@pytest.mark.slow
def test_a_failure_in_one_process_ends_the_job_with_its_error_logged(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"train": 13, "valid": 5, "test": 7})
    script = tmp_path / "failing.py"
    script.write_text(FAILING_RANK)
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(script), f"data.root={data}", *DDP, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,  # no process is left waiting for the one that failed
        env={**os.environ, "MOBILENET_V2_WEIGHTS": ""},
    )
    assert result.returncode != 0
    [other_log] = run_dir.glob("*_ddp_process_1.log")
    assert "RuntimeError: boom on rank 1" in other_log.read_text()
    assert not (run_dir / "metrics.json").exists()


def test_resuming_mid_epoch_with_another_process_count_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from types import SimpleNamespace

    from deepfake_detection.training.interrupts import InterruptCheckpoint

    notice = InterruptCheckpoint(str(tmp_path))
    module = SimpleNamespace(load_train_epoch_state=lambda state: None, device="cpu")
    saved = {"rngs": {}, "train_metrics": {}, "world_size": 2}
    checkpoint = {InterruptCheckpoint.STATE_KEY: saved}
    with caplog.at_level("WARNING"):
        notice.on_load_checkpoint(SimpleNamespace(world_size=2, global_rank=1), module, checkpoint)
        assert "resumes with" not in caplog.text
        notice.on_load_checkpoint(SimpleNamespace(world_size=1, global_rank=0), module, checkpoint)
    assert "stopped mid-epoch with 2 process(es) and resumes with 1" in caplog.text


@pytest.mark.slow
def test_a_sweep_of_ddp_jobs_in_one_process_starts_each_jobs_processes(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"train": 6, "valid": 3, "test": 3})
    result = run_cli(
        ["-m", f"data.root={data}", *DDP, "trainer.max_epochs=1", "model.widths=[4],[4,8]"],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 runs: 2 ok, 0 failed, 0 unfinished" in result.stdout
    [sweep] = (tmp_path / "multirun").iterdir()
    for job in ("0", "1"):
        assert (sweep / job / "train_ddp_process_1.log").is_file()
        assert len(Predictions.load_csv(sweep / job / "predictions" / "test.csv")) == 6


def test_frozen_batchnorms_stay_frozen_after_sync_batchnorm_swaps_them() -> None:
    from deepfake_detection.models import MobileNetV2Detector

    model = MobileNetV2Detector(pretrained=False, freeze={"name": "backbone"})
    frozen = len(model.frozen_batchnorms)
    assert frozen > 0
    # What `trainer.sync_batchnorm=true` does before fitting: new modules, same parameters.
    model.net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model.net)
    model.on_fit_start()
    assert len(model.frozen_batchnorms) == frozen
    assert all(isinstance(bn, torch.nn.SyncBatchNorm) for bn in model.frozen_batchnorms)
    model.train()
    assert not any(bn.training for bn in model.frozen_batchnorms)


def test_a_scored_split_smaller_than_the_processes_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deepfake_detection.data import datamodule as module
    from deepfake_detection.errors import DatasetError

    data = make_dataset(tmp_path / "data", {"train": 4, "valid": 1, "test": 2})
    dm = module.DeepfakeDataModule(root=str(data), image_size=32, num_workers=0)
    monkeypatch.setattr(module, "process_group", lambda: (0, 3))
    _as_rank(monkeypatch, 0, 3)
    with pytest.raises(DatasetError, match="the val split has 2 image.*fewer than the 3 processes"):
        dm.dataloader("val")
    assert len(dm.dataloader("test").sampler) == 2  # 4 images: 2, 1, 1 over 3 processes
