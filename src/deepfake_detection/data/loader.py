"""A training DataLoader whose every pass depends only on (seed, epoch), and can start mid-way.

Each image's augmentation is seeded on its own (`SeededSample`), so what a batch holds does not
depend on which worker decoded it, how many workers there are, or what ran before it. A pass
can then begin at any batch and still yield exactly the batches an uninterrupted pass would:
that is what lets a run stopped mid-epoch resume to the same weights.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from deepfake_detection.seeding import epoch_seed


class SeededSample(NamedTuple):
    """A dataset key: which image, and the seed its augmentation is drawn from."""

    index: int
    seed: int


def process_group() -> tuple[int, int]:
    """(rank, world size) in the distributed process group (DDP); (0, 1) without one.

    Read when a pass starts, not when a loader is made: a loader may be built before
    Lightning has started the group.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class EpochShuffleSampler(Sampler[SeededSample]):
    """The epoch's shuffle order and per-image seeds, both drawn from (seed, epoch).

    With several processes (DDP), each takes a disjoint shard of that one order (rank r takes
    positions r, r + w, ...), all of equal length so that every process steps together: the
    last `size mod w` images of the epoch's order sit that epoch out. An image's augmentation
    seed does not depend on the number of processes.

    `start_at` makes the next pass of a given epoch leave out its first samples (of this
    process's shard), for a fit resumed mid-epoch; `len()` stays the full shard, which is
    what the trainer counts in.
    """

    def __init__(
        self,
        size: int,
        seed: int,
        current_epoch: Callable[[], int],
        weights: Sequence[float] | None = None,
    ) -> None:
        self.size = size
        self.seed = seed
        self.current_epoch = current_epoch
        #: Sampling weights (`data.sampling=balanced`): each epoch draws `size` samples with
        #: replacement in these proportions, instead of a permutation of all of them.
        self.weights = torch.as_tensor(weights, dtype=torch.float64) if weights else None
        self._start: tuple[int, int] | None = None  # (epoch, samples to leave out)

    def __len__(self) -> int:
        return self.size // process_group()[1]

    def start_at(self, epoch: int, samples: int) -> None:
        self._start = (epoch, samples)

    def __iter__(self) -> Iterator[SeededSample]:
        epoch = self.current_epoch()
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        if self.weights is None:
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = torch.multinomial(
                self.weights, self.size, replacement=True, generator=generator
            ).tolist()
        seeds = torch.randint(0, 2**62, (self.size,), generator=generator).tolist()
        # A permutation's image keeps its seed; a weighted draw may pick an image twice, and
        # each pick gets its own (its position's) seed, so no view repeats.
        keys = order if self.weights is None else range(self.size)
        pairs = [SeededSample(index, seeds[key]) for index, key in zip(order, keys, strict=True)]
        rank, world = process_group()
        shard = pairs[rank : self.size - self.size % world : world]
        start, self._start = self._start, None
        skip = start[1] if start is not None and start[0] == epoch else 0
        yield from shard[skip:]


class ShardSampler(Sampler[int]):
    """A scored split in order, every image exactly once across processes.

    Rank r takes images r, r + w, ...: shards differ in length by at most one, and nothing
    is padded in twice (as `DistributedSampler` does to even them out), so metrics synced over
    the processes count each image once.
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        rank, world = process_group()
        return len(range(rank, self.size, world))

    def __iter__(self) -> Iterator[int]:
        rank, world = process_group()
        return iter(range(rank, self.size, world))


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave Ctrl+C and SIGTERM to the main process.

    A terminal sends Ctrl+C, and a job scheduler may send SIGTERM, to every process of the job;
    workers that died of it would break the batches the main process still fetches while it
    finishes the current step and saves its interrupt checkpoint. The main process shuts its
    workers down itself, and a worker whose parent died exits on its own.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class EpochSeededLoader(DataLoader):
    """Shuffles with `EpochShuffleSampler`, and tells Lightning where a pass was stopped.

    Lightning stores `state_dict()` in every checkpoint and, when it resumes from one saved
    mid-epoch, hands it back through `load_state_dict()` before it makes the first iterator.
    The position saved is the number of batches trained in the epoch (`trained_batches`), not
    the number fetched, which runs ahead because of prefetching.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        seed: int,
        current_epoch: Callable[[], int],
        trained_batches: Callable[[], int],
        weights: Sequence[float] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("shuffle", None)
        sampler = EpochShuffleSampler(len(dataset), seed, current_epoch, weights)
        kwargs.setdefault("sampler", sampler)
        kwargs.setdefault("worker_init_fn", ignore_stop_signals)
        super().__init__(dataset, **kwargs)
        self.current_epoch = current_epoch
        self.trained_batches = trained_batches

    def state_dict(self) -> dict[str, int]:
        trained = self.trained_batches()
        # At an epoch's end Lightning may already count the next epoch: nothing to skip then.
        return {"epoch": self.current_epoch(), "batches": trained if trained < len(self) else 0}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if isinstance(self.sampler, EpochShuffleSampler) and self.batch_size:
            self.sampler.start_at(int(state["epoch"]), int(state["batches"]) * self.batch_size)
