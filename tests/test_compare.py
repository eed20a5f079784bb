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


# Protocol records and bootstrap intervals, as training writes them into metrics.json.
TEST_DATA = "9f2c" + "0" * 60
OTHER_DATA = "77ab" + "1" * 60
VAL_DATA = "5d6e" + "2" * 60


def protocol(
    fingerprint: str = TEST_DATA,
    split: str = "test",
    files: tuple[int, int] = (150, 150),
    image_size: int = 224,
    torch_version: str = "2.5.1",
    threshold_rule: str = "val",
) -> dict:
    """A `protocol` record; the defaults describe one comparable setup."""
    return {
        "data": {
            "root": "data/set",
            "split": split,
            "fingerprint": fingerprint,
            "files": {"fake": files[0], "real": files[1]},
        },
        "validation": {
            "root": "data/set",
            "split": "val",
            "fingerprint": VAL_DATA,
            "files": {"fake": 50, "real": 50},
        },
        "perturbation": "clean",
        "preprocessing": {
            "image_size": image_size,
            "resize_to": 256,
            "crop_fraction": 0.875,
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "face": None,
            "video": None,
        },
        "checkpoint": {"rule": "best val/auroc (max)", "epoch": 3},
        "threshold": {"rule": threshold_rule, "value": 0.4312},
        "calibration": {"method": "none", "temperature": None},
        "bootstrap": {"resamples": 1000, "seed": 0, "level": 0.95},
        "versions": {
            "deepfake_detection": "0.1.0",
            "python": "3.11.2",
            "torch": torch_version,
            "torchvision": "0.20.1",
            "lightning": "2.4.0",
            "backbone": {"timm": "1.0.15"},
        },
        "git": {"commit": "a1b2c3d4" * 5, "dirty": False},
    }


def recorded(
    val_auroc: float,
    test_auroc: float,
    record: dict,
    val_ci: tuple[float, float] | None = None,
    test_ci: tuple[float, float] | None = None,
) -> dict:
    """metrics.json of a finished run with a protocol record and, if given, intervals."""
    metrics = finished(val_auroc, test_auroc, "custom_cnn", "none")
    metrics["protocol"] = record
    metrics["test/tpr@fpr0.01"] = 0.8125
    metrics["test/tpr@fpr0.001"] = 0.5
    if val_ci is not None:
        metrics["val/auroc_ci"] = list(val_ci)
    if test_ci is not None:
        metrics["test/auroc_ci"] = list(test_ci)
        metrics["test/ap_ci"] = [0.9, 0.95]
    return metrics


def best_names(report: str) -> list[str]:
    rows = table_rows(report)
    return [name for name, row in rows.items() if row["best"] == "★"]


@pytest.fixture
def two_splits(tmp_path: Path) -> Path:
    """Runs a and b tested on the test split; c, with the best val AUROC, on another split."""
    make_run(tmp_path / "a", metrics=recorded(0.90, 0.91, protocol()))
    make_run(tmp_path / "b", metrics=recorded(0.93, 0.92, protocol()))
    other = protocol(OTHER_DATA, split="valid", files=(90, 90))
    make_run(tmp_path / "c", metrics=recorded(0.99, 0.98, other))
    return tmp_path


def test_runs_tested_on_different_data_are_not_ranked_together(two_splits: Path) -> None:
    result = compare_runs([two_splits], plots=False)
    rows = table_rows(result.report)

    assert {name: row["protocol"] for name, row in rows.items()} == {"a": "A", "b": "A", "c": "B"}
    assert best_names(result.report) == ["b", "c"]  # one ★ per group
    assert result.best is None and [run.name for run in result.bests] == ["b", "c"]
    assert (
        "- data.fingerprint: A 9f2c0000… (test, 150 fake/150 real) "
        "vs B 77ab1111… (valid, 90 fake/90 real)"
    ) in result.report
    assert "Protocols: 2 groups of comparable runs" in result.report
    assert "Best performing model in protocol A (chosen on val/auroc_best): b" in result.report
    assert "Best performing model in protocol B (chosen on val/auroc_best): c" in result.report
    assert "Also differ" not in result.report  # the split's name is shown with its data


