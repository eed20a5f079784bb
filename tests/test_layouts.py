"""Dataset layouts: class folder aliases, flat roots split by hash, nested sources, file lists."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import compose_config, compose_train, make_tree, run_cli, write_image
from deepfake_detection.commands import EVALUATE
from deepfake_detection.data.discovery import discover
from deepfake_detection.data.layout import ClassAliases
from deepfake_detection.data.splitting import read_split_lists, split_of, write_split_lists
from deepfake_detection.errors import ConfigError, DatasetError
from deepfake_detection.metrics.per_source import per_source_metrics
from deepfake_detection.metrics.predictions import Predictions

evaluate = EVALUATE.run  # the command: its config checked, then run

#: A CNNDetection-style test folder: generators, some with categories, one with fakes only.
SOURCES = {
    "progan/car/1_fake": 3,
    "progan/car/0_real": 3,
    "progan/cat/1_fake": 2,
    "progan/cat/0_real": 2,
    "stylegan/1_fake": 4,
    "stylegan/0_real": 4,
    "whichfaceisreal/1_fake": 2,
}

SOURCES_NAMES = ("progan", "stylegan", "whichfaceisreal")


def _relative(index, split: str) -> list[str]:
    return sorted(p.relative_to(index.root).as_posix() for p, _ in index.splits[split])


@pytest.mark.parametrize(
    ("fake", "real"),
    [("Fake", "Real"), ("fake", "real"), ("1_fake", "0_real"), ("training_fake", "TRAINING_REAL")],
)
def test_default_class_aliases_any_case_with_fake_positive(tmp_path: Path, fake, real) -> None:
    root = make_tree(
        tmp_path, {f"train/{fake}": 4, f"train/{real}": 3, f"test/{fake}": 2, f"test/{real}": 2}
    )
    index = discover(root)
    for path, label in index.splits["train"] + index.splits["val"]:
        assert label == (1 if path.parent.name == fake else 0)
    assert index.counts()["test"] == {"Real": 2, "Fake": 2}


def test_configured_aliases_replace_the_defaults(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"test/synthetic": 2, "test/Authentic": 3})
    aliases = {"fake": ["synthetic"], "real": ["authentic"]}
    index = discover(root, required=["test"], class_aliases=aliases)
    assert index.counts()["test"] == {"Real": 3, "Fake": 2}
    with pytest.raises(DatasetError, match="no class folders"):
        discover(root, required=["test"])


def test_two_aliases_of_one_class_in_a_folder_is_one_error(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"test/Fake": 1, "test/1_fake": 1, "test/Real": 1})
    with pytest.raises(DatasetError, match=r"2 folders name the Fake class \(1_fake, Fake\)"):
        discover(root, required=["test"])


def test_an_alias_of_both_classes_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="data.class_aliases: images would name both classes"):
        ClassAliases.from_config({"fake": ["images", "fake"], "real": ["Images"]})


def test_a_flat_root_is_split_by_the_hash_of_each_path(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"Fake": 40, "Real": 40})
    index = discover(root, seed=5, split_fractions=[0.6, 0.2, 0.2])
    assert list(index.splits) == ["train", "val", "test"]
    assert index.layout == "flat" and set(index.derived) == {"train", "val", "test"}
    for split, samples in index.splits.items():
        for path, _ in samples:
            assert split_of(path.relative_to(root).as_posix(), 5, (0.6, 0.2, 0.2)) == split
    # Stratified: every split holds both classes, near the asked fractions.
    counts = index.counts()
    assert all(min(c.values()) > 0 for c in counts.values())
    assert 16 <= counts["train"]["Fake"] <= 32 and 16 <= counts["train"]["Real"] <= 32
    # The seed picks the split; the same seed gives the same one.
    assert discover(root, seed=5, split_fractions=[0.6, 0.2, 0.2]).splits == index.splits
    assert discover(root, seed=6, split_fractions=[0.6, 0.2, 0.2]).splits != index.splits


def test_the_hash_split_is_fixed_by_the_path_alone() -> None:
    # The same on any machine: pinned values, not recomputed ones.
    assert split_of("Fake/000.png", 42, (0.8, 0.1, 0.1)) == split_of(
        "fake/000.png", 42, (0.8, 0.1, 0.1)
    )
    decomposed, composed = "Real/e\u0301.png", "Real/\u00e9.png"
    assert split_of(decomposed, 1, (0.5, 0.25, 0.25)) == split_of(composed, 1, (0.5, 0.25, 0.25))
    positions = [split_of(f"Fake/{i:03d}.png", 42, (0.8, 0.1, 0.1)) for i in range(8)]
    assert positions == ["train", "val", "train", "train", "train", "train", "val", "val"]
    # A fake and the real image of the same name share a split, whatever the folder names.
    for i in range(20):
        fake = split_of(f"progan/1_fake/{i}.png", 3, (0.5, 0.25, 0.25))
        assert fake == split_of(f"progan/0_real/{i}.png", 3, (0.5, 0.25, 0.25))
        assert fake == split_of(f"progan/Real/{i}.png", 3, (0.5, 0.25, 0.25))


def test_adding_images_never_moves_existing_ones(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", {"Fake": 30, "Real": 30})
    before = discover(root)
    make_tree(tmp_path / "new", {"Fake": 20, "Real": 20}, seed=9)
    for path in (tmp_path / "new").rglob("*.png"):
        path.rename(root / path.parent.name / f"added_{path.name}")
    after = discover(root)
    for split in ("train", "val", "test"):
        old = set(_relative(before, split))
        new = set(_relative(after, split))
        assert old <= new
        assert all(p.split("/")[1].startswith("added_") for p in new - old)


def test_a_flat_root_is_one_split_when_one_is_scored(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"Fake": 3, "Real": 2})
    index = discover(root, required=["test"])
    assert list(index.splits) == ["test"] and len(index.splits["test"]) == 5
    assert not index.derived


def test_a_flat_root_too_small_for_its_fractions_says_so(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"Fake": 2, "Real": 2})
    with pytest.raises(DatasetError, match=r"split_fractions=.* left the \w+ split with no"):
        discover(root)


def test_sources_are_the_first_folder_levels_below_the_split(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {f"test/{k}": v for k, v in SOURCES.items()})
    index = discover(root, required=["test"])
    assert index.split_sources("test") == ["progan", "stylegan", "whichfaceisreal"]
    assert index.counts()["test"] == {"Real": 9, "Fake": 11}
    deeper = discover(root, required=["test"], source_depth=2)
    assert deeper.split_sources("test") == [
        "progan/car",
        "progan/cat",
        "stylegan",
        "whichfaceisreal",
    ]


def test_a_cnndetection_test_folder_is_one_split_of_sources(tmp_path: Path) -> None:
    root = make_tree(tmp_path, SOURCES)
    index = discover(root, required=["test"])
    assert index.layout == "flat"
    assert index.split_sources("test") == ["progan", "stylegan", "whichfaceisreal"]


def test_class_folders_beside_source_folders_are_a_mixed_layout(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path,
        {"test/1_fake": 1, "test/0_real": 1, "test/progan/1_fake": 1, "test/progan/0_real": 1},
    )
    with pytest.raises(DatasetError, match="mixed layout.*1_fake.*progan"):
        discover(root, required=["test"])


def test_split_folders_beside_class_folders_are_a_mixed_layout(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"train/Fake": 2, "train/Real": 2, "Fake": 1, "Real": 1})
    with pytest.raises(
        DatasetError, match=r"mixed layout: split folders \(train\) and class folders"
    ):
        discover(root)


def test_no_class_folders_names_what_was_found_and_the_fix(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"train/fakes": 1, "train/reals": 1, "test/fakes": 1})
    with pytest.raises(DatasetError) as error:
        discover(root)
    message = str(error.value)
    assert "found: fakes, reals" in message
    assert "data.class_aliases" in message and "<root>/<split>/{Fake,Real}/" in message


def test_a_split_needs_both_classes_somewhere(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"test/a/1_fake": 2, "test/b/1_fake": 2})
    with pytest.raises(DatasetError, match="missing the Real/ class folder"):
        discover(root, required=["test"])


def test_split_lists_pin_the_files_even_after_more_are_added(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", {"Fake": 30, "Real": 30})
    index = discover(root)
    write_split_lists(tmp_path / "run", root, index.derived, index.derived_how)
    lists = read_split_lists(tmp_path / "run" / "splits")
    assert lists["test"] == _relative(index, "test")
    for i in range(5):
        write_image(root / "Fake" / f"new_{i}.png", 1, np.random.default_rng(i))
    pinned = discover(root, split_lists=tmp_path / "run" / "splits")
    for split in ("train", "val", "test"):
        assert _relative(pinned, split) == _relative(index, split)
    # Scoring one split of the run's own root: exactly its listed files.
    test_only = discover(root, required=["test"], split_lists=tmp_path / "run" / "splits")
    assert _relative(test_only, "test") == _relative(index, "test")


def test_a_listed_file_that_is_gone_is_an_error(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", {"Fake": 30, "Real": 30})
    index = discover(root)
    write_split_lists(tmp_path / "run", root, index.derived, index.derived_how)
    index.splits["test"][0][0].unlink()
    with pytest.raises(DatasetError, match=r"1 file\(s\) of test.txt are not in the dataset"):
        discover(root, split_lists=tmp_path / "run" / "splits")


def test_per_source_metrics_and_their_mean() -> None:
    paths = ("a/1", "a/2", "a/3", "a/4", "b/1", "b/2", "c/1")
    sources = {p: p.split("/")[0] for p in paths}
    probs = torch.tensor([0.9, 0.8, 0.2, 0.6, 0.7, 0.4, 0.3])
    targets = torch.tensor([1, 1, 0, 0, 1, 0, 1])
    result = per_source_metrics(Predictions(probs, targets, paths), sources, 0.5)
    a, b, c = (result["sources"][name] for name in "abc")
    assert (a["images"], a["fake"], a["real"]) == (4, 2, 2)
    assert a["acc"] == 0.75 and a["ap"] == pytest.approx(1.0) and a["note"] is None
    assert b["acc"] == 1.0
    assert c["acc"] == 0.0 and math.isnan(c["ap"]) and "only Fake" in c["note"]
    mean = result["mean"]
    assert mean["acc"] == pytest.approx((0.75 + 1.0 + 0.0) / 3)
    assert mean["ap"] == pytest.approx((a["ap"] + b["ap"]) / 2)
    assert mean["sources"] == 3 and mean["sources_with_both_classes"] == 2
    assert per_source_metrics(Predictions(probs, targets, paths), {}, 0.5) is None


# --- the commands on these layouts ------------------------------------------------------------


def _csv_paths(path: Path) -> list[str]:
    return sorted(Predictions.load_csv(path).paths)


@pytest.fixture(scope="module")
def flat_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run trained on a flat Fake/Real folder (`<run>/../flat`)."""
    from deepfake_detection.commands import TRAIN

    train = TRAIN.run  # the command: its config checked, then run

    base = tmp_path_factory.mktemp("flat_run")
    root = make_tree(base / "flat", {"training_fake": 24, "training_real": 24})
    overrides = [
        f"data.root={root}",
        "data.image_size=32",
        "data.batch_size=8",
        "data.split_fractions=[0.6,0.2,0.2]",
        "model.widths=[4,8]",
        "trainer.max_epochs=1",
        "early_stopping=none",
    ]
    train(compose_train(overrides, base / "run"))
    return base / "run"


