from pathlib import Path

import numpy as np
import torch
from torchmetrics.functional.classification import binary_auroc

from deepfake_detection.data.datamodule import DeepfakeDataModule
from deepfake_detection.data.demo import ensure_demo_dataset
from deepfake_detection.data.images import load_rgb

SMALL = {"train": 6, "valid": 3, "test": 3}


def test_demo_set_is_deterministic_and_discoverable(tmp_path: Path) -> None:
    first = ensure_demo_dataset(tmp_path / "a", sizes=SMALL)
    again = ensure_demo_dataset(tmp_path / "b", sizes=SMALL)
    files = sorted(p.relative_to(first) for p in first.rglob("*.png"))
    assert len(files) == 2 * sum(SMALL.values())
    assert all((first / f).read_bytes() == (again / f).read_bytes() for f in files)
    datamodule = DeepfakeDataModule(root=str(first), image_size=32, num_workers=0)
    assert datamodule.index.counts()["test"] == {"Real": 3, "Fake": 3}


def test_demo_set_is_reused_not_regenerated(tmp_path: Path) -> None:
    root = ensure_demo_dataset(tmp_path, sizes=SMALL)
    marker = root / "train" / "Fake" / "fake_00000.png"
    stamp = marker.stat().st_mtime_ns
    assert ensure_demo_dataset(tmp_path, sizes=SMALL) == root
    assert marker.stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_demo_fakes_carry_a_high_frequency_signal(tmp_path: Path) -> None:
    root = ensure_demo_dataset(tmp_path, sizes={"test": 40})
    scores, labels = [], []
    for label, name in ((1, "Fake"), (0, "Real")):
        for path in sorted((root / "test" / name).glob("*.png")):
            gray = np.asarray(load_rgb(path), dtype=np.float64).mean(-1)
            checker = np.indices(gray.shape).sum(0) % 2 * 2 - 1  # energy at the Nyquist corner
            scores.append(abs((gray * checker).mean()))
            labels.append(label)
    assert binary_auroc(torch.tensor(scores), torch.tensor(labels)) > 0.9