def test_mixed_protocols_allow_ranks_every_run_together(two_splits: Path) -> None:
    result = compare_runs([two_splits], plots=False, mixed_protocols="allow")

    assert best_names(result.report) == ["c"]
    assert result.best is not None and result.best.name == "c"
    assert table_rows(result.report)["a"]["protocol"] == "A"
    assert "Ranked together on request (compare.mixed_protocols=allow)" in result.report
    assert "- data.fingerprint: A 9f2c0000…" in result.report
    scope = "across protocols A, B (chosen on val/auroc_best, ranked together on request)"
    assert f"Best performing model {scope}: c" in result.report


def test_cli_takes_compare_settings_among_the_paths(two_splits: Path, capsys) -> None:
    from deepfake_detection.comparison.compare import main

    args = [str(two_splits / "a"), "compare.mixed_protocols=allow", str(two_splits / "c")]
    assert main([*args, "--output-dir", str(two_splits / "out"), "--no-plots"]) == 0
    assert best_names(capsys.readouterr().out) == ["c"]


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("compare.mixed_protocols=maybe", "compare.mixed_protocols=maybe: must be refuse or allow"),
        ("compare.mixed=allow", "compare.mixed: unknown key; known: compare.mixed_protocols"),
    ],
)
def test_bad_compare_setting_is_a_one_line_error(
    two_splits: Path, capsys, setting: str, expected: str
) -> None:
    from deepfake_detection.comparison.compare import main

    assert main([str(two_splits), setting, "--no-plots"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {expected}"), captured.err
    assert "refuse" in lines[0] and "allow" in lines[0]
    assert captured.out == "" and not (two_splits / "comparison.md").exists()


@pytest.mark.slow
def test_cli_bad_compare_setting_exits_2(two_splits: Path) -> None:
    result = run_compare([".", "compare.mixed_protocols=maybe"], two_splits)

    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr == "error: compare.mixed_protocols=maybe: must be refuse or allow\n"


def test_runs_without_a_protocol_record_are_a_group_of_their_own(tmp_path: Path) -> None:
    make_run(tmp_path / "new", metrics=recorded(0.90, 0.91, protocol()))
    make_run(tmp_path / "old", metrics=finished(0.95, 0.96, "custom_cnn", "none"))
    make_run(tmp_path / "older", metrics={"val/auroc_best": 0.97})
    result = compare_runs([tmp_path], plots=False)
    rows = table_rows(result.report)

    assert [rows[name]["protocol"] for name in ("new", "old", "older")] == ["A", "B", "B"]
    assert best_names(result.report) == ["new", "older"]
    assert "- B (2 runs: old, older): no protocol record" in result.report
    assert "Differ between groups" not in result.report  # nothing recorded to compare with


def test_sweep_without_protocol_records_compares_as_before(sweep: Path) -> None:
    result = compare_runs([sweep], plots=False)

    assert "Protocol A (3 runs: 0, 1, 10): no protocol record" in result.report
    assert "compared as before" in result.report
    assert result.best is not None and result.best.name == "1"
    assert "95% CI" not in result.report and "TPR@1%FPR" not in result.report  # nothing to show


def test_a_preprocessing_difference_splits_groups(tmp_path: Path) -> None:
    make_run(tmp_path / "big", metrics=recorded(0.90, 0.91, protocol(image_size=224)))
    make_run(tmp_path / "small", metrics=recorded(0.95, 0.96, protocol(image_size=160)))
    report = compare_runs([tmp_path], plots=False).report

    assert best_names(report) == ["big", "small"]
    assert "Differ between groups:\n- preprocessing.image_size: A 224 vs B 160\n" in report


def test_a_seed_sweep_with_carved_validation_splits_is_ranked_together(tmp_path: Path) -> None:
    # Without a validation folder each seed carves its own: same test data, one ranking.
    for name, seed_val in (("seed1", "1" * 64), ("seed2", "2" * 64)):
        record = protocol()
        record["validation"]["fingerprint"] = seed_val
        make_run(tmp_path / name, metrics=recorded(0.9 if name == "seed1" else 0.95, 0.9, record))
    result = compare_runs([tmp_path], plots=False)
    assert best_names(result.report) == ["seed2"] and result.best is not None
    assert "- validation.fingerprint: 11111111" in result.report


def test_a_version_difference_is_a_note_only(tmp_path: Path) -> None:
    make_run(tmp_path / "a", metrics=recorded(0.90, 0.91, protocol(torch_version="2.5.1")))
    make_run(tmp_path / "b", metrics=recorded(0.95, 0.96, protocol(torch_version="2.6.0")))
    make_run(tmp_path / "c", metrics=recorded(0.93, 0.96, protocol(threshold_rule="0.5")))
    result = compare_runs([tmp_path], plots=False)

    assert best_names(result.report) == ["b"] and result.best is not None
    assert {row["protocol"] for row in table_rows(result.report).values()} == {"A"}
    assert "Differ between groups" not in result.report
    assert "Also differ (without splitting groups):" in result.report
    assert "- threshold.rule: val (a, b) vs 0.5 (c)" in result.report
    assert "- versions.torch: 2.5.1 (a, c) vs 2.6.0 (b)" in result.report


def test_notes_name_groups_when_each_group_has_one_value(tmp_path: Path) -> None:
    make_run(tmp_path / "a", metrics=recorded(0.9, 0.9, protocol(image_size=224)))
    small = protocol(image_size=160, torch_version="2.6.0")
    make_run(tmp_path / "b", metrics=recorded(0.9, 0.9, small))
    report = compare_runs([tmp_path], plots=False).report

    assert "- versions.torch: A 2.5.1 vs B 2.6.0" in report


def test_nested_preprocessing_differences_are_listed_by_field(tmp_path: Path) -> None:
    faces = protocol()
    faces["preprocessing"]["face"] = {"detector": "yunet", "margin": 2.0}
    cropped = protocol()
    cropped["preprocessing"]["face"] = {"detector": "yunet", "margin": 1.5}
    make_run(tmp_path / "a", metrics=recorded(0.9, 0.9, protocol()))
    make_run(tmp_path / "b", metrics=recorded(0.9, 0.9, faces))
    make_run(tmp_path / "c", metrics=recorded(0.9, 0.9, cropped))
    report = compare_runs([tmp_path], plots=False).report

    assert best_names(report) == ["a", "b", "c"]
    assert '- preprocessing.face: A none vs B {"detector": "yunet", "margin": 2.0} vs C' in report
    # Same key order, different values: the record is compared as canonical JSON.
    reordered = protocol()
    reordered["preprocessing"] = dict(reversed(list(reordered["preprocessing"].items())))
    make_run(tmp_path / "d", metrics=recorded(0.9, 0.9, reordered))
    rows = table_rows(compare_runs([tmp_path], plots=False).report)
    assert rows["d"]["protocol"] == "A"


def test_intervals_appear_in_markdown_and_csv(tmp_path: Path) -> None:
    make_run(
        tmp_path / "a",
        metrics=recorded(0.95, 0.985, protocol(), val_ci=(0.93, 0.97), test_ci=(0.981, 0.992)),
    )
    make_run(tmp_path / "b", metrics=recorded(0.90, 0.91, protocol()))  # no intervals
    result = compare_runs([tmp_path], plots=False)
    rows = table_rows(result.report)

    assert rows["a"]["test AUROC 95% CI"] == "0.9810–0.9920"
    assert rows["a"]["val AUROC 95% CI"] == "0.9300–0.9700"
    assert rows["a"]["test TPR@1%FPR"] == "0.8125"
    assert rows["b"]["test AUROC 95% CI"] == "—"
    assert "val AUROC 0.9500 [0.9300–0.9700]" in result.report
    assert "AUROC 0.9850 [0.9810–0.9920], TPR 0.8125 at 1% FPR" in result.report
    with (tmp_path / "comparison.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == HEADERS
        csv_rows = {row["run"]: row for row in reader}
    row = csv_rows["a"]
    assert (float(row["test AUROC CI low"]), float(row["test AUROC CI high"])) == (0.981, 0.992)
    assert (float(row["val AUROC CI low"]), float(row["val AUROC CI high"])) == (0.93, 0.97)
    assert float(row["test TPR@1%FPR"]) == 0.8125 and float(row["test TPR@0.1%FPR"]) == 0.5
    assert row["protocol"] == "A" and csv_rows["b"]["test AUROC CI low"] == ""


def test_best_run_whose_interval_overlaps_is_not_clearly_better(tmp_path: Path) -> None:
    make_run(tmp_path / "a", metrics=recorded(0.950, 0.9, protocol(), val_ci=(0.93, 0.97)))
    make_run(tmp_path / "b", metrics=recorded(0.948, 0.9, protocol(), val_ci=(0.92, 0.96)))
    make_run(tmp_path / "c", metrics=recorded(0.700, 0.9, protocol(), val_ci=(0.65, 0.75)))
    report = compare_runs([tmp_path], plots=False).report

    assert best_names(report) == ["a"]
    assert ". Not clearly better than b: validation AUROC intervals overlap" in report

    make_run(tmp_path / "d", metrics=recorded(0.990, 0.9, protocol(), val_ci=(0.98, 1.0)))
    report = compare_runs([tmp_path], plots=False).report
    assert best_names(report) == ["d"] and "Not clearly better" not in report


def test_malformed_records_and_intervals_do_not_break_the_comparison(tmp_path: Path) -> None:
    broken = recorded(0.9, 0.9, protocol(), test_ci=(0.99, 0.98))  # low above high
    broken["protocol"] = "not a record"
    broken["val/auroc_ci"] = [0.8]
    make_run(tmp_path / "a", metrics=broken)
    partial = recorded(0.8, 0.8, {"data": {"fingerprint": TEST_DATA}, "versions": None})
    make_run(tmp_path / "b", metrics=partial)
    make_run(tmp_path / "c", metrics=recorded(0.7, 0.7, protocol()))
    result = compare_runs([tmp_path], plots=False)
    rows = table_rows(result.report)

    assert "test AUROC 95% CI" not in rows["a"]  # no usable interval anywhere
    assert rows["a"]["protocol"] == "A"
    assert "no protocol record" in result.report
    assert "- preprocessing.image_size: B not recorded vs C 224" in result.report
    assert "- validation.fingerprint: B not recorded vs C 5d6e2222… (val, 50 fake/50 real)" in (
        result.report
    )
    assert "- versions.torch: B not recorded vs C 2.5.1" in result.report
    assert "- versions:" not in result.report


def test_rows_are_listed_group_by_group(tmp_path: Path) -> None:
    make_run(tmp_path / "0", metrics=recorded(0.9, 0.9, protocol()))
    make_run(tmp_path / "1", log="[2026-11-22 10:00:01,000][train][ERROR] - error: boom\n")
    make_run(tmp_path / "2", metrics=recorded(0.9, 0.9, protocol(image_size=160)))
    make_run(tmp_path / "3", metrics=recorded(0.8, 0.9, protocol()))
    compare_runs([tmp_path], plots=False)

    assert list(table_rows((tmp_path / "comparison.md").read_text())) == ["0", "3", "2", "1"]
    with (tmp_path / "comparison.csv").open(newline="", encoding="utf-8") as handle:
        assert [row["run"] for row in csv.DictReader(handle)] == ["0", "3", "2", "1"]


def test_hydra_callback_takes_mixed_protocols(two_splits: Path, capsys) -> None:
    from deepfake_detection.errors import UserInputError

    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(two_splits)}}})
    CompareOnMultirunEnd(plots=False, mixed_protocols="allow").on_multirun_end(config)
    assert best_names(capsys.readouterr().out) == ["c"]
    with pytest.raises(UserInputError, match=r"mixed_protocols=maybe: must be refuse or allow"):
        CompareOnMultirunEnd(mixed_protocols="maybe")


