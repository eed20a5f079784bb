"""Comparable numbers end to end: the protocol record, operating points, one-class folders
and intervals, as training, evaluate, robustness, export, predict, serve and compare write
them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import _train_tiny, compose_config, make_tree, write_image
from deepfake_detection.commands import EVALUATE, PREDICT
from deepfake_detection.comparison.compare import compare_runs, main
from deepfake_detection.detector.exported_model import load_detector
from deepfake_detection.errors import ConfigError, UserInputError
from deepfake_detection.evaluation.robustness import robustness
from deepfake_detection.exporting.export import export
from deepfake_detection.metrics.threshold_rules import STANDARD_RULES
from deepfake_detection.serving.app import ServiceSettings, create_app

#: The robustness grid cut down to one row of JPEG.
ONE_JPEG_ROW = ["~grid.blur", "~grid.resize", "~grid.noise", "grid.jpeg=[50]"]


def run_evaluate(overrides: list[str], output_dir: Path) -> dict:
    EVALUATE.run(compose_config("evaluate", overrides, output_dir))
    return json.loads((output_dir / "metrics.json").read_text())


def test_training_records_its_protocol_intervals_and_operating_points(tiny_run: Path) -> None:
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    protocol = metrics["protocol"]
    assert protocol["data"]["split"] == "test" and protocol["validation"]["split"] == "val"
    assert protocol["data"]["files"] == {"fake": 6, "real": 6}
    assert len(protocol["data"]["fingerprint"]) == 64
    assert protocol["data"]["fingerprint"] != protocol["validation"]["fingerprint"]
    assert protocol["preprocessing"]["image_size"] == 32
    assert protocol["preprocessing"]["face"] is None and protocol["preprocessing"]["video"] is None
    assert protocol["checkpoint"]["rule"].startswith("best val/")
    assert protocol["threshold"]["val"] == metrics["val/threshold"]
    assert protocol["perturbation"] == "clean"
    assert protocol["bootstrap"] == {"resamples": 1000, "seed": 0, "level": 0.95}
    assert {"deepfake_detection", "torch", "torchvision", "python"} <= set(protocol["versions"])
    # Run from this checkout: its commit is recorded.
    assert protocol["git"] is None or len(protocol["git"]["commit"]) == 40
    for key in ("test/auroc", "test/ap", "test/acc", "test/acc@val"):
        low, high = metrics[f"{key}_ci"]
        assert low <= metrics[key] <= high
    assert "test/tpr@fpr0.01" in metrics and "val/auroc_ci" in metrics
    assert set(metrics["val/operating_points"]) == set(STANDARD_RULES)
    assert set(metrics["test/operating_points"]) == {*STANDARD_RULES, "fixed:0.5"}


def test_evaluate_records_the_same_fingerprint_for_the_same_files(
    tiny_run: Path, tmp_path: Path
) -> None:
    trained = json.loads((tiny_run / "metrics.json").read_text())["protocol"]
    same = run_evaluate([f"ckpt_path={tiny_run}"], tmp_path / "same")
    assert same["protocol"]["data"]["fingerprint"] == trained["data"]["fingerprint"]
    assert same["protocol"]["preprocessing"] == trained["preprocessing"]
    assert same["protocol"]["validation"]["fingerprint"] == trained["validation"]["fingerprint"]
    # Bootstrap intervals are seeded: the same split gives the same interval.
    assert (
        same["test/auroc_ci"]
        == json.loads((tiny_run / "metrics.json").read_text())["test/auroc_ci"]
    )
    # One file rewritten: another fingerprint.
    moved = tmp_path / "data"
    shutil.copytree(tiny_run.parent / "data", moved)
    write_image(moved / "test" / "Real" / "000.png", 0, np.random.default_rng(7), 40)
    other = run_evaluate([f"ckpt_path={tiny_run}", f"data.root={moved}"], tmp_path / "other")
    assert other["protocol"]["data"]["fingerprint"] != trained["data"]["fingerprint"]
    assert other["protocol"]["data"]["files"] == trained["data"]["files"]


def test_val_fpr_allows_at_most_that_share_of_validation_false_positives(
    tiny_run: Path, tmp_path: Path
) -> None:
    metrics = run_evaluate(
        [f"ckpt_path={tiny_run}", "threshold=val_fpr:0.2", "data.split=val"], tmp_path / "out"
    )
    assert metrics["threshold/rule"] == "val_fpr:0.2"
    reals = metrics["val/fp"] + metrics["val/tn"]
    assert metrics["val/fp"] <= 0.2 * reals
    points = metrics["operating_points"]
    assert points["val_fpr:0.2"]["threshold"] == metrics["threshold"]
    assert points["val_fpr:0.01"]["fpr"] == 0.0  # 6 reals: 1 % allows none
    assert metrics["protocol"]["threshold"] == {
        "rule": "val_fpr:0.2",
        "value": metrics["threshold"],
    }


@pytest.mark.parametrize("layout", ["class folder", "data.label"])
def test_a_real_only_folder_reports_its_false_positive_rate_with_an_interval(
    tiny_run: Path, tmp_path: Path, layout: str
) -> None:
    if layout == "class folder":
        root = make_tree(tmp_path / "photos", {"Real": 9}, seed=3)
        extra = []
    else:
        root = make_tree(tmp_path / "photos", {"holiday": 5, "work/2024": 4}, seed=3)
        extra = ["data.label=real"]
    metrics = run_evaluate([f"ckpt_path={tiny_run}", f"data.root={root}", *extra], tmp_path / "o")
    assert metrics["one_class"] == "real" and metrics["data/images"] == 9
    figures = {path.name for path in (tmp_path / "o" / "figures").iterdir()}
    assert "score_histogram.png" in figures and "roc_curve.png" not in figures
    assert metrics["test/auroc"] is None  # no ranking without both classes
    points = metrics["operating_points"]
    assert set(points) == {*STANDARD_RULES, "fixed:0.5"}
    for point in points.values():
        assert point["reals"] == 9 and point["fakes"] == 0 and point["tpr"] is None
        assert point["fpr"] == point["false_positives"] / 9
        low, high = point["fpr_ci"]
        assert 0 <= low <= point["fpr"] <= high <= 1 and high - low > 0.1  # 9 images: wide


def test_a_fake_only_folder_reports_its_detection_rate(tiny_run: Path, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "fakes", {"1_fake": 7}, seed=5)
    metrics = run_evaluate([f"ckpt_path={tiny_run}", f"data.root={root}"], tmp_path / "o")
    assert metrics["one_class"] == "fake"
    point = metrics["operating_points"]["val"]
    assert point["fakes"] == 7 and point["fpr"] is None
    assert point["tpr_ci"][0] <= point["tpr"] <= point["tpr_ci"][1]


def test_one_class_needs_no_stray_folder_beside_it(tiny_run: Path, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "odd", {"Real": 3, "Genuine": 3})
    with pytest.raises(UserInputError, match="missing the Fake/ class folder"):
        run_evaluate([f"ckpt_path={tiny_run}", f"data.root={root}"], tmp_path / "o")


def test_robustness_writes_metrics_with_intervals_and_its_protocol(
    tiny_run: Path, tmp_path: Path
) -> None:
    robustness(
        compose_config("robustness", [f"ckpt_path={tiny_run}", *ONE_JPEG_ROW], tmp_path / "r")
    )
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert [row["perturbation"] for row in metrics["rows"]] == ["clean", "jpeg"]
    assert metrics["protocol"]["perturbation"] == ["clean", "jpeg 50"]
    for row in metrics["rows"]:
        assert row["auroc_ci"][0] <= row["auroc"] <= row["auroc_ci"][1]


@pytest.mark.slow
def test_compare_does_not_rank_runs_scored_on_different_splits(
    tiny_run: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, capsys
) -> None:
    other = _train_tiny(
        tmp_path_factory,
        "other_split",
        {"train": 12, "valid": 6, "test": 8},
        ["model.widths=[4,8]", "trainer.max_epochs=1"],
    )
    runs = tmp_path / "runs"
    shutil.copytree(tiny_run, runs / "a")
    shutil.copytree(other, runs / "b")
    result = compare_runs([runs], tmp_path / "cmp", plots=False)
    assert result.best is None and len(result.bests) == 2
    assert "data.fingerprint" in result.report
    assert result.report.count("★") >= 2
    assert main([str(runs), "--no-plots", "compare.mixed_protocols=allow"]) == 0
    assert "ranked together" in capsys.readouterr().out


@pytest.fixture(scope="module")
def exported(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    export(compose_config("export", [f"ckpt_path={tiny_run}", "format=torch_export"], out))
    return out / "model.pt2"


def test_an_export_carries_its_operating_points_and_protocol(exported: Path) -> None:
    spec = json.loads(exported.with_suffix(".json").read_text())
    assert set(spec["operating_points"]) == set(STANDARD_RULES)
    assert spec["operating_points"]["val"]["threshold"] == pytest.approx(spec["threshold"])
    assert spec["protocol"]["data"]["split"] == "val"
    assert spec["protocol"]["preprocessing"]["image_size"] == 32


def test_serve_lists_operating_points_and_a_request_may_choose_one(
    exported: Path, tiny_run: Path, tmp_path: Path
) -> None:
    served = load_detector(
        compose_config("serve", [f"ckpt_path={exported}", "operating_point=val_fpr:0.01"], tmp_path)
    )
    points = json.loads(exported.with_suffix(".json").read_text())["operating_points"]
    assert served.threshold == pytest.approx(points["val_fpr:0.01"]["threshold"])
    with TestClient(create_app(served, ServiceSettings())) as client:
        _ask_for_points(client, points, tiny_run)
    # An export knows the points it recorded, and names them when asked for another.
    with pytest.raises(ConfigError, match="has no such point.*val_fpr:0.01"):
        load_detector(
            compose_config(
                "serve", [f"ckpt_path={exported}", "operating_point=val_tpr:0.5"], tmp_path
            )
        )


def _ask_for_points(client: TestClient, points: dict, tiny_run: Path) -> None:
    info = client.get("/info").json()
    assert info["threshold_rule"] == "val_fpr:0.01"
    assert set(info["operating_points"]) == set(STANDARD_RULES)
    image = next((tiny_run.parent / "data" / "test" / "Fake").glob("*.png"))
    files = [("files", (image.name, image.read_bytes(), "image/png"))]
    asked = client.post("/predict?operating_point=val_tpr:0.95", files=files).json()
    assert asked["threshold"] == pytest.approx(points["val_tpr:0.95"]["threshold"])
    assert asked["operating_point"] == "val_tpr:0.95"
    result = asked["results"][0]
    assert result["label"] == ("Fake" if result["prob_fake"] > asked["threshold"] else "Real")
    unknown = client.post("/predict?operating_point=val_fpr:0.05", files=files)
    assert unknown.status_code == 422 and "val_fpr:0.01" in unknown.json()["detail"]


def test_an_export_is_served_at_its_own_threshold_old_exports_included(
    tiny_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    overrides = [f"ckpt_path={tiny_run}", "format=torch_export", "threshold=val_tpr:0.95"]
    export(compose_config("export", overrides, out))
    model = out / "model.pt2"
    spec = json.loads(model.with_suffix(".json").read_text())
    served = load_detector(compose_config("serve", [f"ckpt_path={model}"], tmp_path / "s"))
    assert (served.threshold, served.threshold_rule) == (spec["threshold"], "val_tpr:0.95")
    # Asked for by name, its own rule gives its own threshold; `val` its recorded point.
    asked = load_detector(
        compose_config("serve", [f"ckpt_path={model}", "threshold=val"], tmp_path)
    )
    assert asked.threshold == spec["operating_points"]["val"]["threshold"]
    # An export written before operating points were recorded: its rule had another name.
    for key in ("operating_points", "protocol"):
        spec.pop(key)
    spec["threshold_rule"] = "youden_j"
    model.with_suffix(".json").write_text(json.dumps(spec))
    old = load_detector(compose_config("serve", [f"ckpt_path={model}"], tmp_path / "old"))
    assert (old.threshold, old.threshold_rule, old.operating_points) == (
        spec["threshold"],
        "val",
        None,
    )
    again = load_detector(
        compose_config("serve", [f"ckpt_path={model}", "threshold=val"], tmp_path)
    )
    assert again.threshold == spec["threshold"]
    with TestClient(create_app(old, ServiceSettings())) as client:
        image = next((tiny_run.parent / "data" / "test" / "Fake").glob("*.png"))
        files = [("files", (image.name, image.read_bytes(), "image/png"))]
        refused = client.post("/predict?operating_point=val_fpr:0.010", files=files)
        detail = refused.json()["detail"]
        assert refused.status_code == 422 and detail.count("operating_point=") == 1
        assert "none recorded" in detail
        assert client.post("/predict?operating_point=val_fpr", files=files).status_code == 422
        explained = client.post("/explain?operating_point=val", files=files)
        assert explained.status_code == 200, explained.text
        assert explained.headers["X-Threshold"] == repr(spec["threshold"])


def test_data_label_needs_a_folder_of_its_own(tiny_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.label=real: give data.root="):
        run_evaluate([f"ckpt_path={tiny_run}", "data.label=real"], tmp_path / "o")


def test_git_state_says_when_it_cannot_tell(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from deepfake_detection.reports import protocol

    real_run = subprocess.run

    def slow_status(args, **kwargs):
        if "status" in args:
            raise subprocess.TimeoutExpired(args, kwargs.get("timeout", 0))
        return real_run(args, **kwargs)

    protocol.git_state.cache_clear()
    monkeypatch.setattr(protocol.subprocess, "run", slow_status)
    try:
        state = protocol.git_state()
    finally:
        protocol.git_state.cache_clear()
    assert state is None or state["dirty"] is None  # None: not run from a checkout


def test_predict_takes_an_operating_point(tiny_run: Path, tmp_path: Path) -> None:
    images = tiny_run.parent / "data" / "test"
    PREDICT.run(
        compose_config(
            "predict",
            [f"ckpt_path={tiny_run}", f"input={images}", "operating_point=val_fpr:0.01"],
            tmp_path,
        )
    )
    summary = json.loads((tmp_path / "predict.json").read_text())
    assert summary["threshold/rule"] == "val_fpr:0.01"
    assert summary["threshold"] == pytest.approx(
        summary["operating_points"]["val_fpr:0.01"]["threshold"]
    )
