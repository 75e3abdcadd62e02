"""ImageNet normalisation: the one mean and standard deviation, and the one normalise (torchvision's), used by
training, inference and checkpoint metadata alike (the ResNet backbones were pretrained with them)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _check(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> None:
    if not x.is_floating_point():
        # Normalising uint8 would silently give garbage: the caller forgot to scale to [0, 1].
        raise TypeError(f"expected a floating point tensor in [0, 1], got dtype {x.dtype}")
    if x.ndim < 3 or x.shape[-3] != len(mean) or len(mean) != len(std):
        raise ValueError(
            f"expected a (N x) {len(mean)} x H x W tensor matching mean/std of length "
            f"{len(mean)}/{len(std)}, got shape {tuple(x.shape)}"
        )


def normalize(
    batch: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """``(batch - mean) / std`` per channel for a float N x 3 x H x W (or 3 x H x W) tensor in [0, 1].

    :func:`torchvision.transforms.v2.functional.normalize`, on any device and dtype; the input is not
    modified.
    """
    _check(batch, mean, std)
    return F.normalize(batch, [float(m) for m in mean], [float(s) for s in std])


def denormalize(
    batch: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """Invert :func:`normalize`: ``batch * std + mean`` (values in [0, 1] again, not clamped)."""
    _check(batch, mean, std)
    return F.normalize(
        batch, [-float(m) / float(s) for m, s in zip(mean, std, strict=True)], [1.0 / float(s) for s in std]
    )
