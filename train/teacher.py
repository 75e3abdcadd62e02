"""``python -m train teacher``: a checkpoint as DACS's teacher, its pseudo-labels scored against ground truth.

DACS weights its loss on target pixels by the share of them the teacher is at least 0.968 sure of. This
command shows what that share is for a checkpoint on labelled target images (their labels are used only to
score, as DACS never sees them), how often the confident pseudo-labels are right, and which classes they
cover: the diagnosis of a DACS run whose target term stays small.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch

from segdemo.checkpoints import CheckpointError, load_model
from segdemo.dacs import PseudoLabelQuality, batch_statistics, pseudo_labels
from segdemo.datasets import Cityscapes, DatasetError
from segdemo.hardware import resolve_device
from segdemo.labels import CLASS_NAMES
from train.data import data_kind


class TeacherError(RuntimeError):
    pass


def teacher_report(
    checkpoint: Path,
    cityscapes: Path,
    split: str = "train",
    images: int = 256,
    batch_size: int = 16,
    statistics: str = "batch",
    device: str | None = None,
) -> str:
    """Markdown: ``checkpoint`` run as DACS's teacher on the first ``images`` of a Cityscapes-layout split,
    ``batch_size`` at a time at its input size, BatchNorm on each batch's own ``statistics`` ("batch", as
    the demo's DACS teacher runs) or the checkpoint's "running" ones."""
    if statistics not in ("batch", "running"):
        raise TeacherError(f"statistics must be batch or running, not {statistics!r}")
    if batch_size < 2 or images < batch_size:
        raise TeacherError(
            f"need a batch of at least 2 images and at least one batch (--images {images}, "
            f"--batch-size {batch_size}): BatchNorm on batch statistics needs two"
        )
    try:
        dev = resolve_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model, meta = load_model(checkpoint, device=dev)
        height, width = meta["input_size"]
        data = Cityscapes(cityscapes, split, size=(width, height), mean=meta["mean"], std=meta["std"])
    except (ValueError, CheckpointError, DatasetError) as exc:
        raise TeacherError(str(exc)) from exc
    count = min(images, len(data)) // batch_size * batch_size
    if count == 0:
        raise TeacherError(f"{cityscapes} has {len(data)} {split} images, less than a batch of {batch_size}")
    quality = PseudoLabelQuality()
    model.eval()
    with torch.no_grad(), batch_statistics(model) if statistics == "batch" else nullcontext():
        for start in range(0, count, batch_size):
            batch = [data[i] for i in range(start, start + batch_size)]
            x = torch.stack([image for image, _ in batch]).to(dev)
            labels = torch.stack([label for _, label in batch])
            confidence, pseudo = pseudo_labels(model(x))
            quality.update(confidence, pseudo, labels)
    note = " (procedural data, not Cityscapes)" if data_kind(cityscapes) == "procedural" else ""
    normalised = (
        "each batch's own statistics (as the DACS teacher runs)"
        if statistics == "batch"
        else "the checkpoint's running statistics"
    )
    header = (
        f"{checkpoint} as DACS's teacher on {count} {split} images of {cityscapes}{note}, at "
        f"{width}x{height}, {batch_size} at a time, BatchNorm on {normalised}; the labels only score the "
        "pseudo-labels"
    )
    return f"{header}\n\n{quality.table(CLASS_NAMES)}"
