"""`python -m train` as a user runs it: one-line errors for bad input, and sweeps."""

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import make_dataset, run_cli

pytestmark = pytest.mark.slow

FAST = ["data.image_size=32", "data.batch_size=4", "data.num_workers=0", "model.widths=[4,8]"]


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("model=resnet", ["model=resnet", "custom_cnn, mobilenet_v2"]),
        ("freeze=partial", ["freeze=partial", "backbone, last_n, none"]),
        ("optimizer=lion", ["optimizer=lion", "adam, adamw, sgd"]),
    ],
)
def test_unknown_group_option(tmp_path: Path, override: str, fragments: list[str]) -> None:
    assert_one_line_error(run_cli([override], tmp_path), *fragments)


def test_missing_data_root(tmp_path: Path) -> None:
    result = run_cli([f"data.root={tmp_path / 'nowhere'}"], tmp_path)
    assert_one_line_error(result, "data.root=", "nowhere", "no such directory")


def test_missing_class_folder(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", {"train": 1, "valid": 1, "test": 1}, classes=["Real"])
    assert_one_line_error(
        run_cli([f"data.root={root}"], tmp_path), "missing the Fake/ class folder"
    )


def test_empty_split(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", {"train": 1, "valid": 1, "test": 1})
    for image in (root / "valid" / "Fake").iterdir():
        image.unlink()
    assert_one_line_error(run_cli([f"data.root={root}"], tmp_path), "valid/Fake: empty split")


def test_freeze_n_out_of_range(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", {"train": 1, "valid": 1, "test": 1})
    result = run_cli([f"data.root={root}", *FAST, "freeze=last_n", "freeze.n=7"], tmp_path)
    assert_one_line_error(result, "freeze.n=7 is out of range for custom_cnn: choose 0..2")
    assert not list(tmp_path.glob("outputs/**/checkpoints/*.ckpt"))


def sweep_freeze_depths(tmp_path: Path, depths: str, per_class: int) -> tuple:
    """Run a one-epoch `-m freeze=last_n freeze.n=<depths>` sweep; returns (result, sweep dir)."""
    root = make_dataset(tmp_path / "data", {"train": per_class, "valid": 1, "test": 1})
    sweep_dir = tmp_path / "sweep"
    args = ["-m", f"data.root={root}", *FAST, f"hydra.sweep.dir={sweep_dir}"]
    args += ["freeze=last_n", f"freeze.n={depths}", "trainer.max_epochs=1"]
    return run_cli(args, tmp_path), sweep_dir


def test_two_job_multirun_over_freeze_depth(tmp_path: Path) -> None:
    result, sweep_dir = sweep_freeze_depths(tmp_path, "0,2", per_class=4)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    trainable = []
    for job, depth in zip(jobs, (0, 2), strict=True):
        saved = OmegaConf.load(job / ".hydra" / "config.yaml")
        assert saved.model.freeze == {"name": "last_n", "n": depth}
        metrics = json.loads((job / "metrics.json").read_text())
        assert 0.0 <= metrics["test/auroc"] <= 1.0
        assert (job / "model.pth").is_file()
        trainable.append(metrics["params/trainable"])
    assert trainable[0] < trainable[1] == metrics["params/total"]
    # The sweep ends with the comparison table of both jobs, written beside them.
    assert "2 runs: 2 ok, 0 failed, 0 unfinished" in result.stdout
    assert (sweep_dir / "comparison.md").is_file() and (sweep_dir / "comparison.csv").is_file()


def test_unreadable_image_is_skipped_and_listed_by_default(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", {"train": 3, "valid": 1, "test": 1})
    (root / "train" / "Fake" / "001.png").write_bytes(b"not a png at all")
    run_dir = tmp_path / "run"
    args = [f"data.root={root}", *FAST, "data.num_workers=1", "trainer.max_epochs=1"]
    result = run_cli([*args, f"hydra.run.dir={run_dir}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    listing = (run_dir / "skipped_files.txt").read_text().splitlines()
    assert listing[0].startswith("# 1 file(s) skipped")
    assert listing[1].startswith(str(root / "train" / "Fake" / "001.png") + "\t")
    assert json.loads((run_dir / "metrics.json").read_text())["data/skipped"] == 1


def test_unreadable_image_with_policy_error_stops_before_training(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", {"train": 2, "valid": 1, "test": 1})
    (root / "train" / "Fake" / "001.png").write_bytes(b"not a png at all")
    run_dir = tmp_path / "run"
    args = [f"data.root={root}", *FAST, "data.on_bad_image=error", f"hydra.run.dir={run_dir}"]
    result = run_cli(args, tmp_path)
    assert_one_line_error(result, "train/Fake/001.png: not an image")
    assert "data.on_bad_image=error" in result.stderr
    assert not (run_dir / "checkpoints").exists()


def test_a_failing_sweep_job_does_not_stop_the_others(tmp_path: Path) -> None:
    result, sweep_dir = sweep_freeze_depths(tmp_path, "9,1", per_class=2)
    assert result.returncode != 0
    assert "freeze.n=9 is out of range" in (sweep_dir / "0" / "train.log").read_text()
    assert not (sweep_dir / "0" / "metrics.json").exists()
    assert (sweep_dir / "1" / "metrics.json").is_file()
    assert "freeze.n=9 is out of range" in (sweep_dir / "0" / "error.txt").read_text()
    # Hydra stops before its end-of-sweep hook; the table still comes, failed job listed.
    assert "2 runs: 1 ok, 1 failed, 0 unfinished" in result.stdout
    table = (sweep_dir / "comparison.md").read_text()
    assert "failed" in table and "freeze.n=9 is out of range" in table
