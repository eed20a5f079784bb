"""The job `python -m train` does, written as a plain PyTorch loop: the baseline that
`benchmarks/training.py` times the framework against.

    python benchmarks/plain_loop.py train --root <dataset> --model mobilenet_v2 --freeze last_n \
        --n 3 --image-size 224 --batch-size 32 --workers 1 --epochs 3 --lr 1e-4 \
        --run-dir <dir> --out timing.json
    python benchmarks/plain_loop.py predict --weights <run dir>/model.pth --input <images> \
        --image-size 224 --batch-size 32 --workers 1 --csv predictions.csv --out timing.json

It imports torch and torchvision only (ImageFolder, DataLoader, Adam, BCEWithLogitsLoss), never
the project, so that its figures are what a user gets without the framework: each epoch a
training pass and a validation pass (loss and accuracy), a checkpoint per epoch, then one pass
over the test split. It writes the same
`timing` structure as the framework's metrics.json (`epochs`: train_s, train_images, val_s).
Run it through `training.py`, which hands it the framework's settings.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import ImageFolder
from torchvision.models import mobilenet_v2
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
SPLIT_NAMES = {"train": ("train",), "val": ("validation", "valid", "val"), "test": ("test",)}


class CustomCNN(nn.Module):
    """The framework's `model=custom_cnn` at its default config, restated here so that this
    loop needs nothing from the project: Conv→ReLU→MaxPool blocks, then a dense head."""

    def __init__(
        self,
        widths: Sequence[int] = (32, 64, 128),
        hidden_units: int = 128,
        dropout: float = 0.5,
        pooled_size: int = 4,
    ) -> None:
        super().__init__()
        blocks, in_channels = [], 3
        for width in widths:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(in_channels, width, kernel_size=3, padding=1),
                    nn.ReLU(inplace=True),
                    nn.MaxPool2d(2),
                )
            )
            in_channels = width
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(pooled_size),
            nn.Flatten(),
            nn.Linear(in_channels * pooled_size * pooled_size, hidden_units),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_units, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ImageFiles(Dataset):
    """Unlabelled image files for `predict`, decoded with Pillow in the DataLoader's workers."""

    def __init__(self, samples: Sequence[tuple[Path, int]], transform: Callable) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, float]:
        path, label = self.samples[index]
        with Image.open(path) as image:
            return self.transform(image.convert("RGB")), float(label)


