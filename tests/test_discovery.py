from pathlib import Path

import pytest

from conftest import KAGGLE_SPLITS, LOWERCASE_SPLITS, make_dataset
from deepfake_detection.data.discovery import discover
from deepfake_detection.errors import DatasetError


@pytest.mark.parametrize("layout", [KAGGLE_SPLITS, LOWERCASE_SPLITS], ids=["Kaggle", "lowercase"])
def test_discovers_both_layouts(tmp_path: Path, layout: dict[str, int]) -> None:
    index = discover(make_dataset(tmp_path, layout))
    assert list(index.splits) == ["train", "val", "test"]
    assert index.counts() == {
        "train": {"Real": 8, "Fake": 8},
        "val": {"Real": 4, "Fake": 4},
        "test": {"Real": 4, "Fake": 4},
    }
    assert not index.val_carved


@pytest.mark.parametrize("names", [("Fake", "Real"), ("fake", "real"), ("REAL", "FAKE")])
def test_fake_is_label_one_whatever_the_case_and_order(tmp_path: Path, names) -> None:
    index = discover(make_dataset(tmp_path, {"train": 2, "val": 1, "TEST": 1}, classes=names))
    for path, label in index.splits["train"]:
        assert label == (1 if path.parent.name.lower() == "fake" else 0)
    assert {label for _, label in index.splits["test"]} == {0, 1}


@pytest.mark.parametrize("alias", ["valid", "val", "validation", "Validation", "VAL"])
def test_validation_aliases(tmp_path: Path, alias: str) -> None:
    index = discover(make_dataset(tmp_path, {"train": 2, alias: 1, "test": 1}))
    assert len(index.splits["val"]) == 2


def test_carves_stratified_seeded_validation_when_missing(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, {"train": 20, "test": 2})
    first = discover(root, val_fraction=0.2, seed=3)
    again = discover(root, val_fraction=0.2, seed=3)
    other = discover(root, val_fraction=0.2, seed=4)
    assert first.val_carved
    assert first.counts()["val"] == {"Real": 4, "Fake": 4}
    assert first.counts()["train"] == {"Real": 16, "Fake": 16}
    assert first.splits["val"] == again.splits["val"]
    assert first.splits["val"] != other.splits["val"]
    assert not set(first.splits["val"]) & set(first.splits["train"])


def test_accepts_image_extensions_only_and_skips_hidden_files(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, {"train": 1, "valid": 1, "test": 1})
    fake_dir = root / "train" / "Fake"
    for name in ("a.JPG", "b.jpeg", "c.webp", "d.bmp"):
        (fake_dir / name).write_bytes((fake_dir / "000.png").read_bytes())
    (fake_dir / "notes.txt").write_text("not an image")
    (fake_dir / ".hidden.png").write_bytes(b"")
    names = sorted(p.name for p, _ in discover(root).splits["train"] if p.parent == fake_dir)
    assert names == ["000.png", "a.JPG", "b.jpeg", "c.webp", "d.bmp"]


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"data.root=.*nope.*no such directory"):
        discover(tmp_path / "nope")


def test_missing_class_folder(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, {"train": 1, "valid": 1, "test": 1}, classes=["Fake"])
    with pytest.raises(DatasetError, match=r"missing the Real/ class folder"):
        discover(root)


def test_empty_split(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, {"train": 1, "valid": 1, "test": 1})
    for image in (root / "test" / "Real").iterdir():
        image.unlink()
    with pytest.raises(DatasetError, match=r"test/Real: empty split"):
        discover(root)


def test_missing_test_split(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, {"train": 1, "valid": 1})
    with pytest.raises(DatasetError, match=r"missing the test split"):
        discover(root)


def test_ambiguous_split_folders(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, {"train": 1, "val": 1, "valid": 1, "test": 1})
    with pytest.raises(DatasetError, match=r"several folders could be the val split"):
        discover(root)


def test_carving_needs_two_training_images_per_class(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, {"train": 1, "test": 1})
    with pytest.raises(
        DatasetError, match=r"cannot carve a validation split: the train Real/ folder has 1"
    ):
        discover(root)


def test_finds_images_in_nested_folders_but_not_hidden_ones(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, {"train": 1, "valid": 1, "test": 1})
    image = (root / "train" / "Real" / "000.png").read_bytes()
    for folder in ("batch_2", ".cache"):
        (root / "train" / "Real" / folder).mkdir()
        (root / "train" / "Real" / folder / "x.png").write_bytes(image)
    names = sorted(str(p.relative_to(root)) for p, y in discover(root).splits["train"] if y == 0)
    assert names == ["train/Real/000.png", "train/Real/batch_2/x.png"]
