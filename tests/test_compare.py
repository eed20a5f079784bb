"""`deepfake-compare` and its library on made-up run folders (no training)."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from deepfake_detection.comparison import RunsNotFoundError, compare_runs, find_runs
from deepfake_detection.comparison.hydra_callback import CompareOnMultirunEnd
from deepfake_detection.comparison.table import HEADERS

TARGETS = {
    "custom_cnn": "deepfake_detection.models.CustomCNNDetector",
    "mobilenet_v2": "deepfake_detection.models.MobileNetV2Detector",
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_run(
    run_dir: Path,
    model: str = "custom_cnn",
    freeze: str = "none",
    n: int | None = None,
    metrics: dict | None = None,
    log: str = "[2026-11-22 10:00:00,000][train][INFO] - data: ...\n",
    predictions: list[tuple[int, float]] | None = None,
) -> Path:
    """A run folder as `python -m train` leaves it: config, overrides, log, maybe metrics."""
    freeze_cfg = {"name": freeze} if n is None else {"name": freeze, "n": n}
    config = {
        "model": {"_target_": TARGETS[model], "freeze": freeze_cfg},
        "freeze": freeze_cfg,
        "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-4},
        "seed": 42,
    }
    overrides = [f"model={model}", f"freeze={freeze}"] + ([f"freeze.n={n}"] if n else [])
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(config))
    (run_dir / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(overrides))
    (run_dir / "train.log").write_text(log)
    if metrics is not None:
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    if predictions is not None:
        rows = "".join(f"img/{i}.png,{label},{p}\n" for i, (label, p) in enumerate(predictions))
        (run_dir / "predictions").mkdir()
        (run_dir / "predictions" / "test.csv").write_text("path,label,prob_fake\n" + rows)
    return run_dir


def finished(val_auroc: float, test_auroc: float, model: str, freeze: str, n=None) -> dict:
    """metrics.json of a finished run, with awkward full-precision floats."""
    return {
        "test/acc": 0.8366666674613953,
        "test/precision": 0.9123456789012345,
        "test/recall": 0.7733333349227905,
        "test/f1": 0.8371428571428571,
        "test/acc@val": 0.9133333333333333,
        "test/f1@val": 0.9111111111111111,
        "test/auroc": test_auroc,
        "test/loss": 0.41,
        "val/auroc_best": val_auroc,
        "best/score": val_auroc,
        "best/monitor": "val/auroc",
        "best/checkpoint": None,
        "epochs": 3,
        "train_seconds": 57.559,
        "params/trainable": 12345,
        "params/total": 2226434 if model == "mobilenet_v2" else 355649,
        "hparams": {
            "model": model,
            "freeze": freeze,
            "freeze_n": n,
            "augment": "deepfake",
            "optimizer": "Adam",
            "lr": 0.00025,
            "batch_size": 32,
        },
    }


SEPARABLE = [(0, 0.1), (0, 0.4), (1, 0.35), (1, 0.8), (0, 0.2), (1, 0.9)]


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A sweep of five jobs: 0 best on test, 1 best on validation, 2 failed, 3 killed, 10 ok."""
    sweep_dir = tmp_path / "multirun" / "2026-11-22_10-00-00"
    (sweep_dir.parent).mkdir(parents=True)
    (sweep_dir.parent / "README.md").write_text("not a run")
    make_run(
        sweep_dir / "0",
        metrics=finished(0.90, 0.99, "custom_cnn", "none"),
        predictions=SEPARABLE,
    )
    make_run(
        sweep_dir / "1",
        "mobilenet_v2",
        "last_n",
        3,
        metrics=finished(0.97, 0.93, "mobilenet_v2", "last_n", 3),
        predictions=SEPARABLE[::-1],
    )
    failed_log = (
        "[2026-11-22 10:00:00,000][train][INFO] - data: ...\n"
        "[2026-11-22 10:00:01,000][train][ERROR] - error: freeze.n=9 is out of range for "
        "mobilenet_v2: choose 0..19\n"
    )
    make_run(sweep_dir / "2", "mobilenet_v2", "last_n", 9, log=failed_log)
    make_run(sweep_dir / "3", "custom_cnn", "backbone")
    make_run(sweep_dir / "10", metrics=finished(0.95, 0.96, "custom_cnn", "backbone"))
    (sweep_dir / "multirun.yaml").write_text("hydra: {}\n")
    return sweep_dir


