"""The training data: building the data sets of a variant, the loaders and their order.

Loader workers only decode and resize (or read the sample cache) and hand over uint8 batches; the device
converts, augments and normalises them. The order is a function of (seed, epoch), each rank taking its
share, so a resumed run continues with the very batch it would have had.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, Subset

from segdemo.datasets import GTA5, NATIVE, Cityscapes, DatasetError, collate_usable
from segdemo.labels import CLASS_NAMES, NUM_CLASSES
from train.config import Config
from train.errors import TrainingError


@dataclass
class Data:
    labeled: torch.utils.data.Dataset
    target: torch.utils.data.Dataset | None  # unlabeled target train images (FDA, DACS)
    val: torch.utils.data.Dataset | None


def data_kind(root: str | Path | None) -> str:
    """ "procedural" for data made by ``segdemo.synthetic``, else "real"."""
    from segdemo.synthetic import is_procedural

    return "procedural" if root and is_procedural(root) else "real"


def describe_data(config: Config, gta5: str | Path | None, cityscapes: str | Path | None) -> dict[str, Any]:
    """What a checkpoint was trained on, for its metadata (procedural results must say so)."""
    from segdemo.synthetic import generator_version

    roots = [cityscapes] + ([gta5] if config.labeled == "gta5" else [])
    kinds = {data_kind(r) for r in roots}
    return {
        "kind": kinds.pop() if len(kinds) == 1 else "mixed",
        "labeled": config.labeled,
        "target": "cityscapes",
        "uses_target_images": config.uses_target_images,
        "gta5_root": str(gta5) if gta5 and config.labeled == "gta5" else None,
        "cityscapes_root": str(cityscapes),
        # which version of the generator drew procedural data (the demo retrains on a newer one); None: real
        "generator": max((v for r in roots if r and (v := generator_version(r)) is not None), default=None),
    }


def build_data(config: Config, gta5: str | Path | None, cityscapes: str | Path | None) -> Data:
    """uint8 datasets (the device converts, augments and normalises), read through the cache if one is set."""
    if config.labeled == "gta5" and not gta5:
        raise TrainingError(f"{config.variant} trains on GTA5: pass --gta5 DIR")
    if not cityscapes:
        raise TrainingError(
            f"{config.variant} needs Cityscapes (target images and the val split): pass --cityscapes DIR"
        )
    common = {
        "as_uint8": True,
        "on_bad_sample": config.bad_samples,  # "stop" at a corrupt file, or "skip" it
        "cache_dir": config.cache_dir or None,
    }
    if config.labeled == "gta5":
        labeled = GTA5(gta5, size=config.gta5_size, **common)
        train_size = config.gta5_size
    else:
        labeled = Cityscapes(cityscapes, "train", size=config.cityscapes_size, **common)
        train_size = config.cityscapes_size
    # Target images are loaded at the labeled size: FDA and ClassMix combine the two pixel by pixel.
    # Adaptation
    # needs no target labels, so none are read (or required).
    target = (
        Cityscapes(cityscapes, "train", size=train_size, labels=False, **common)
        if config.uses_target_images
        else None
    )
    val = Cityscapes(
        cityscapes,
        "val",
        size=config.cityscapes_size,
        label_size=NATIVE if config.eval_full_resolution else None,
        **common,
    )
    if len(labeled) < config.batch_size:
        raise TrainingError(f"{len(labeled)} labeled images are fewer than batch_size={config.batch_size}")
    if config.in_memory:
        labeled = InMemory(labeled)
        target = InMemory(target) if target is not None else None
    return Data(labeled, target, val)


IN_MEMORY_LIMIT = 4 * 2**30
"""The most bytes :class:`InMemory` keeps; larger sets train from disk (or ``cache_dir``)."""


class InMemory(torch.utils.data.Dataset):
    """A uint8 dataset decoded once and kept in memory: each item is read from disk once per run, not once
    per epoch (the demo's 600-image domains at 128x64 take 20 MB). Other attributes (``mean``, ``std``,
    ``name``) are the wrapped dataset's."""

    def __init__(self, dataset, max_bytes: int = IN_MEMORY_LIMIT) -> None:
        self.dataset = dataset
        self.items: list[tuple[Tensor, ...] | None] = []
        held = 0
        for index in range(len(dataset)):
            item = dataset[index]  # None: a sample bad_samples=skip leaves out, as from disk
            held += sum(t.numel() * t.element_size() for t in item) if item is not None else 0
            # What all of them would take at the mean size so far: refused early, after one item if need be.
            if held * len(dataset) > max_bytes * (index + 1):
                raise TrainingError(
                    f"in_memory: the {len(dataset)} images of {getattr(dataset, 'name', 'this data set')} "
                    f"would take more than {max_bytes / 2**30:.1f} GiB at this size; train with "
                    "in_memory=false (and cache_dir to decode them once)"
                )
            self.items.append(item)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Tensor, ...] | None:
        return self.items[index]

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not yet set (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which container limits narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def loader_workers(config: Config) -> int:
    """``config.num_workers``, or for -1 the cores per training process on this machine (torchrun's local
    ranks
    share them), keeping one for the training process itself."""
    if config.num_workers >= 0:
        return config.num_workers
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(0, available_cores() // max(1, local) - 1)


RCS_MIN_SHARE = 3000 / (1914 * 1052)
"""Rare class sampling counts an image for a class only where the class covers at least this share of its
labelled pixels: DAFormer's 3,000 pixels of a 1914x1052 GTA5 frame, so that a sliver does not make an image
one to repeat."""


class _ClassPixels(torch.utils.data.Dataset):
    """Per image, its pixels of each class (loader workers count them; skipped samples count none)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Tensor:
        item = self.dataset[index]
        if item is None:
            return torch.zeros(NUM_CLASSES, dtype=torch.int64)
        label = item[1].flatten().long()
        return torch.bincount(label[label < NUM_CLASSES], minlength=NUM_CLASSES)


def class_pixel_counts(dataset, workers: int = 0, rank: int = 0, world: int = 1) -> Tensor:
    """``len(dataset) x NUM_CLASSES`` int64: each labelled image's pixels of each class, at the size it
    trains at (one pass over the labels; in-memory sets are counted where they are). With several ranks each
    counts every world-th image and leaves the other rows 0, so that summing the ranks' tables gives the whole
    one after a single pass between them."""
    counts = torch.zeros(len(dataset), NUM_CLASSES, dtype=torch.int64)
    mine = range(rank, len(dataset), world)
    if len(mine):
        loader = DataLoader(Subset(_ClassPixels(dataset), mine), batch_size=64, num_workers=workers)
        counts[rank::world] = torch.cat(list(loader))
    return counts


def rare_class_weights(counts: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """Rare class sampling (Hoyer et al., DAFormer, CVPR 2022): a class ``c`` is drawn with probability
    ``softmax((1 - f_c) / temperature)``, ``f_c`` its share of the labelled pixels, then an image among those
    where it covers at least :data:`RCS_MIN_SHARE`. Returns the per-image probabilities of that two-stage
    draw and the per-class ones (classes no image qualifies for get 0)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    counts = counts.double()
    pixels = counts.sum(dim=1, keepdim=True)
    qualifies = (counts > 0) & (counts >= RCS_MIN_SHARE * pixels)
    images_per_class = qualifies.sum(dim=0)
    if not bool((images_per_class > 0).any()):
        raise TrainingError("rare class sampling: no image has a labelled class (are the labels empty?)")
    frequency = counts.sum(dim=0) / counts.sum()
    logits = torch.where(images_per_class > 0, (1 - frequency) / temperature, -torch.inf)
    class_probability = torch.softmax(logits, dim=0)
    image_probability = (qualifies * (class_probability / images_per_class.clamp(min=1))).sum(dim=1)
    return image_probability, class_probability


def describe_rare_class_sampling(image_probability: Tensor, class_probability: Tensor, top: int = 4) -> str:
    """One line for the log: the classes drawn most often, and how unevenly images are drawn."""
    order = class_probability.argsort(descending=True)[:top]
    classes = ", ".join(f"{CLASS_NAMES[c]} {class_probability[c]:.2f}" for c in order.tolist())
    n = image_probability.numel()
    drawn = int((image_probability > 0).sum())
    return (
        f"rare class sampling: classes drawn most often {classes}; {drawn} of {n} images can be drawn, "
        f"the most likely {float(image_probability.max()) * n:.1f}x as often as in a uniform draw"
    )


class EpochSampler(Sampler[int]):
    """A fresh order per epoch from (seed, epoch), split across ranks, able to start mid-epoch: a permutation,
    or with ``weights`` (rare class sampling) as many draws with replacement, each image with its weight."""

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        weights: Tensor | None = None,
    ) -> None:
        self.size, self.batch_size, self.seed, self.rank, self.world = size, batch_size, seed, rank, world
        if weights is not None and weights.shape != (size,):
            raise ValueError(
                f"weights must hold one value per image ({size}), got shape {tuple(weights.shape)}"
            )
        self.weights = weights
        self.steps_per_epoch = size // (batch_size * world)
        self.epoch, self.skip_steps = 0, 0

    def set_epoch(self, epoch: int, skip_steps: int = 0) -> None:
        self.epoch, self.skip_steps = epoch, skip_steps

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        draws = self.steps_per_epoch * self.batch_size * self.world
        if self.weights is None:
            order = torch.randperm(self.size, generator=generator)[:draws]
        else:
            order = torch.multinomial(self.weights, draws, replacement=True, generator=generator)
        mine = order[self.rank :: self.world]
        return iter(mine[self.skip_steps * self.batch_size :].tolist())

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.skip_steps) * self.batch_size