def list_images(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


def child(parent: Path, names: Sequence[str]) -> Path:
    """The sub-folder of `parent` named one of `names`, whatever its case."""
    for path in sorted(parent.iterdir()):
        if path.is_dir() and path.name.lower() in names:
            return path
    raise SystemExit(f"{parent}: no folder named any of {', '.join(names)}")


def is_class(index: int, target: int) -> float:
    """ImageFolder's class index -> 1.0 for the class at `index` (Fake), else 0.0."""
    return float(target == index)


def split_folder(root: Path, split: str, transform: Callable) -> ImageFolder:
    """torchvision's ImageFolder over one split; its classes are sorted by name (Fake=0,
    Real=1), so the target is mapped to Fake=1, the framework's positive class."""
    dataset = ImageFolder(str(child(root, SPLIT_NAMES[split])), transform=transform)
    fake = {name.lower(): i for name, i in dataset.class_to_idx.items()}["fake"]
    dataset.target_transform = partial(is_class, fake)
    return dataset


def train_transform(size: int, crop_scale: Sequence[float], flip_p: float) -> v2.Compose:
    """`augment=basic`: random resized crop and horizontal flip, then ImageNet normalisation."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(size, scale=tuple(crop_scale), antialias=True),
            v2.RandomHorizontalFlip(flip_p),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def eval_transform(size: int, crop_fraction: float) -> v2.Compose:
    """Shorter side to size / crop_fraction, centre crop, ImageNet normalisation."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(round(size / crop_fraction), antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def loader(dataset: Dataset, batch_size: int, workers: int, shuffle: bool) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


def build_model(name: str, imagenet_weights: str | None) -> nn.Module:
    if name == "custom_cnn":
        return CustomCNN()
    if imagenet_weights:
        net = mobilenet_v2(num_classes=1000)
        net.load_state_dict(torch.load(imagenet_weights, weights_only=True))
        net.classifier[1] = nn.Linear(1280, 1)
        return net
    return mobilenet_v2(num_classes=1)


def frozen_blocks(net: nn.Module, freeze: str, n: int) -> list[nn.Module]:
    """MobileNetV2's feature blocks that `freeze` leaves out of training (all but the top `n`
    of its 19 for last_n, all of them for backbone)."""
    if freeze == "none":
        return []
    keep = 0 if freeze == "backbone" else n
    return list(net.features[: len(net.features) - keep])


def autocast(device: torch.device) -> torch.autocast:
    """fp16 autocast on CUDA and full precision on CPU: the framework's automatic precision."""
    return torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda")


def run_pass(
    net: nn.Module,
    data: DataLoader,
    device: torch.device,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    """One pass over `data`, training when an optimizer is given; seconds include loading.

    Loss and correct counts stay on the device until the end, so the pass never waits on a
    per-batch `.item()`.
    """
    started = time.perf_counter()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    images = 0
    with torch.set_grad_enabled(optimizer is not None):
        for inputs, targets in data:
            inputs = inputs.to(device, non_blocking=True).contiguous(
                memory_format=torch.channels_last
            )
            targets = targets.to(device, non_blocking=True).float()
            with autocast(device):
                logits = net(inputs).squeeze(-1)
                loss = criterion(logits.float(), targets)
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            total_loss += loss.detach() * len(targets)
            correct += ((logits.detach() > 0).float() == targets).sum()
            images += len(targets)
    loss_value, correct_value = float(total_loss), int(correct)  # waits for the device
    return {
        "seconds": time.perf_counter() - started,
        "images": images,
        "loss": loss_value / max(images, 1),
        "acc": correct_value / max(images, 1),
    }


def train(args: argparse.Namespace) -> None:
    """Fit for `--epochs`: train pass, validation pass and checkpoint each epoch; then test."""
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    root, size = Path(args.root), args.image_size
    train_data = loader(
        split_folder(root, "train", train_transform(size, args.crop_scale, args.flip_p)),
        args.batch_size,
        args.workers,
        shuffle=True,
    )
    evaluation = eval_transform(size, args.crop_fraction)
    val_data, test_data = (
        loader(
            split_folder(root, s, evaluation),
            args.batch_size,
            args.workers,
            shuffle=False,
        )
        for s in ("val", "test")
    )

    net = build_model(args.model, args.imagenet_weights)
    frozen = frozen_blocks(net, args.freeze, args.n) if args.model == "mobilenet_v2" else []
    for block in frozen:
        block.requires_grad_(False)
    frozen_bn = [m for b in frozen for m in b.modules() if isinstance(m, nn.BatchNorm2d)]
    net = net.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(
        [p for p in net.parameters() if p.requires_grad], lr=args.lr, weight_decay=args.weight_decay
    )
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    criterion = nn.BCEWithLogitsLoss()
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    epochs = []
    for epoch in range(1, args.epochs + 1):
        net.train()
        for bn in frozen_bn:  # frozen blocks keep their ImageNet running statistics
            bn.eval()
        fit = run_pass(net, train_data, device, criterion, optimizer, scaler)
        net.eval()
        val = run_pass(net, val_data, device, criterion)
        # What a user saves to resume: weights, optimizer state and the epoch.
        checkpoint = {
            "epoch": epoch,
            "model": net.state_dict(),
            "optimizer": optimizer.state_dict(),
        }
        torch.save(checkpoint, run_dir / "last.pt")
        epochs.append(
            {
                "epoch": epoch,
                "train_s": round(fit["seconds"], 3),
                "train_images": fit["images"],
                "val_s": round(val["seconds"], 3),
                "train_loss": fit["loss"],
                "train_acc": fit["acc"],
                "val_loss": val["loss"],
                "val_acc": val["acc"],
            }
        )
    fit_s = time.perf_counter() - started
    net.eval()
    test = run_pass(net, test_data, device, criterion)
    timing = {
        "fit_s": round(fit_s, 3),
        "epochs": epochs,
        "test_s": round(test["seconds"], 3),
        "test_images": test["images"],
        "test_loss": test["loss"],
        "test_acc": test["acc"],
        "device": device.type,
    }
    Path(args.out).write_text(json.dumps({"timing": timing}, indent=2) + "\n")


def predict(args: argparse.Namespace) -> None:
    """P(Fake) for every image under `--input` with a saved MobileNetV2, into a CSV."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = mobilenet_v2(num_classes=1)
    net.load_state_dict(torch.load(args.weights, weights_only=True, map_location="cpu"))
    net = net.to(device, memory_format=torch.channels_last).eval()
    files = list_images(Path(args.input))
    started = time.perf_counter()
    data = loader(
        ImageFiles([(f, -1) for f in files], eval_transform(args.image_size, args.crop_fraction)),
        args.batch_size,
        args.workers,
        shuffle=False,
    )
    scores = []
    with torch.inference_mode():
        for inputs, _ in data:
            inputs = inputs.to(device, non_blocking=True).contiguous(
                memory_format=torch.channels_last
            )
            with autocast(device):
                scores.append(torch.sigmoid(net(inputs).float()).squeeze(-1).cpu())
    probs = torch.cat(scores).tolist() if scores else []
    seconds = time.perf_counter() - started
    with open(args.csv, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(("path", "prob_fake", "prediction"))
        for path, prob in zip(files, probs, strict=True):
            writer.writerow((str(path), f"{prob:.9g}", "Fake" if prob > 0.5 else "Real"))
    summary = {"images": len(files), "seconds": round(seconds, 3), "device": device.type}
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    fit = modes.add_parser("train", help="fit, validate each epoch, checkpoint, test")
    fit.add_argument("--root", required=True, help="<root>/{Train,Validation,Test}/{Fake,Real}")
    fit.add_argument("--model", choices=("custom_cnn", "mobilenet_v2"), default="custom_cnn")
    fit.add_argument("--freeze", choices=("none", "last_n", "backbone"), default="none")
    fit.add_argument("--n", type=int, default=3, help="trainable top blocks for last_n")
    fit.add_argument(
        "--imagenet-weights",
        default=os.environ.get("MOBILENET_V2_WEIGHTS"),
        help="torchvision MobileNetV2 ImageNet state_dict (default: random init)",
    )
    fit.add_argument("--epochs", type=int, default=3)
    fit.add_argument("--lr", type=float, default=1e-4)
    fit.add_argument("--weight-decay", type=float, default=0.0)
    fit.add_argument("--crop-scale", type=float, nargs=2, default=(0.8, 1.0))
    fit.add_argument("--flip-p", type=float, default=0.5)
    fit.add_argument("--seed", type=int, default=42)
    fit.add_argument("--run-dir", required=True, help="where checkpoints go")
    score = modes.add_parser("predict", help="score a folder of images")
    score.add_argument("--weights", required=True, help="a run's model.pth (MobileNetV2)")
    score.add_argument("--input", required=True, help="folder searched recursively")
    score.add_argument("--csv", required=True)
    for sub in (fit, score):
        sub.add_argument("--image-size", type=int, default=224)
        sub.add_argument("--batch-size", type=int, default=32)
        sub.add_argument("--workers", type=int, default=1)
        sub.add_argument("--crop-fraction", type=float, default=0.875, help="eval centre crop")
        sub.add_argument("--out", required=True, help="JSON with the timing")
    args = parser.parse_args()
    if args.mode == "train":
        train(args)
    else:
        predict(args)


if __name__ == "__main__":
    main()
