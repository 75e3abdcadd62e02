"""Evaluating networks on a labelled data set: the confusion matrix through each network's inference form."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from segdemo.datasets import collate_usable
from segdemo.metrics import ConfusionMatrix
from segdemo.normalization import IMAGENET_MEAN, IMAGENET_STD, normalize


def evaluation_protocol(input_size: tuple[int, int] | list[int], full_resolution: bool) -> dict[str, Any]:
    """How an evaluation scored: the network's input (width, height), and the labels' resolution."""
    return {
        "input_size": list(input_size),
        "labels": "native resolution, predictions upsampled"
        if full_resolution
        else "resized to the input size (nearest)",
    }


def inference_form(model: nn.Module) -> nn.Module:
    """The exact inference form (BatchNorm folded, ...) where there is one, else the model as it is."""
    from segdemo.models.fast import prepare_for_inference

    try:
        return prepare_for_inference(model)
    except (TypeError, ValueError):  # another network, or one with SyncBatchNorm
        return model


@torch.inference_mode()
def evaluate(
    models: nn.Module | list[nn.Module],
    dataset,
    device: str | torch.device = "cpu",
    batch_size: int = 4,
    limit: int = 0,
    precision: torch.dtype = torch.float32,
    num_workers: int = 0,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> ConfusionMatrix:
    """Confusion matrix over ``dataset`` (uint8 items from ``as_uint8=True`` datasets, normalised here with
    ``mean`` / ``std``, or float items already normalised), through each model's inference form.

    Several models are an ensemble: their softmax outputs are averaged (FDA's multi-band transfer). Labels of
    another size than the images (``label_size``) are scored at theirs, the logits upsampled. Under
    torch.distributed every rank scores its share of the images and the matrices are summed.
    """
    models = [models] if isinstance(models, nn.Module) else list(models)
    device = torch.device(device)
    for model in models:
        model.eval()
    runners = [inference_form(model) for model in models]
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    matrix = ConfusionMatrix(device=device)
    count = min(limit, len(dataset)) if limit else len(dataset)
    subset = torch.utils.data.Subset(dataset, range(rank, count, world))
    loader = DataLoader(
        subset,
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        collate_fn=collate_usable,
    )
    autocast = torch.autocast(device.type, dtype=precision, enabled=precision != torch.float32)
    for batch in loader:
        if batch is None:  # every image of it skipped (bad_samples=skip): nothing to score
            continue
        images, labels = batch
        images = images.to(device, non_blocking=True)
        if images.dtype == torch.uint8:
            images = normalize(images.float().div_(255.0), mean or IMAGENET_MEAN, std or IMAGENET_STD)
        labels = labels.to(device, non_blocking=True).long()
        with autocast:
            logits = [runner(images).float() for runner in runners]
        if labels.shape[-2:] != logits[0].shape[-2:]:
            logits = [
                F.interpolate(x, size=labels.shape[-2:], mode="bilinear", align_corners=False) for x in logits
            ]
        scores = logits[0] if len(logits) == 1 else sum(torch.softmax(x, dim=1) for x in logits)
        matrix.update(scores.argmax(dim=1), labels)
    return matrix.all_reduce()
