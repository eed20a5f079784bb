"""`deepfake-audit`: counts, bad and stray files, exact and near duplicates, and leakage."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image

from conftest import make_dataset, write_image
from deepfake_detection.auditing import AuditSettings, audit, run_audit
from deepfake_detection.auditing.duplicates import hamming_pairs, popcount
from deepfake_detection.config import config_dir, register_resolvers
from deepfake_detection.data.discovery import discover
from deepfake_detection.errors import ConfigError, DatasetError

SPLITS = {"Train": 6, "Validation": 3, "Test": 3}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data", SPLITS, size=64)


def _audit(root: Path, **options) -> dict:
    report = run_audit(root, workers=0, **options)
    return report.to_json()


def compose_audit(overrides: list[str], output_dir: Path) -> DictConfig:
    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("audit", overrides=[f"paths.output_dir={output_dir}", *overrides])


def test_clean_dataset_is_counted_and_has_no_duplicates(root: Path) -> None:
    result = _audit(root)
    assert result["splits"] == ["train", "val", "test"]
    assert result["counts"] == {
        "train": {"Fake": 6, "Real": 6, "total": 12},
        "val": {"Fake": 3, "Real": 3, "total": 6},
        "test": {"Fake": 3, "Real": 3, "total": 6},
    }
    assert result["image_sizes"]["overall"] == {"64x64": 24}
    assert result["image_modes"]["by_split"]["val"]["Fake"] == {"RGB": 3}
    summary = result["summary"]
    assert summary["images"] == summary["readable"] == 24
    assert summary["exact_groups"] == summary["near_pairs"] == summary["unreadable"] == 0
    assert summary["imbalanced_splits"] == []
    assert summary["leakage"] is False
    assert summary["verdict"] == "No leakage found across splits"


def test_exact_duplicate_across_splits_is_leakage(root: Path) -> None:
    shutil.copy(root / "Train/Fake/000.png", root / "Test/Fake/copy.png")
    result = _audit(root)
    [group] = result["exact_duplicate_groups"]
    assert [f["path"] for f in group["files"]] == ["Test/Fake/copy.png", "Train/Fake/000.png"]
    assert group["splits"] == ["test", "train"]
    assert group["cross_split"] is True
    assert group["label_conflict"] is False
    assert result["near_duplicate_pairs"] == []  # same bytes: exact, not near
    assert result["summary"]["leakage"] is True
    assert result["summary"]["verdict"].startswith("LEAKAGE: 1 exact-duplicate group(s)")


def test_near_duplicates_across_splits_are_found_and_not_exact(root: Path) -> None:
    original = Image.open(root / "Train/Real/000.png").convert("RGB")
    brighter = np.clip(np.asarray(original, dtype=np.int16) + 2, 0, 255).astype(np.uint8)
    Image.fromarray(brighter).save(root / "Validation/Real/brighter.png")
    original.save(root / "Test/Real/reencoded.jpg", quality=90)
    original.resize((60, 60)).save(root / "Test/Fake/smaller.png")
    result = _audit(root)
    assert result["exact_duplicate_groups"] == []
    pairs = {frozenset((p["a"]["path"], p["b"]["path"])): p for p in result["near_duplicate_pairs"]}
    copies = ["Validation/Real/brighter.png", "Test/Real/reencoded.jpg", "Test/Fake/smaller.png"]
    for copy in copies:
        pair = pairs[frozenset(("Train/Real/000.png", copy))]
        assert pair["cross_split"] is True
        assert pair["distance"] <= 4
        assert pair["label_conflict"] is (copy == "Test/Fake/smaller.png")
    assert result["summary"]["leakage"] is True
    # Nothing else is near anything: random noise images are far apart.
    assert set().union(*pairs) == {"Train/Real/000.png", *copies}


def test_fail_on_exact_ignores_near_copies_and_near_catches_both(root: Path) -> None:
    original = Image.open(root / "Train/Real/000.png").convert("RGB")
    original.save(root / "Test/Real/reencoded.jpg", quality=90)  # near, not exact
    report = run_audit(root, workers=0)
    assert report.leakage and not report.exact_cross_split
    assert report.leaks("near") is True
    assert report.leaks("exact") is False
    shutil.copy(root / "Train/Fake/000.png", root / "Test/Fake/copy.png")
    assert run_audit(root, workers=0).leaks("exact") is True


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], None),
        (["audit.fail_on_leakage=true"], "near"),
        (["audit.fail_on=exact"], "exact"),
        (["audit.fail_on=near"], "near"),
        (["audit.fail_on_leakage=true", "audit.fail_on=exact"], "exact"),
    ],
)
def test_fail_on_setting(root: Path, tmp_path: Path, overrides: list[str], expected) -> None:
    cfg = compose_audit([f"data.root={root}", *overrides], tmp_path / "out")
    assert AuditSettings.from_config(cfg).fail_on == expected


def test_fail_on_near_needs_near_duplicates(root: Path, tmp_path: Path) -> None:
    overrides = [f"data.root={root}", "audit.fail_on=near", "audit.near_duplicates=false"]
    with pytest.raises(ConfigError, match=r"^audit.fail_on=near: near duplicates are not"):
        AuditSettings.from_config(compose_audit(overrides, tmp_path / "out"))


def test_same_bytes_as_fake_and_real_is_a_label_conflict(root: Path) -> None:
    shutil.copy(root / "Train/Fake/001.png", root / "Train/Real/also_real.png")
    result = _audit(root)
    [group] = result["exact_duplicate_groups"]
    assert group["label_conflict"] is True
    assert group["cross_split"] is False
    assert result["summary"]["exact_label_conflict_groups"] == 1
    assert result["summary"]["leakage"] is False


def test_problem_files_are_listed_with_reasons(root: Path) -> None:
    fake = root / "Train/Fake"
    (fake / "empty.jpg").write_bytes(b"")
    (fake / "text.jpg").write_text("not a picture")
    png = (fake / "000.png").read_bytes()
    (fake / "truncated.png").write_bytes(png[: len(png) // 2])
    jpeg = io.BytesIO()
    Image.open(fake / "000.png").save(jpeg, format="JPEG")
    (fake / "truncated.jpeg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (fake / "notes.txt").write_text("labelled by hand")
    (fake / ".DS_Store").write_bytes(b"\0")
    (fake / "Thumbs.db").write_bytes(b"\0")
    write_image(fake / ".cache/hidden.png", 1, np.random.default_rng(5))
    write_image(fake / "sub/deeper/nested.png", 1, np.random.default_rng(6))
    (root / "README.md").write_text("where this came from")
    write_image(root / "Train/loose.png", 0, np.random.default_rng(7))
    write_image(root / "Train/Unsure/x.png", 0, np.random.default_rng(8))

    result = _audit(root)
    reasons = {u["path"]: u["reason"] for u in result["unreadable"]}
    assert set(reasons) == {
        f"Train/Fake/{name}"
        for name in ("empty.jpg", "text.jpg", "truncated.png", "truncated.jpeg")
    }
    assert "empty" in reasons["Train/Fake/empty.jpg"]
    assert "not an image" in reasons["Train/Fake/text.jpg"]
    assert "truncated" in reasons["Train/Fake/truncated.png"]
    assert "truncated" in reasons["Train/Fake/truncated.jpeg"]
    assert result["non_image"] == ["Train/Fake/notes.txt"]
    assert result["stray"] == ["README.md", "Train/Unsure/x.png", "Train/loose.png"]
    assert result["ignored_system_files"] == 3  # .DS_Store, Thumbs.db, the .cache folder
    assert result["counts"]["train"]["Fake"] == 6 + 4 + 1  # the bad ones and the nested one
    assert result["summary"]["readable"] == result["summary"]["images"] - 4
    assert result["exact_duplicate_groups"] == []


def test_a_flat_root_is_audited_as_training_splits_it(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", {".": 12}, classes=("fake", "REAL"), size=64)
    copy = root / "fake" / "copy.png"
    copy.write_bytes((root / "REAL" / "000.png").read_bytes())
    fractions = (0.6, 0.2, 0.2)
    result = _audit(root, near_duplicates=False, seed=7, split_fractions=fractions)
    assert result["splits"] == ["train", "val", "test"]
    assert "flat root" in result["layout"]
    # The split training makes of this root.
    index = discover(root, seed=7, split_fractions=fractions)
    expected = {
        path.relative_to(root).as_posix(): split
        for split, samples in index.splits.items()
        for path, _ in samples
    }
    assert len(expected) == 25
    counts = result["counts"]
    assert sum(counts[s]["total"] for s in ("train", "val", "test")) == 25
    for split in ("train", "val", "test"):
        assert counts[split]["total"] == sum(1 for v in expected.values() if v == split)
    # The copy is leakage exactly when training would put the two files in different splits.
    crosses = expected["fake/copy.png"] != expected["REAL/000.png"]
    assert bool(result["summary"]["exact_cross_split_groups"]) == crosses
    assert result["exact_duplicate_groups"][0]["label_conflict"]


def test_a_root_without_splits_or_classes_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "fakes").mkdir()
    with pytest.raises(DatasetError, match="no class folders .* found: fakes, photos.*fakes look"):
        run_audit(tmp_path, workers=0)


def _brute_force(hashes: np.ndarray, max_distance: int) -> set[tuple[int, int, int]]:
    found = set()
    for i in range(len(hashes)):
        for j in range(i + 1, len(hashes)):
            d = sum(
                bin(int(a) ^ int(b)).count("1") for a, b in zip(hashes[i], hashes[j], strict=True)
            )
            if d <= max_distance:
                found.add((i, j, d))
    return found


@pytest.mark.parametrize("words", [1, 4])
def test_hamming_pairs_match_brute_force_across_blocks(words: int) -> None:
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, (120, words), dtype=np.uint64)
    for k in range(0, 60, 3):  # plant near copies: row k with k % 7 bits flipped in row k + 60
        flips = rng.choice(64 * words, k % 7, replace=False)
        hashes[k + 60] = hashes[k]
        for bit in flips.tolist():
            hashes[k + 60, bit // 64] ^= np.uint64(1 << (bit % 64))
    i, j, d, truncated = hamming_pairs(hashes, 4, block_words=300)  # a few rows per block
    assert not truncated
    found = set(zip(i.tolist(), j.tolist(), d.tolist(), strict=True))
    assert found == _brute_force(hashes, 4)
    assert len(found) >= 10


def test_popcount_without_numpy_bitwise_count(monkeypatch: pytest.MonkeyPatch) -> None:
    words = np.random.default_rng(1).integers(0, 2**63, (5, 3), dtype=np.uint64)
    expected = [[bin(int(w)).count("1") for w in row] for row in words]
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    assert popcount(words).tolist() == expected


def test_hamming_pairs_stop_at_max_pairs() -> None:
    blank = np.zeros((40, 1), dtype=np.uint64)  # 780 identical pairs
    i, _, _, truncated = hamming_pairs(blank, 0, block_words=100, max_pairs=50)
    assert truncated
    assert len(i) == 50


def test_audit_writes_reports_with_worker_processes(root: Path, tmp_path: Path) -> None:
    shutil.copy(root / "Train/Real/002.png", root / "Validation/Real/copy.png")
    out = tmp_path / "out"
    cfg = compose_audit([f"data.root={root}", "audit.num_workers=2"], out)
    report = audit(cfg)
    names = {p.name for p in out.iterdir()}
    assert {"audit.json", "audit.md", "class_counts.png", "image_sizes.png", "duplicates.png"} <= (
        names
    )
    saved = json.loads((out / "audit.json").read_text())
    assert saved["summary"] == report.summary
    assert saved["summary"]["exact_cross_split_groups"] == 1
    assert not any(
        Path(f["path"]).is_absolute() for f in saved["exact_duplicate_groups"][0]["files"]
    )
    text = (out / "audit.md").read_text()
    assert (
        "**LEAKAGE: 1 exact-duplicate group(s) and 0 near-duplicate pair(s) span splits**" in text
    )
    assert "Validation/Real/copy.png" in text


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("audit.hash_size=1", "audit.hash_size=1: must be an integer >= 4"),
        ("audit.max_distance=-1", "audit.max_distance=-1"),
        ("audit.num_workers=-2", "audit.num_workers=-2"),
        ("audit.near_duplicates=3", "audit.near_duplicates=3: must be true or false"),
    ],
)
def test_bad_options_are_config_errors(
    root: Path, tmp_path: Path, override: str, message: str
) -> None:
    cfg = compose_audit([f"data.root={root}", override], tmp_path / "out")
    with pytest.raises(ConfigError, match=message):
        AuditSettings.from_config(cfg)


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "deepfake_detection.audit", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


@pytest.mark.slow
def test_cli_exit_status(root: Path, tmp_path: Path) -> None:
    shutil.copy(root / "Train/Fake/000.png", root / "Test/Fake/leaked.png")
    # Started together: each spends most of its time importing torch.
    runs = {
        "fail": _start(
            [f"data.root={root}", "audit.fail_on_leakage=true", f"hydra.run.dir={tmp_path}/fail"],
            tmp_path,
        ),
        "exact": _start(
            [f"data.root={root}", "audit.fail_on=exact", f"hydra.run.dir={tmp_path}/exact"],
            tmp_path,
        ),
        "report": _start([f"data.root={root}", f"hydra.run.dir={tmp_path}/report"], tmp_path),
        "missing": _start(
            [f"data.root={tmp_path / 'nowhere'}", f"hydra.run.dir={tmp_path}/missing"], tmp_path
        ),
        "unset": _start([f"hydra.run.dir={tmp_path}/unset"], tmp_path),
    }
    results = {name: (run.wait(timeout=300), *run.communicate()) for name, run in runs.items()}

    status, stdout, stderr = results["fail"]
    assert status == 1, stderr[-2000:]
    assert _errors(stderr) == [_errors(stderr)[0]]
    assert _errors(stderr)[0].startswith("error: leakage: 1 exact-duplicate group(s)")
    assert "(audit.fail_on=near;" in _errors(stderr)[0]
    assert (tmp_path / "fail/audit.json").is_file()  # the reports come first
    status, _, stderr = results["exact"]
    assert status == 1, stderr[-2000:]
    assert "(audit.fail_on=exact;" in _errors(stderr)[0]

    status, stdout, stderr = results["report"]
    assert status == 0, stderr[-2000:]
    assert "LEAKAGE: 1 exact-duplicate group(s)" in stdout
    assert _errors(stderr) == []

    for name, fragment in [("missing", "nowhere: no such directory"), ("unset", "is required")]:
        status, _, stderr = results[name]
        assert status == 2, stderr[-2000:]
        assert "Traceback" not in stderr
        [error] = _errors(stderr)
        assert "data.root" in error
        assert fragment in error


def test_a_flat_root_with_one_class_names_the_missing_one(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", {".": 3}, classes=("Fake",), size=32)
    assert _audit(root, near_duplicates=False)["missing_class_folders"] == ["Real"]
