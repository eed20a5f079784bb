"""The LightningDataModule over Fake/Real image folders in any layout `discovery` reads."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from deepfake_detection.data.augment import AugmentSettings
from deepfake_detection.data.dataset import ImageFileDataset
from deepfake_detection.data.demo import default_cache_dir, ensure_demo_dataset
from deepfake_detection.data.discovery import DEFAULT_SPLIT_FRACTIONS, DatasetIndex, discover
from deepfake_detection.data.feature_store import FeatureCacheSettings, collate_batch
from deepfake_detection.data.images import BAD_IMAGE_POLICIES, DEFAULT_MAX_PIXELS
from deepfake_detection.data.layout import ClassAliases
from deepfake_detection.data.loader import (
    EpochSeededLoader,
    ShardSampler,
    ignore_stop_signals,
    process_group,
)
from deepfake_detection.data.perturb import Perturbation
from deepfake_detection.data.scan import BadFile, apply_bad_image_policy, stop_on_bad_image
from deepfake_detection.data.splitting import check_fractions
from deepfake_detection.data.synthesis.mixing import Synthesizer
from deepfake_detection.data.synthesis.settings import SynthSettings
from deepfake_detection.data.transforms import eval_transform, train_transform
from deepfake_detection.errors import ConfigError, DatasetError
from deepfake_detection.faces.settings import FaceSettings
from deepfake_detection.video.reading import is_video
from deepfake_detection.video.settings import VideoSettings

log = logging.getLogger(__name__)

#: `data.sampling`: every training image once per epoch, or as many draws per source and class.
SAMPLINGS = ("shuffle", "balanced")


def auto_num_workers() -> int:
    """Leave one core to the training loop, and don't spawn more workers than can help."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(8, (cores or 1) - 1))