def test_train_config_names_the_callback_setting() -> None:
    from deepfake_detection.config import config_dir

    node = OmegaConf.load(config_dir() / "train.yaml").hydra.callbacks.compare
    callback = CompareOnMultirunEnd(**{k: v for k, v in node.items() if k != "_target_"})
    assert callback.mixed_protocols == "refuse"


def test_figures_are_drawn_for_several_groups(two_splits: Path, tmp_path: Path) -> None:
    result = compare_runs([two_splits], tmp_path / "figures")

    assert {path.name for path in result.files} == {
        "comparison.md",
        "comparison.csv",
        "metrics_bar.png",  # no run saved predictions: no ROC curves
    }
    assert (tmp_path / "figures" / "metrics_bar.png").read_bytes().startswith(PNG_SIGNATURE)


def scored(n: int, seed: int, shift: float) -> list[tuple[int, float]]:
    """Predictions for n images, half of them fake; a larger shift separates them better."""
    import random

    rng = random.Random(seed)
    return [(i % 2, min(1.0, rng.random() * 0.7 + shift * (i % 2))) for i in range(n)]


def test_paired_bootstrap_of_the_auroc_difference_to_the_best(tmp_path: Path) -> None:
    make_run(
        tmp_path / "a", metrics=recorded(0.95, 0.9, protocol()), predictions=scored(80, 1, 0.4)
    )
    make_run(
        tmp_path / "b", metrics=recorded(0.90, 0.9, protocol()), predictions=scored(80, 2, 0.1)
    )
    make_run(tmp_path / "c", metrics=recorded(0.80, 0.9, protocol()))  # no predictions
    other = protocol(OTHER_DATA)
    make_run(tmp_path / "d", metrics=recorded(0.99, 0.9, other), predictions=scored(80, 3, 0.1))
    result = compare_runs([tmp_path], plots=False)
    rows = table_rows(result.report)

    header = "ΔAUROC vs best (95% CI)"
    assert rows["a"][header] == "reference" and rows["c"][header] == "—"
    assert rows["d"][header] == "—"  # the best of its own group
    delta, interval = rows["b"][header].split(" ", 1)
    assert float(delta) < 0 and interval.startswith("[-")
    with (tmp_path / "comparison.csv").open(newline="", encoding="utf-8") as handle:
        row = {r["run"]: r for r in csv.DictReader(handle)}["b"]
    low, high = float(row["ΔAUROC vs best CI low"]), float(row["ΔAUROC vs best CI high"])
    assert low <= float(row["ΔAUROC vs best"]) <= high < 0  # clearly worse on test
    # Seeded: the same interval every time.
    assert compare_runs([tmp_path], plots=False).report == result.report