def table_rows(markdown: str) -> dict[str, dict[str, str]]:
    """The Markdown table as {run: {header: cell}}."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


def test_table_lists_every_job_with_values_from_metrics_json(sweep: Path) -> None:
    result = compare_runs([sweep], plots=False)
    rows = table_rows(result.report)

    assert list(rows) == ["0", "1", "2", "3", "10"]  # numeric job order
    assert [rows[r]["status"] for r in rows] == ["ok", "ok", "failed", "unfinished", "ok"]
    metrics = json.loads((sweep / "1" / "metrics.json").read_text())
    row = rows["1"]
    assert row["model"] == "mobilenet_v2"
    assert row["freeze"] == "last_n(3)"
    assert row["augment"] == "deepfake"
    assert row["optimizer"] == "Adam"
    assert row["lr"] == "2.5e-04"
    assert row["epochs"] == "3"
    assert row["train time (s)"] == "57.6"
    assert row["params total"] == str(metrics["params/total"])
    assert row["params trainable"] == str(metrics["params/trainable"])
    assert row["best val AUROC"] == f"{metrics['val/auroc_best']:.4f}"
    assert row["test acc@val"] == "0.9133" and row["test F1@val"] == "0.9111"
    for header, key in [
        ("test acc", "test/acc"),
        ("test precision", "test/precision"),
        ("test recall", "test/recall"),
        ("test F1", "test/f1"),
        ("test AUROC", "test/auroc"),
    ]:
        assert row[header] == f"{metrics[key]:.4f}", header


def test_best_run_is_chosen_on_validation_not_test(sweep: Path) -> None:
    result = compare_runs([sweep], plots=False)
    rows = table_rows(result.report)

    assert result.best is not None and result.best.name == "1"  # job 0 has the best test AUROC
    assert [r for r in rows if rows[r]["best"] == "★"] == ["1"]
    assert (
        "Best performing model (chosen on val/auroc_best): 1 — mobilenet_v2, last_n(3): "
        "val AUROC 0.9700; test acc 0.8367, precision 0.9123, recall 0.7733, F1 0.8371 at 0.5 "
        "(acc 0.9133, F1 0.9111 at the validation threshold), AUROC 0.9300"
    ) in result.report
    assert "5 runs: 3 ok, 1 failed, 1 unfinished" in result.report


def test_failed_and_unfinished_jobs_are_listed_without_numbers(sweep: Path) -> None:
    rows = table_rows(compare_runs([sweep], plots=False).report)

    failed, unfinished = rows["2"], rows["3"]
    assert failed["error"] == "freeze.n=9 is out of range for mobilenet_v2: choose 0..19"
    # Settings of a run without metrics.json come from its .hydra/config.yaml.
    assert (failed["model"], failed["freeze"], failed["lr"]) == (
        "mobilenet_v2",
        "last_n(9)",
        "1e-04",
    )
    assert (unfinished["model"], unfinished["freeze"]) == ("custom_cnn", "backbone")
    assert unfinished["augment"] == "basic"  # a config from before the augment group
    for row in (failed, unfinished):
        assert row["test acc"] == row["best val AUROC"] == row["epochs"] == row["best"] == ""
    assert unfinished["error"] == ""


def test_error_txt_is_preferred_and_tracebacks_give_their_last_line(tmp_path: Path) -> None:
    traceback = (
        "[2026-11-22 10:00:00,000][train][INFO] - data: ...\n"
        "Traceback (most recent call last):\n"
        '  File "train.py", line 1, in <module>\n'
        "    main()\n"
        "RuntimeError: CUDA out of memory\n"
    )
    make_run(tmp_path / "a", log=traceback)
    make_run(tmp_path / "b", log="[2026-11-22 10:00:01,000][train][ERROR] - error: from the log\n")
    (tmp_path / "b" / "error.txt").write_text("error: disk full\nmore detail\n")

    runs = {run.name: run for run in find_runs([tmp_path])}
    assert (runs["a"].status, runs["a"].error) == ("failed", "RuntimeError: CUDA out of memory")
    assert (runs["b"].status, runs["b"].error) == ("failed", "disk full")


def test_csv_has_the_same_columns_at_full_precision(sweep: Path) -> None:
    result = compare_runs([sweep], plots=False)
    with (sweep / "comparison.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == HEADERS
        rows = {row["run"]: row for row in reader}

    assert (sweep / "comparison.md").read_text(encoding="utf-8") == result.report
    metrics = json.loads((sweep / "0" / "metrics.json").read_text())
    assert float(rows["0"]["test precision"]) == metrics["test/precision"]
    assert float(rows["0"]["best val AUROC"]) == metrics["val/auroc_best"]
    assert int(rows["0"]["params total"]) == metrics["params/total"]
    assert float(rows["0"]["lr"]) == metrics["hparams"]["lr"]
    assert rows["1"]["best"] == "★" and rows["0"]["best"] == ""
    assert rows["2"]["status"] == "failed" and rows["2"]["test acc"] == ""
    assert "out of range" in rows["2"]["error"]


def test_figures_are_written_as_png(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = compare_runs([sweep], out)

    assert result.output_dir == out
    names = {path.name for path in result.files}
    assert names == {"comparison.md", "comparison.csv", "roc_overlay.png", "metrics_bar.png"}
    for name in ("roc_overlay.png", "metrics_bar.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, name
    assert not (sweep / "comparison.md").exists()
    assert not list(out.glob(".*.tmp"))  # no temporary files left behind


def test_error_column_only_when_a_run_failed(tmp_path: Path) -> None:
    for name, val in (("a", 0.8), ("b", 0.9)):
        make_run(tmp_path / name, metrics=finished(val, val, "custom_cnn", "none"))
    report = compare_runs([tmp_path], plots=False).report
    rows = table_rows(report)
    assert "error" not in rows["a"] and rows["b"]["best"] == "★"
    with (tmp_path / "comparison.csv").open(newline="", encoding="utf-8") as handle:
        assert tuple(csv.DictReader(handle).fieldnames or ()) == HEADERS  # a fixed schema

    log = "[2026-11-22 10:00:01,000][train][ERROR] - error: data.root=x: no such directory\n"
    make_run(tmp_path / "c", log=log)
    rows = table_rows(compare_runs([tmp_path], plots=False).report)
    assert rows["c"]["error"] == "data.root=x: no such directory"
    assert rows["a"]["error"] == ""


def test_missing_keys_show_as_dashes(tmp_path: Path) -> None:
    make_run(tmp_path / "old", metrics={"test/acc": 0.5})  # an older metrics.json
    rows = table_rows(compare_runs([tmp_path], plots=False).report)

    row = rows["old"]
    assert row["status"] == "ok" and row["test acc"] == "0.5000"
    assert row["test AUROC"] == row["best val AUROC"] == "—"
    assert row["model"] == "custom_cnn" and row["best"] == ""  # no val AUROC: no best run


def test_run_dirs_are_found_at_any_depth_but_not_inside_a_run(tmp_path: Path) -> None:
    make_run(tmp_path / "outputs" / "train" / "2026-11-22_09-00-00", metrics={})
    make_run(tmp_path / "multirun" / "2026-11-22_10-00-00" / "0", metrics={})
    make_run(tmp_path / "multirun" / "2026-11-22_10-00-00" / "0" / "nested", metrics={})
    make_run(tmp_path / "hidden" / ".cache" / "run", metrics={})
    evaluation = tmp_path / "outputs" / "evaluate" / "2026-11-22_11-00-00"
    (evaluation / ".hydra").mkdir(parents=True)  # an `evaluate` output is not a training run
    (evaluation / ".hydra" / "config.yaml").write_text("task_name: evaluate\nckpt_path: x\n")

    names = [run.name for run in find_runs([tmp_path])]
    assert names == ["multirun/2026-11-22_10-00-00/0", "outputs/train/2026-11-22_09-00-00"]
    single = find_runs([tmp_path / "outputs" / "train" / "2026-11-22_09-00-00"])
    assert [run.name for run in single] == ["2026-11-22_09-00-00"]


def test_same_job_names_in_two_sweeps_are_told_apart(tmp_path: Path) -> None:
    make_run(tmp_path / "sweep_a" / "0", metrics={})
    make_run(tmp_path / "sweep_b" / "0", metrics={})

    runs = find_runs([tmp_path / "sweep_a", tmp_path / "sweep_b"])
    assert [run.name for run in runs] == ["sweep_a/0", "sweep_b/0"]


def test_no_runs_is_an_error_naming_the_path(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunsNotFoundError, match="empty"):
        compare_runs([tmp_path / "empty"])
    with pytest.raises(RunsNotFoundError, match="no such directory: .*nowhere"):
        compare_runs([tmp_path / "empty", tmp_path / "nowhere"])
    assert not (tmp_path / "empty" / "comparison.md").exists()


def run_compare(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deepfake_detection.compare", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_cli_prints_the_table_and_writes_into_the_sweep(sweep: Path, tmp_path: Path) -> None:
    relative = sweep.relative_to(tmp_path).as_posix()
    result = run_compare([relative, "--no-plots"], tmp_path)

    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert list(rows) == ["0", "1", "2", "3", "10"] and rows["1"]["best"] == "★"
    assert "Best performing model (chosen on val/auroc_best): 1 — mobilenet_v2" in result.stdout
    assert (sweep / "comparison.md").read_text(encoding="utf-8") in result.stdout
    assert (sweep / "comparison.csv").is_file()


@pytest.mark.slow
def test_cli_without_runs_fails_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run_compare(["empty", "missing"], tmp_path)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "missing" in lines[0]
    result = run_compare(["empty"], tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: ")
    assert "empty" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_cli_with_several_paths_writes_to_a_timestamped_folder(tmp_path: Path) -> None:
    make_run(tmp_path / "a", metrics={"val/auroc_best": 0.7})
    make_run(tmp_path / "b", metrics={"val/auroc_best": 0.8})
    result = run_compare(["a", "b", "--no-plots"], tmp_path)

    assert result.returncode == 0, result.stderr
    written = list((tmp_path / "outputs" / "compare").glob("*/comparison.csv"))
    assert len(written) == 1
    assert table_rows(result.stdout)["b"]["best"] == "★"


def test_hydra_callback_compares_the_sweep(sweep: Path, capsys) -> None:
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    CompareOnMultirunEnd(plots=False).on_multirun_end(config)

    assert "5 runs: 3 ok, 1 failed, 1 unfinished" in capsys.readouterr().out
    assert (sweep / "comparison.csv").is_file()


def test_hydra_callback_only_warns_when_it_cannot_compare(tmp_path: Path, caplog) -> None:
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "nowhere")}}})
    with caplog.at_level(logging.WARNING):
        CompareOnMultirunEnd().on_multirun_end(config)
    assert "could not compare" in caplog.text and "nowhere" in caplog.text


def test_pngs_are_not_written_without_finished_runs(tmp_path: Path) -> None:
    make_run(tmp_path / "killed")
    (tmp_path / "roc_overlay.png").write_bytes(b"stale")
    result = compare_runs([tmp_path])

    assert [run.status for run in result.runs] == ["unfinished"]
    assert {path.name for path in result.files} == {"comparison.md", "comparison.csv"}
    assert not (tmp_path / "roc_overlay.png").exists()
    assert "No best model" in result.report
