"""`data.feature_cache=true`: fit the trainable layers on stored outputs of the frozen ones.

With `freeze=backbone` or `freeze=last_n`, the first blocks of the network never change while
training, and in eval mode (frozen BatchNorm included) neither does their output for a given
input image. That output is computed once per image and stored (`data.feature_cache`); the
fit's train and validation batches then carry features, and the fit's steps run the network
wrapped in a `FeatureForward`: only the rest (`BaseDetector.features_to_logits`).

Augmentation is drawn when the store is built: `data.feature_cache_views` views per training
image, view v of image i from the seed (seed, i, v), and epoch e trains on view e mod views.
Validation is deterministic: one view, the eval transform, exact up to storage precision.
Testing the best checkpoint, `evaluate` and `predict` always run the full network on images.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

import numpy as np
import PIL
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Dataset

from deepfake_detection.data.datamodule import DeepfakeDataModule
from deepfake_detection.data.dataset import ImageFileDataset
from deepfake_detection.data.feature_store import (
    CachedFeatureDataset,
    FeatureStore,
    files_fingerprint,
    open_or_build,
    weights_fingerprint,
)
from deepfake_detection.data.loader import SeededSample, ignore_stop_signals
from deepfake_detection.errors import ConfigError
from deepfake_detection.models.base import BaseDetector

log = logging.getLogger(__name__)

#: Modules whose output in eval mode may still differ from their output in a training step.
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


class FeatureForward:
    """The forward pass of a fit that reads stored features: the trainable rest of the
    network on the output of its first `depth` (frozen) blocks.

    The detector's `step_forward` for the fit only (`attach_feature_cache`); a plain callable,
    not a module, so the detector's parameters and checkpoint keys stay exactly as they are,
    and calling the detector itself still runs the whole network.
    """

    def __init__(self, model: BaseDetector, depth: int) -> None:
        self.model, self.depth = model, depth

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.features_to_logits(features, self.depth)


def view_seed(seed: int, index: int, view: int) -> int:
    """The seed of the augmentation of view `view` of image `index`: (seed, image, view) alone."""
    return int(np.random.SeedSequence([seed, index, view]).generate_state(1, np.uint64)[0] >> 2)


class _Views(Dataset):
    """Image `i` of `dataset` with the augmentation of one view (or none, for validation)."""

    def __init__(self, dataset: ImageFileDataset, seed: int | None, view: int) -> None:
        self.dataset, self.seed, self.view = dataset, seed, view

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        if self.seed is None:
            return self.dataset[index]
        return self.dataset[SeededSample(index, view_seed(self.seed, index, self.view))]


def _check_cacheable(prefix: nn.Module, model: BaseDetector) -> None:
    """The prefix must compute in a training step what it computes in eval mode."""
    frozen_bn = {id(m) for m in model.frozen_batchnorms}
    problems = [f"trainable weights ({n})" for n, p in prefix.named_parameters() if p.requires_grad]
    problems += [
        f"dropout ({n})"
        for n, m in prefix.named_modules()
        if isinstance(m, _DROPOUT) and getattr(m, "p", 1) > 0  # timm keeps p=0 ones around
    ]
    problems += [
        f"BatchNorm that trains ({n})"
        for n, m in prefix.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in frozen_bn
    ]
    if problems:
        raise ConfigError(
            f"data.feature_cache=true: the frozen part of {model.model_name} has "
            f"{problems[0]}, so its output cannot be stored once; set data.feature_cache=false"
        )


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class _Filler:
    """Runs the frozen prefix over a split's images, view by view, into the store's array."""

    def __init__(
        self,
        prefix: nn.Module,
        datamodule: DeepfakeDataModule,
        dataset: ImageFileDataset,
        seed: int | None,
        split: str,
        channels_last: bool,
    ) -> None:
        self.prefix, self.datamodule, self.dataset = prefix, datamodule, dataset
        self.seed, self.split, self.channels_last = seed, split, channels_last

    @torch.no_grad()
    def __call__(self, features: np.ndarray) -> None:
        views, count = features.shape[:2]
        device = _device()
        last_report = started = time.perf_counter()
        done = 0
        for view in range(views):
            loader = DataLoader(
                _Views(self.dataset, self.seed, view),
                batch_size=self.datamodule.batch_size,
                num_workers=self.datamodule.num_workers,
                worker_init_fn=ignore_stop_signals,
            )
            for images, _, positions in loader:
                images = images.to(device)
                if self.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                out = self.prefix(images).float().cpu().contiguous().numpy()
                features[view, positions.numpy()] = out
                done += len(positions)
                if time.perf_counter() - last_report > 30:
                    last_report = time.perf_counter()
                    rate = done / (last_report - started)
                    log.info(
                        "feature cache: %s %d/%d images (%.0f img/s)",
                        self.split,
                        done,
                        views * count,
                        rate,
                    )


def _feature_shape(prefix: nn.Module, image_size: int) -> tuple[int, ...]:
    with torch.no_grad():
        return tuple(prefix(torch.zeros(1, 3, image_size, image_size, device=_device())).shape[1:])


def _describe(split: str, store: FeatureStore, seconds: float) -> str:
    views, count, *shape = store.features.shape
    per_thousand = store.bytes_per_image * 1000 / 2**20
    where = "in memory" if not isinstance(store.features, np.memmap) else "memory-mapped"
    action = f"built in {seconds:.1f} s" if store.built else "reused"
    return (
        f"feature cache: {split} {count} images x {views} view(s) of {list(shape)} "
        f"{store.meta['dtype']}, {per_thousand:.1f} MiB per 1,000 images, {action}, "
        f"{where}: {store.path}"
    )


def attach_feature_cache(model: BaseDetector, datamodule: DeepfakeDataModule) -> dict[str, Any]:
    """Build or reuse the stores of the train and validation splits and point the fit at them.

    Returns what `metrics.json` records under `timing`: the seconds spent on the cache and
    whether each split's store was built or reused. An empty dict when the cache is off.
    """
    settings = datamodule.feature_cache
    if not settings.enabled:
        return {}
    depth = model.frozen_depth()
    if depth == 0:
        log.warning(
            "data.feature_cache=true: freeze=%s leaves no frozen block to cache; "
            "training reads images",
            model.freeze_spec.name,
        )
        return {}
    started = time.perf_counter()
    prefix = model.feature_prefix(depth).to(_device()).eval()
    _check_cacheable(prefix, model)
    shared = {
        "model": model.model_name,
        "depth": depth,
        "blocks": len(model.feature_blocks()),
        "weights": weights_fingerprint(prefix),
        "channels_last": model.channels_last,
        "image_size": datamodule.image_size,
        # Resizing and decoding can change between versions, and kernels between devices.
        "versions": [torch.__version__, torchvision.__version__, PIL.__version__],
        "device": _device().type,
    }
    shape = _feature_shape(prefix, datamodule.image_size)
    built = {}
    for split in ("train", "val"):
        if split not in datamodule.index.splits:
            continue
        training = split == "train"
        # A seed only shapes random views; fixed ones are shared by runs of any seed.
        seed = datamodule.seed if training and datamodule.augment.is_random else None
        dataset = datamodule.dataset(split, training=training)
        dataset.skip_bad = False  # a substitute image would be stored under another's label
        samples = datamodule.index.splits[split]
        parts = {
            **shared,
            "split": split,
            "transform": repr(dataset.transform),
            "augment": asdict(datamodule.augment) if training else None,
            "crop_scale": list(datamodule.crop_scale) if training else None,
            "eval_crop_fraction": datamodule.eval_crop_fraction,
            "seed": seed,
            "files": files_fingerprint(samples, datamodule.index.root),
            "count": len(samples),
            # The images read are the face crops, which the face settings shape.
            **({"face": datamodule.face.geometry_key()} if datamodule.face else {}),
        }
        split_started = time.perf_counter()
        fill = _Filler(prefix, datamodule, dataset, seed, split, model.channels_last)
        views = settings.views if seed is not None else 1
        store = open_or_build(settings, parts, views, len(samples), fill, shape)
        log.info(_describe(split, store, time.perf_counter() - split_started))
        if seed is not None:
            log.info(
                "feature cache: augmentation is drawn once per stored view: epoch e trains on "
                "view e mod %d; data.feature_cache_views=K stores more views",
                views,
            )
        built[split] = store.built
        datamodule.cached_datasets[split] = CachedFeatureDataset(
            store.features,
            [label for _, label in samples],
            datamodule.current_epoch if training else (lambda: 0),
        )
    model.step_forward = FeatureForward(model, depth)
    return {
        "feature_cache_s": round(time.perf_counter() - started, 3),
        "feature_cache_built": built,
    }


def detach_feature_cache(model: BaseDetector, datamodule: DeepfakeDataModule) -> None:
    """Back to images: what runs after the fit (testing, scoring) sees the full network."""
    model.step_forward = None
    datamodule.cached_datasets.clear()