class DeepfakeDataModule(L.LightningDataModule):
    """Binary Fake(1)/Real(0) images; `root=None` uses the generated demo set."""

    def __init__(
        self,
        root: str | None = None,
        image_size: int = 224,
        batch_size: int = 32,
        num_workers: int | None = None,
        val_fraction: float = 0.1,
        crop_scale: Sequence[float] = (0.8, 1.0),
        eval_crop_fraction: float = 0.875,
        seed: int = 0,
        demo_cache_dir: str | None = None,
        pin_memory: bool | None = None,
        required_splits: Sequence[str] = ("train", "test"),
        on_bad_image: str = "skip",
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
        used_splits: Sequence[str] | None = None,
        augment: Mapping[str, Any] | None = None,
        perturb: Mapping[str, Any] | None = None,
        feature_cache: bool = False,
        feature_cache_dir: str | None = None,
        feature_cache_views: int = 1,
        feature_cache_dtype: str = "float32",
        feature_cache_ram_mb: float = 2048,
        split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
        class_aliases: Mapping[str, Sequence[str]] | None = None,
        source_depth: int = 1,
        split_lists: str | None = None,
        face: Mapping[str, Any] | None = None,
        synth: Mapping[str, Any] | None = None,
        test_roots: Sequence[str] | None = None,
        sampling: str = "shuffle",
        select_on: str | None = None,
        video: Mapping[str, Any] | None = None,
        one_class: bool = False,
        label: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        _check_positive_int("data.image_size", image_size)
        _check_positive_int("data.batch_size", batch_size)
        if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 0):
            raise ConfigError(f"data.num_workers={num_workers}: must be null (auto) or an int >= 0")
        if not 0.0 < eval_crop_fraction <= 1.0:
            raise ConfigError(f"data.eval_crop_fraction={eval_crop_fraction}: must be in (0, 1]")
        if len(crop_scale) != 2 or not 0.0 < crop_scale[0] <= crop_scale[1] <= 1.0:
            raise ConfigError(
                f"data.crop_scale={list(crop_scale)}: need [low, high], 0<low<=high<=1"
            )
        #: Training augmentation (`augment` group); None is `basic`, as in older runs.
        self.augment = AugmentSettings.from_config(augment)
        #: The face stage (`face` group): None scores whole images.
        self.face = FaceSettings.from_config(face)
        #: How clips in the dataset become frames (`video` group), and the clip each
        #: frame file came from (for video-level metrics); empty without clips.
        self.video = VideoSettings.from_config(video)
        self.clip_of: dict[str, str] = {}
        #: Image path -> the file read in its place (its face crop), with the face stage.
        self.read_from: dict[str, Any] = {}
        #: Images in which the face stage found no face.
        self.faceless: list[str] = []
        if sampling not in SAMPLINGS:
            raise ConfigError(f"data.sampling={sampling}: choose one of: {', '.join(SAMPLINGS)}")
        #: `shuffle` every training image once per epoch, or `balanced` by source and class.
        self.sampling = sampling
        #: A labelled dataset the checkpoint may be chosen on (`training.selection`).
        self.select_on = select_on or None
        #: Other datasets whose test split the best checkpoint is also scored on.
        self.test_roots = [str(root) for root in test_roots or []]
        #: Synthetic fakes made from real training images (`synth` group), or None.
        self.synth = SynthSettings.from_config(synth)
        if self.synth is not None and feature_cache:
            raise ConfigError(
                f"data.feature_cache=true: synth={self.synth.name} makes new fakes every epoch, "
                "which stored features cannot hold; set data.feature_cache=false"
            )
        #: Test-time perturbation of every scored image (`deepfake-evaluate perturb=...`).
        self.perturbation = Perturbation.from_config(perturb)
        #: `data.feature_cache*`: stored frozen features, used by a fit (see `training`).
        self.feature_cache = FeatureCacheSettings(
            feature_cache,
            feature_cache_dir,
            feature_cache_views,
            feature_cache_dtype,
            feature_cache_ram_mb,
        )
        #: Split -> stored features that the fit's train/val loaders read in place of images.
        self.cached_datasets: dict[str, Dataset] = {}
        self.root = root
        #: Scoring only: a split may hold one class (`one_class`), or every file under the
        #: root is of class `label` (`data.label`): a false-positive or detection-rate audit.
        self.one_class = one_class or label is not None
        self.label = label
        #: How a flat root is split, the class folder names, the source level, and the
        #: file lists that replace derived splits (see `discovery.discover`).
        self.split_fractions = check_fractions(split_fractions)
        self.class_aliases = ClassAliases.from_config(class_aliases)
        self.source_depth = source_depth
        self.split_lists = split_lists
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = auto_num_workers() if num_workers is None else num_workers
        self.val_fraction = val_fraction
        self.crop_scale = tuple(crop_scale)
        self.eval_crop_fraction = eval_crop_fraction
        self.seed = seed
        self.demo_cache_dir = demo_cache_dir
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.required_splits = tuple(required_splits)
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise ConfigError(
                f"data.on_bad_image={on_bad_image}: choose one of: {', '.join(BAD_IMAGE_POLICIES)}"
            )
        self.on_bad_image = on_bad_image
        self.max_image_pixels = max_image_pixels
        #: Splits this run reads (None: all); only these are decoded by the image check.
        self.used_splits = tuple(used_splits) if used_splits is not None else None
        #: (path, reason) of every file left out by `on_bad_image=skip`.
        self.skipped: list[BadFile] = []
        self._index: DatasetIndex | None = None

    @property
    def index(self) -> DatasetIndex:
        """The indexed dataset; built on first access so bad paths fail before training."""
        if self._index is None:
            root = self.root
            if root in (None, ""):
                root = ensure_demo_dataset(self.demo_cache_dir)
                log.info("data.root is unset: using the generated demo set at %s", root)
            index = discover(
                root,
                val_fraction=self.val_fraction,
                seed=self.seed,
                required=self.required_splits,
                split_fractions=self.split_fractions,
                class_aliases=self.class_aliases,
                source_depth=self.source_depth,
                split_lists=self.split_lists,
                one_class=self.one_class,
                label=self.label,
            )
            if self.used_splits is not None:
                index.splits = {s: index.splits[s] for s in self.used_splits if s in index.splits}
            index = self._frames_of_clips(index)
            index = self._apply_bad_image_policy(index)
            self._index = self._apply_face_stage(index) if self.face else index
        return self._index

    def _frames_of_clips(self, index: DatasetIndex) -> DatasetIndex:
        """Each clip in the splits replaced by its sampled frames (extracted once, kept on
        disk); a clip that cannot be read is left out and listed, or stops the run under
        `data.on_bad_image=error`."""
        clips = [path for samples in index.splits.values() for path, _ in samples if is_video(path)]
        if not clips:
            return index
        from deepfake_detection.video.frame_store import FrameStore

        store = FrameStore(self.video)
        prepared = store.prepare(clips, workers=self.num_workers)
        if prepared.bad and self.on_bad_image == "error":
            path, reason = prepared.bad[0]
            raise stop_on_bad_image(path, reason, len(prepared.bad) - 1)
        self.skipped = [*self.skipped, *prepared.bad]
        frames = sum(len(f) for f in prepared.frames.values())
        log.info(
            "clips: %d read as %d frames (%d extracted now, %d from %s), %d unreadable",
            len(prepared.frames),
            frames,
            prepared.extracted,
            prepared.reused,
            store.root,
            len(prepared.bad),
        )
        self.clip_of = prepared.clip_of()
        for clip, listed in prepared.frames.items():
            if clip in index.sources:
                index.sources.update((frame, index.sources[clip]) for frame, _ in listed)
        index.splits = {
            split: [
                (Path(frame), label)
                for path, label in samples
                for frame, _ in (
                    prepared.frames.get(str(path), []) if is_video(path) else [(path, 0.0)]
                )
            ]
            for split, samples in index.splits.items()
        }
        self._check_both_classes(index, f"reading {len(clips)} clip(s)")
        return index

    def _apply_bad_image_policy(self, index: DatasetIndex) -> DatasetIndex:
        """Decode every image once; leave bad ones out (`skip`) or stop here (`error`)."""
        paths = [path for samples in index.splits.values() for path, _ in samples]
        bad = apply_bad_image_policy(
            paths,
            self.on_bad_image,
            self.max_image_pixels,
            workers=self.num_workers,
            remember_in=default_cache_dir() / "image-checks",
        )
        self.skipped = [*self.skipped, *bad]
        if bad:
            dropped = {path for path, _ in bad}
            index.splits = {
                split: [s for s in samples if str(s[0]) not in dropped]
                for split, samples in index.splits.items()
            }
            self._check_both_classes(index, f"skipping {len(bad)} bad file(s)")
        return index

    def _apply_face_stage(self, index: DatasetIndex) -> DatasetIndex:
        """Crop every image's largest face once (kept on disk), and apply `face.on_missing`
        to the images without one: scored whole, left out and listed, or a stop."""
        from deepfake_detection.faces.stage import FaceMissingError
        from deepfake_detection.faces.store import FaceCropStore

        assert self.face is not None
        # Kept for the datamodule's life: with face.cache=false its folder is temporary.
        store = self._face_store = FaceCropStore(self.face)
        paths = [path for samples in index.splits.values() for path, _ in samples]
        prepared = store.prepare(paths, self.max_image_pixels, workers=self.num_workers)
        self.read_from, self.faceless = prepared.read_from, prepared.missing
        if not prepared.missing:
            return index
        share = f"{len(prepared.missing)} of {len(paths)} image(s)"
        if self.face.on_missing == "error":
            raise FaceMissingError(
                f"{prepared.missing[0]}: {store.no_face_reason()}, and in {share} in all; "
                "face.on_missing=error stops here (whole scores them uncropped, skip leaves "
                "them out)"
            )
        if self.face.on_missing == "whole":
            log.warning(
                "face stage: no face in %s; they are used whole (face.on_missing=whole)", share
            )
            return index
        log.warning("face stage: no face in %s; left out (face.on_missing=skip)", share)
        missing = set(prepared.missing)
        self.skipped += [(path, store.no_face_reason()) for path in prepared.missing]
        index.splits = {
            split: [s for s in samples if str(s[0]) not in missing]
            for split, samples in index.splits.items()
        }
        self._check_both_classes(index, f"leaving out {len(missing)} image(s) without a face")
        return index

    def _check_both_classes(self, index: DatasetIndex, after: str) -> None:
        for split, samples in index.splits.items():
            labels = {label for _, label in samples}
            if self.one_class and labels:
                continue
            if labels != {0, 1}:
                raise DatasetError(
                    f"data.root={index.root}: the {split} split has no readable "
                    f"{'Fake' if 1 not in labels else 'Real'} image left after {after}"
                )

    def for_root(self, root: str) -> DeepfakeDataModule:
        """These settings on another dataset, reading its test split only (a root without
        split folders is scored whole), for `data.test_roots`."""
        values = {**self.hparams, "root": root, "split_lists": None, "test_roots": None}
        values["select_on"] = None
        values.update(required_splits=["test"], used_splits=["test"], synth=None)
        return DeepfakeDataModule(**values)

    def synthetic_examples(self, count: int = 4) -> list[tuple[Any, Any, dict]]:
        """(real image, synthetic fake, how it was made) for the first `count` real training
        images, each made with its own fixed seed: the figure a run shows of `synth`."""
        from deepfake_detection.data.images import load_rgb

        if self.synth is None:
            return []
        synthesizer = Synthesizer(self.synth, self.face)
        reals = [path for path, label in self.index.splits["train"] if label == 0][:count]
        examples = []
        for number, path in enumerate(reals):
            real = load_rgb(self.read_from.get(str(path), path), self.max_image_pixels)
            fake, info = synthesizer.make(real, self.seed + number)
            examples.append((real, fake, info))
        return examples

    def describe(self) -> str:
        counts = self.index.counts()
        parts = [f"{split}: {c['Fake']} Fake / {c['Real']} Real" for split, c in counts.items()]
        index = self.index
        derived = f" ({index.derived_how})" if index.derived else ""
        sources = sorted({s for split in index.splits for s in index.split_sources(split)})
        named = f"; {len(sources)} source(s): {', '.join(sources[:6])}" if sources else ""
        if len(sources) > 6:
            named += ", ..."
        skipped = f"; {len(self.skipped)} file(s) skipped" if self.skipped else ""
        faces = ""
        if self.face is not None:
            faces = f"; face crops ({len(self.faceless)} image(s) without a face)"
        return f"{index.root} -> " + "; ".join(parts) + derived + named + skipped + faces

    def dataset(
        self,
        split: str,
        training: bool | None = None,
        perturbation: Perturbation | None = None,
        decoded: Sequence[Any] | None = None,
    ) -> ImageFileDataset:
        """Images of `split`; augmented only for training (by default, the train split).

        `perturbation` replaces the datamodule's own for this dataset; `decoded` holds the
        split's images decoded already (`decode_all`).
        """
        perturbation = perturbation or self.perturbation
        training = split == "train" if training is None else training
        samples = self.index.splits[split]
        synthesizer = None
        if training and self.synth is not None:
            synthesizer = Synthesizer(self.synth, self.face)
            samples = synthesizer.plan(samples)
        transform = (
            train_transform(self.image_size, self.crop_scale, self.augment, self.eval_crop_fraction)
            if training
            else eval_transform(self.image_size, self.eval_crop_fraction, perturbation)
        )
        return ImageFileDataset(
            samples,
            transform,
            max_pixels=self.max_image_pixels,
            # Only training may stand in another image for one that broke after the check;
            # scoring a split must score exactly its files.
            skip_bad=self.on_bad_image == "skip" and training,
            # A perturbation's draws (noise) are fixed per image, whoever loads it.
            index_seeds=None if training or perturbation.name == "none" else self.seed,
            decoded=decoded,
            read_from=self.read_from,
            synthesizer=synthesizer,
        )

    def dataloader(
        self,
        split: str,
        training: bool | None = None,
        cached: bool = False,
        **dataset_options: Any,
    ) -> DataLoader:
        """Loader of any split; it shuffles and augments only for training.

        Scoring passes give `training=False`, so even the train split is scored as is.
        `cached` reads the split's stored features (`cached_datasets`) in place of images.
        `dataset_options` (a perturbation, decoded images) go to `dataset`.
        """
        training = split == "train" if training is None else training
        dataset = self.cached_datasets[split] if cached else None
        if dataset is None:
            dataset = self.dataset(split, training, **({} if training else dataset_options))
        options = dict(
            batch_size=self.batch_size,
            shuffle=training,
            # Stored features are a memory read: worker processes would only add overhead.
            num_workers=0 if cached else self.num_workers,
            pin_memory=self.pin_memory,
            # Stored features are read a batch at a time (`CachedFeatureDataset.__getitems__`).
            **({"collate_fn": collate_batch} if cached else {}),
        )
        if training:
            # Order and augmentation follow (seed, epoch) alone, so a run resumed at any
            # batch trains exactly like an uninterrupted one.
            # Persistent workers: the sampler, in this process, draws each epoch's order and
            # seeds, so workers need not be restarted (seconds per epoch) to follow the epoch.
            return EpochSeededLoader(
                dataset,
                weights=self.balanced_weights(dataset) if self.sampling == "balanced" else None,
                seed=self.seed,
                current_epoch=self.current_epoch,
                trained_batches=self._trained_batches,
                persistent_workers=options["num_workers"] > 0,
                **options,
            )
        options.pop("shuffle")
        processes = process_group()[1]
        if len(dataset) < processes:
            # A process without a batch would skip the pass and leave the others waiting.
            raise DatasetError(
                f"data.root={self.index.root}: the {split} split has {len(dataset)} image(s), "
                f"fewer than the {processes} processes scoring it; add images or use fewer "
                "devices"
            )
        return DataLoader(
            dataset,
            # Its own shard of the split in each process of a distributed run, no image twice.
            sampler=ShardSampler(len(dataset)),
            persistent_workers=options["num_workers"] > 0,
            worker_init_fn=ignore_stop_signals,
            **options,
        )

    def balanced_weights(self, dataset: Dataset) -> list[float]:
        """A weight per training sample such that every (source, class) pair is drawn as
        often as every other: each source weighs the same, and within it each class."""
        samples = getattr(dataset, "samples", None)
        if samples is None:
            raise ConfigError(
                "data.sampling=balanced: the training split is read from stored features "
                "here; set data.feature_cache=false"
            )
        groups = [(self.index.source_of(path), min(label, 1)) for path, label in samples]
        sizes = Counter(groups)
        if len({source for source, _ in sizes}) < 2:
            log.warning(
                "data.sampling=balanced: the training split has one source; "
                "only its classes are balanced"
            )
        return [1.0 / sizes[group] for group in groups]

    def current_epoch(self) -> int:
        """The epoch the next training iterator is for.

        Not `trainer.current_epoch`: a fit resumed from an end-of-epoch checkpoint makes its
        first iterator before Lightning counts the checkpoint's epoch as completed. The count
        of processed epochs is right at both moments (Lightning sets sampler epochs from it).
        """
        if self.trainer is None:
            return 0
        return self.trainer.fit_loop.epoch_progress.current.processed

    def _trained_batches(self) -> int:
        """Batches of the current epoch trained so far: where a resumed pass starts."""
        if self.trainer is None:
            return 0
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.ready

    def train_dataloader(self) -> DataLoader:
        return self.dataloader("train", cached="train" in self.cached_datasets)

    def val_dataloader(self) -> DataLoader:
        return self.dataloader("val", cached="val" in self.cached_datasets)

    def test_dataloader(self) -> DataLoader:
        return self.dataloader("test")


def _check_positive_int(key: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{key}={value}: must be a positive integer")