@pytest.mark.slow
def test_a_flat_root_trains_and_records_its_split(flat_run: Path) -> None:
    root = flat_run.parent / "flat"
    lists = read_split_lists(flat_run / "splits")
    assert sorted(lists) == ["test", "train", "val"]
    assert sum(len(v) for v in lists.values()) == 48
    for split, listed in lists.items():
        assert all(split_of(p, 42, (0.6, 0.2, 0.2)) == split for p in listed)
    tested = _csv_paths(flat_run / "predictions" / "test.csv")
    assert tested == sorted(str(root / p) for p in lists["test"])
    header = (flat_run / "splits" / "test.txt").read_text().splitlines()[0]
    assert header.startswith(f"# test split of {root}:") and "seed 42" in header


@pytest.mark.slow
def test_evaluate_scores_the_recorded_split_of_its_own_flat_root(
    flat_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    shutil.copytree(flat_run, run)
    root = flat_run.parent / "flat"
    # Fewer files than the hash would give: only the lists can say which.
    listed = read_split_lists(run / "splits")["test"]
    listed = listed[:2] + listed[-2:]
    (run / "splits" / "test.txt").write_text("\n".join(listed) + "\n")
    extra = root / "training_fake" / "zz_added_later.png"
    write_image(extra, 1, np.random.default_rng(1))
    try:
        for overrides in ([], [f"data.root={root}"]):
            out = tmp_path / f"eval{len(overrides)}"
            metrics = run_evaluate([f"ckpt_path={run}", *overrides], out)
            assert _csv_paths(out / "predictions" / "test.csv") == sorted(
                str(root / p) for p in listed
            )
            assert metrics["data/images"] == len(listed)
        # The same data moved: scored whole, with a warning naming the fix.
        moved = tmp_path / "moved"
        shutil.copytree(root, moved)
        with caplog.at_level(logging.WARNING):
            run_evaluate([f"ckpt_path={run}", f"data.root={moved}"], tmp_path / "moved_eval")
        assert "have the paths of this run's training images" in caplog.text
        assert f"data.split_lists={run / 'splits'}" in caplog.text
        # Another flat folder is scored whole: it is not the run's data.
        other = make_tree(tmp_path / "other", {"Fake": 2, "Real": 3})
        metrics = run_evaluate([f"ckpt_path={run}", f"data.root={other}"], tmp_path / "other_eval")
        assert metrics["data/images"] == 5 and "per_source" not in metrics
    finally:
        extra.unlink()


@pytest.mark.slow
def test_resume_keeps_the_recorded_split(flat_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(flat_run, run)
    val = read_split_lists(run / "splits")["val"]  # sorted: Fake first
    (run / "splits" / "val.txt").write_text("\n".join(val[:2] + val[-2:]) + "\n")
    result = run_cli([f"resume={run}", "trainer.max_epochs=2"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "read from data.split_lists" in result.stdout + result.stderr
    assert len(Predictions.load_csv(run / "predictions" / "val.csv")) == 4


def run_evaluate(overrides: list[str], output_dir: Path) -> dict:
    evaluate(compose_config("evaluate", overrides, output_dir))
    return json.loads((output_dir / "metrics.json").read_text())


def test_evaluate_reports_per_source_metrics(tiny_run: Path, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "cnn_test", SOURCES)
    out = tmp_path / "eval"
    metrics = run_evaluate([f"ckpt_path={tiny_run}", f"data.root={root}"], out)
    per_source = metrics["per_source"]
    assert sorted(per_source["sources"]) == ["progan", "stylegan", "whichfaceisreal"]
    assert per_source["sources"]["progan"]["images"] == 10
    only_fake = per_source["sources"]["whichfaceisreal"]
    assert only_fake["ap"] is None and "only Fake" in only_fake["note"]
    # The same numbers as recomputed from the per-image scores.
    predictions = Predictions.load_csv(out / "predictions" / "test.csv")
    index = discover(root, required=["test"])
    again = per_source_metrics(predictions, index.sources, metrics["threshold"])
    for name, row in again["sources"].items():
        for key in ("acc", "ap", "auroc"):
            expected = row[key]
            got = per_source["sources"][name][key]
            assert (got is None and math.isnan(expected)) or got == pytest.approx(expected)
    assert per_source["mean"]["ap"] == pytest.approx(again["mean"]["ap"])
    lines = (out / "per_source.csv").read_text().splitlines()
    assert lines[0].startswith("source,images,fake,real,ap,auroc,acc")
    assert [line.split(",")[0] for line in lines[1:]] == [*sorted(SOURCES_NAMES), "mean"]
    table = (out / "per_source.md").read_text()
    assert "| **mean** |" in table and "only Fake images" in table
    assert (out / "figures" / "per_source.png").read_bytes()[:4] == b"\x89PNG"


def test_robustness_reports_every_condition_per_source(tiny_run: Path, tmp_path: Path) -> None:
    from deepfake_detection.commands import ROBUSTNESS

    robustness = ROBUSTNESS.run  # the command: its config checked, then run

    root = make_tree(tmp_path / "cnn_test", SOURCES)
    grid = ["~grid.blur", "~grid.resize", "~grid.noise", "grid.jpeg=[50]", "threshold=0.5"]
    overrides = [f"ckpt_path={tiny_run}", f"data.root={root}", *grid]
    robustness(compose_config("robustness", overrides, tmp_path / "out"))
    lines = (tmp_path / "out" / "per_source.csv").read_text().splitlines()
    assert lines[0].startswith("perturbation,severity,source,images")
    conditions = [tuple(line.split(",")[:3]) for line in lines[1:]]
    assert conditions[:4] == [("clean", "", name) for name in SOURCES_NAMES] + [
        ("clean", "", "mean")
    ]
    assert conditions[4:] == [("jpeg", "50", name) for name in (*SOURCES_NAMES, "mean")]
    table = (tmp_path / "out" / "per_source.md").read_text()
    assert "| source | clean | jpeg 50 |" in table


@pytest.mark.slow
def test_training_with_source_folders_reports_test_metrics_per_source(tmp_path: Path) -> None:
    from deepfake_detection.commands import TRAIN

    train = TRAIN.run  # the command: its config checked, then run

    folders = {"train/Fake": 8, "train/Real": 8, "val/Fake": 3, "val/Real": 3}
    folders.update({f"test/{k}": v for k, v in SOURCES.items()})
    root = make_tree(tmp_path / "data", folders)
    overrides = [
        f"data.root={root}",
        "data.image_size=32",
        "data.batch_size=8",
        "model.widths=[4]",
        "trainer.max_epochs=1",
        "early_stopping=none",
    ]
    train(compose_train(overrides, tmp_path / "run"))
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert sorted(saved["per_source"]["sources"]) == list(SOURCES_NAMES)
    assert (tmp_path / "run" / "per_source.md").is_file()
    assert (tmp_path / "run" / "figures" / "per_source.png").is_file()
    assert not (tmp_path / "run" / "splits").exists()  # every split came from a folder


def test_a_root_that_is_a_class_folder_says_to_point_above_it(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"Fake": 2, "Real": 2})
    with pytest.raises(DatasetError, match="Fake is itself a class folder: point data.root at"):
        discover(root / "Fake")


def test_a_flat_root_named_like_a_split_is_split_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_tree(tmp_path / "Train", {"Fake": 40, "Real": 40})
    with caplog.at_level(logging.WARNING):
        index = discover(root)
    assert list(index.splits) == ["train", "val", "test"]
    assert "is named like one split of a dataset" in caplog.text


def test_split_lists_must_not_share_files(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", {"Fake": 30, "Real": 30})
    index = discover(root)
    write_split_lists(tmp_path / "run", root, index.derived, index.derived_how)
    lists = tmp_path / "run" / "splits"
    leaked = read_split_lists(lists)["train"][0]
    with (lists / "test.txt").open("a") as handle:
        handle.write(leaked + "\n")
    with pytest.raises(DatasetError, match=f"{leaked} is listed in both train.txt and test.txt"):
        discover(root, split_lists=lists)
    (lists / "test.txt").unlink()
    with pytest.raises(DatasetError, match="has no test.txt, which this command needs"):
        discover(root, split_lists=lists)


def test_two_links_to_one_source_folder_are_two_sources(tmp_path: Path) -> None:
    make_tree(tmp_path / "target", {"1_fake": 2, "0_real": 2})
    root = tmp_path / "test_set"
    root.mkdir()
    (root / "gan1").symlink_to(tmp_path / "target")
    (root / "gan2").symlink_to(tmp_path / "target")
    (root / "gan2" / "loop").symlink_to(root)  # a link back up the tree is not followed
    index = discover(root, required=["test"])
    assert index.split_sources("test") == ["gan1", "gan2"]
    assert len(index.splits["test"]) == 8