class Batches:
    """Endless uint8 batches from one DataLoader whose worker processes live for the whole run.

    The batch at global step s is the same whether or not the run was resumed: the sampler's order depends on
    (seed, epoch) and the fixed ``weights`` of rare class sampling only, and the workers hold no randomness.
    ``wait_seconds`` adds up the time spent waiting for the loader.
    """

    def __init__(
        self,
        dataset,
        config: Config,
        seed: int,
        start_step: int,
        rank: int,
        world: int,
        pin_memory: bool = False,
        weights: Tensor | None = None,
    ) -> None:
        self.sampler = EpochSampler(len(dataset), config.batch_size, seed, rank, world, weights)
        if self.sampler.steps_per_epoch == 0:
            raise TrainingError(
                f"{len(dataset)} images cannot fill one batch of {config.batch_size} x {world} ranks"
            )
        self.epoch, skip = divmod(start_step, self.sampler.steps_per_epoch)
        self.sampler.set_epoch(self.epoch, skip)
        workers = loader_workers(config)
        self.loader = DataLoader(
            dataset,
            batch_size=config.batch_size,
            sampler=self.sampler,
            drop_last=True,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=pin_memory,
            collate_fn=collate_usable,
        )
        self._iterator: Iterator | None = None
        self.wait_seconds = 0.0

    def __iter__(self) -> Batches:
        return self

    def __next__(self) -> tuple[Tensor, ...]:
        started = time.perf_counter()
        try:
            while True:
                if self._iterator is None:
                    self._iterator = iter(self.loader)
                try:
                    batch = next(self._iterator)
                    if batch is None:  # every sample of it was skipped (bad_samples=skip)
                        raise DatasetError(
                            f"every sample of a batch of {self.loader.batch_size} could not be used "
                            "(bad_samples=skip); the data set is damaged: see the warnings above"
                        )
                    return batch
                except StopIteration:
                    self.epoch += 1
                    self.sampler.set_epoch(self.epoch, 0)
                    self._iterator = None
        except DatasetError as exc:
            raise _worker_error(exc) from None
        finally:
            self.wait_seconds += time.perf_counter() - started


def _worker_error(exc: DatasetError) -> DatasetError:
    """A bad sample read in a loader worker, reported by its own message (naming the file), not by the
    worker's traceback that DataLoader wraps around it."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Caught DatasetError"):
        return DatasetError(
            lines[-1].removeprefix("segdemo.datasets.DatasetError: ").removeprefix("DatasetError: ")
        )
    return exc
