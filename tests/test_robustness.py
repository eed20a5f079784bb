"""`deepfake-robustness`: clean and perturbed rows of one split, all at one threshold."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import compose_config, run_cli
from deepfake_detection.commands import EVALUATE, ROBUSTNESS
from deepfake_detection.errors import ConfigError

evaluate = EVALUATE.run  # the command: its config checked, then run
robustness = ROBUSTNESS.run  # the command: its config checked, then run

#: The standard grid cut down the way a user would: one row of jpeg and of noise.
GRID = ["~grid.blur", "~grid.resize", "grid.jpeg=[50]", "grid.noise=[0.1]"]
EMPTY = ["~grid.jpeg", "~grid.blur", "~grid.resize", "~grid.noise"]
ROW_METRICS = ("auroc", "ap", "acc", "balanced_acc", "eer")


def run_evaluate(overrides: list[str], output_dir: Path) -> dict:
    evaluate(compose_config("evaluate", overrides, output_dir))
    return json.loads((output_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def report(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list, Path]:
    out = tmp_path_factory.mktemp("robustness")
    rows = robustness(compose_config("robustness", [f"ckpt_path={tiny_run}", *GRID], out))
    return rows, out


def test_rows_and_files(report: tuple[list, Path]) -> None:
    rows, out = report
    assert [(r["perturbation"], r["severity"]) for r in rows] == [
        ("clean", None),
        ("jpeg", 50),
        ("noise", 0.1),
    ]
    with open(out / "robustness.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [row["perturbation"] for row in table] == ["clean", "jpeg", "noise"]
    assert len({row["threshold"] for row in table}) == 1  # one threshold for every row
    assert "| jpeg | 50 |" in (out / "robustness.md").read_text()
    assert (out / "robustness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


def test_the_clean_row_is_what_evaluate_reports(
    report: tuple[list, Path], tiny_run: Path, tmp_path: Path
) -> None:
    rows, _ = report
    metrics = run_evaluate([f"ckpt_path={tiny_run}", "threshold=val"], tmp_path / "eval")
    for name in ROW_METRICS:
        assert rows[0][name] == pytest.approx(metrics[f"test/{name}"], abs=1e-9), name


def test_perturbed_rows_use_the_validation_threshold_not_their_own(
    report: tuple[list, Path], tiny_run: Path, tmp_path: Path
) -> None:
    rows, out = report
    with open(out / "robustness.csv", newline="") as handle:
        threshold = float(next(csv.DictReader(handle))["threshold"])
    stored = json.loads((tiny_run / "metrics.json").read_text())["val/threshold"]
    assert threshold == pytest.approx(stored)
    args = [f"ckpt_path={tiny_run}", f"threshold={threshold}", "perturb=jpeg"]
    metrics = run_evaluate([*args, "perturb.severity=50"], tmp_path / "jpeg")
    for name in ROW_METRICS:
        assert rows[1][name] == pytest.approx(metrics[f"test/{name}"], abs=1e-9), name


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        (["grid.jpeg=[0]"], "perturb.severity=0: for perturb=jpeg it is the JPEG quality"),
        (["+grid.fog=[1]"], "perturb=fog: unknown perturb option"),
        (["grid.blur=[]"], "grid.blur=[]: must be a non-empty list of severities"),
        (EMPTY, "grid={}: must be a mapping of perturbations to lists of severities"),
    ],
)
def test_bad_grids_are_one_line(tiny_run: Path, tmp_path: Path, grid: list, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        robustness(compose_config("robustness", [f"ckpt_path={tiny_run}", *grid], tmp_path))
    assert str(error.value).startswith(message)


@pytest.mark.slow
def test_the_command_runs_as_documented(tiny_run: Path, tmp_path: Path) -> None:
    result = run_cli(
        [f"ckpt_path={tiny_run}", *EMPTY[:1], *EMPTY[2:], "grid.blur=[1]", "threshold=0.5"],
        tmp_path,
        module="deepfake_detection.robustness",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| blur | 1 |" in result.stdout and "every row at threshold 0.5 (fixed)" in result.stdout
