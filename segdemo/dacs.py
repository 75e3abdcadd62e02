"""DACS: Domain Adaptation via Cross-domain mixed Sampling (Tranheden et al., WACV 2021).

The building blocks of a DACS training step, as plain functions:

* :func:`class_mix` pastes half of the classes of a source (GTA5) image onto a target
  (Cityscapes) image, mixing the labels the same way (target labels = teacher pseudo-labels);
* :func:`pixel_weight` gives the per-pixel weight of the mixed pseudo-label loss;
* :func:`ema_update` keeps the teacher an exponential moving average of the student.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from segdemo.labels import IGNORE_INDEX

__all__ = ["ClassMixResult", "class_mask", "class_mix", "ema_update", "pixel_weight"]


class ClassMixResult(NamedTuple):
    """Output of :func:`class_mix`."""

    image: torch.Tensor
    """N x 3 x H x W mixed images (source pixels where ``mask``, target pixels elsewhere)."""
    label: torch.Tensor
    """N x H x W mixed labels (source label where ``mask``, target pseudo-label elsewhere)."""
    mask: torch.Tensor
    """N x H x W bool, True on the pasted source pixels."""
    classes: list[torch.Tensor]
    """Per sample, the sorted 1-D int64 tensor of source classes that were pasted."""


def class_mask(label: torch.Tensor, classes: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """Boolean mask (same shape as ``label``) of the pixels whose value is one of ``classes``.

    ``classes`` applies to every pixel of ``label`` (H x W or N x H x W); an empty ``classes``
    gives an all-False mask.
    """
    classes_t = torch.as_tensor(classes, dtype=torch.int64, device=label.device).reshape(-1)
    if classes_t.numel() == 0:
        return torch.zeros(label.shape, dtype=torch.bool, device=label.device)
    return torch.isin(label.long(), classes_t)


def _check_batch(
    source_image: torch.Tensor,
    source_label: torch.Tensor,
    target_image: torch.Tensor,
    target_label: torch.Tensor,
) -> None:
    if source_image.dim() != 4:
        raise ValueError(f"source_image must be N x C x H x W, got shape {tuple(source_image.shape)}")
    if target_image.shape != source_image.shape:
        raise ValueError(
            f"target_image shape {tuple(target_image.shape)} != source_image shape {tuple(source_image.shape)}"
        )
    n, _, h, w = source_image.shape
    for name, lab in (("source_label", source_label), ("target_label", target_label)):
        if tuple(lab.shape) != (n, h, w):
            raise ValueError(f"{name} must be N x H x W = {(n, h, w)}, got {tuple(lab.shape)}")
        if lab.is_floating_point() or lab.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer class ids, got {lab.dtype}")


def class_mix(
    source_image: torch.Tensor,
    source_label: torch.Tensor,
    target_image: torch.Tensor,
    target_label: torch.Tensor,
    generator: torch.Generator | None = None,
) -> ClassMixResult:
    """ClassMix a batch: paste ``ceil(n / 2)`` random source classes of each sample onto its target.

    For sample ``i`` the ``n`` classes present in ``source_label[i]`` (``IGNORE_INDEX`` excluded) are
    sorted, ``torch.randperm(n, generator=generator)`` is drawn, and the classes at its first
    ``ceil(n / 2)`` positions are chosen, so a seeded CPU generator makes the mix reproducible
    (``None`` uses torch's global RNG). A sample with no valid source class gets an empty mask and
    its output is the target image and label unchanged.

    Args:
        source_image, target_image: ``N x 3 x H x W`` float images.
        source_label: ``N x H x W`` int source ground truth.
        target_label: ``N x H x W`` int target pseudo-labels (from the teacher).
        generator: CPU ``torch.Generator`` for the class choice.
    """
    _check_batch(source_image, source_label, target_image, target_label)
    masks = []
    chosen_per_sample = []
    for lab in source_label:
        present = torch.unique(lab)  # sorted
        present = present[present != IGNORE_INDEX].long()
        n = int(present.numel())
        # randperm is always drawn on the CPU so the same seed gives the same choice on any device.
        perm = torch.randperm(n, generator=generator)[: math.ceil(n / 2)]
        chosen = torch.sort(present.cpu()[perm]).values
        chosen_per_sample.append(chosen)
        masks.append(class_mask(lab, chosen))
    mask = torch.stack(masks)
    image = torch.where(mask.unsqueeze(1), source_image, target_image)
    label = torch.where(mask, source_label, target_label.to(source_label.dtype))
    return ClassMixResult(image=image, label=label, mask=mask, classes=chosen_per_sample)


def pixel_weight(teacher_probs: torch.Tensor, mask: torch.Tensor, threshold: float = 0.968) -> torch.Tensor:
    """Per-pixel weight of the loss on a ClassMix-ed pseudo-label.

    Pasted source pixels (``mask`` True / > 0.5) carry ground truth and get weight 1. Every other
    pixel gets one scalar per image: the fraction of the teacher's pixels on that target image whose
    max class probability is ``>= threshold`` (DACS's confidence weight; the original code pools
    this fraction over the whole batch, here it is per sample).

    Args:
        teacher_probs: ``N x C x H x W`` softmax probabilities of the teacher on the target images.
        mask: ``N x H x W`` bool or float ClassMix mask.
        threshold: confidence threshold (0.968 in DACS).

    Returns:
        ``N x H x W`` float tensor (dtype of ``teacher_probs``).
    """
    if teacher_probs.dim() != 4:
        raise ValueError(f"teacher_probs must be N x C x H x W, got shape {tuple(teacher_probs.shape)}")
    n, _, h, w = teacher_probs.shape
    if tuple(mask.shape) != (n, h, w):
        raise ValueError(f"mask must be N x H x W = {(n, h, w)}, got {tuple(mask.shape)}")
    confident = teacher_probs.max(dim=1).values >= threshold
    fraction = confident.flatten(1).to(teacher_probs.dtype).mean(dim=1)  # one scalar per image
    is_source = mask if mask.dtype == torch.bool else mask > 0.5
    ones = torch.ones((), dtype=teacher_probs.dtype, device=teacher_probs.device)
    return torch.where(is_source.to(teacher_probs.device), ones, fraction.view(n, 1, 1).expand(n, h, w))


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, step: int) -> None:
    """Move the teacher towards the student (mean-teacher update, in place).

    ``alpha = min(1 - 1 / (step + 1), 0.99)``, then every teacher parameter becomes
    ``alpha * teacher + (1 - alpha) * student``. The ramp makes the teacher a plain running mean of
    the students early on (step 0 copies the student) and caps the memory at ~100 steps later.
    Buffers (BatchNorm running statistics, counters) are copied from the student rather than
    averaged. Parameters and buffers are paired in registration order, so a wrapped student
    (e.g. DistributedDataParallel's ``.module``) must be unwrapped first by the caller if needed.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    alpha = min(1.0 - 1.0 / (step + 1), 0.99)
    t_params, s_params = list(teacher.parameters()), list(student.parameters())
    t_bufs, s_bufs = list(teacher.buffers()), list(student.buffers())
    if len(t_params) != len(s_params) or len(t_bufs) != len(s_bufs):
        raise ValueError(
            f"teacher and student differ: {len(t_params)} vs {len(s_params)} parameters, "
            f"{len(t_bufs)} vs {len(s_bufs)} buffers"
        )
    for t, s in zip(t_params, s_params):
        if t.shape != s.shape:
            raise ValueError(
                f"parameter shape mismatch: teacher {tuple(t.shape)} vs student {tuple(s.shape)}"
            )
        # mul_/add_ rather than lerp_: with alpha == 0 this yields the student's values bit-exactly.
        t.mul_(alpha).add_(s.detach(), alpha=1.0 - alpha)
    for t, s in zip(t_bufs, s_bufs):
        t.copy_(s)