def test_paired_bootstrap_needs_the_same_images(tmp_path: Path) -> None:
    make_run(
        tmp_path / "a", metrics=recorded(0.95, 0.9, protocol()), predictions=scored(80, 1, 0.4)
    )
    make_run(
        tmp_path / "b", metrics=recorded(0.90, 0.9, protocol()), predictions=scored(60, 2, 0.1)
    )
    report = compare_runs([tmp_path], plots=False).report

    assert "ΔAUROC" not in report


def test_paired_bootstrap_matches_images_relative_to_each_runs_root(tmp_path: Path) -> None:
    # The same files, scored once from a relative root and once from an absolute one.
    for name, root, val in (("a", "data/set", 0.95), ("b", "/elsewhere/data/set", 0.9)):
        record = protocol()
        record["data"]["root"] = root
        make_run(
            tmp_path / name, metrics=recorded(val, 0.9, record), predictions=scored(40, 1, 0.3)
        )
        csv_file = tmp_path / name / "predictions" / "test.csv"
        text = csv_file.read_text().replace("img/", f"{root}/img/")
        csv_file.write_text(text)
    rows = table_rows(compare_runs([tmp_path], plots=False).report)
    assert rows["b"]["ΔAUROC vs best (95% CI)"] == "+0.0000 [+0.0000, +0.0000]"


def test_paired_auroc_matches_the_plain_auroc() -> None:
    from deepfake_detection.comparison.paired import paired_delta

    best = {"w": (0, 0.1), "x": (0, 0.4), "y": (1, 0.35), "z": (1, 0.8)}  # AUROC 0.75
    other = {"w": (0, 0.1), "x": (0, 0.2), "y": (1, 0.35), "z": (1, 0.8)}  # AUROC 1.0
    delta = paired_delta(best, other, resamples=50)
    assert delta is not None and delta.delta == pytest.approx(0.25) and delta.images == 4
    assert paired_delta(best, {**other, "z": (0, 0.8)}) is None  # labels disagree


def test_compare_imports_neither_torch_nor_numpy() -> None:
    code = (
        "import sys; import deepfake_detection.comparison.compare; "
        "print(sorted({'torch', 'numpy'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr
