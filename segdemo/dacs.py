"""DACS: Domain Adaptation via Cross-domain mixed Sampling (Tranheden et al., WACV 2021).

The building blocks of a DACS training step, as plain functions:

* :func:`class_mix` pastes half of the classes of a source (GTA5) image onto a target
  (Cityscapes) image, mixing the labels the same way (target labels = teacher pseudo-labels);
* :func:`confidence_weight` (and :func:`pixel_weight`, from class probabilities) gives the per-pixel weight
  of the mixed pseudo-label loss;
* :func:`ema_update` keeps the teacher an exponential moving average of the student;
* :func:`batch_statistics` lets the teacher normalise target images with their own BatchNorm statistics;
* :func:`pseudo_labels` turns the teacher's logits into pseudo-labels and their confidence, and
  :class:`PseudoLabelQuality` scores them against ground truth that DACS never sees (a diagnosis).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from segdemo.adabn import batchnorm_layers
from segdemo.labels import (
    IGNORE_INDEX,
    NUM_CLASSES,
)

__all__ = [
    "ClassMixResult",
    "MixPreview",
    "PseudoLabelQuality",
    "batch_statistics",
    "class_mask",
    "class_mix",
    "confidence_weight",
    "confident_share",
    "ema_update",
    "mask_image",
    "mix_preview",
    "pixel_weight",
    "present_classes",
    "pseudo_labels",
    "weight_image",
]


CONFIDENCE_THRESHOLD = 0.968
"""DACS's (and the report's) pseudo-label confidence threshold: pixels at least this sure count."""
_LABEL_VALUES = 256  # label maps hold uint8 values: trainIds 0-18 and 255 = ignore


class ClassMixResult(NamedTuple):
    """Output of :func:`class_mix`."""

    image: torch.Tensor
    """N x 3 x H x W mixed images (source pixels where ``mask``, target pixels elsewhere)."""
    label: torch.Tensor
    """N x H x W mixed labels (source label where ``mask``, target pseudo-label elsewhere)."""
    mask: torch.Tensor
    """N x H x W bool, True on the pasted source pixels."""
    chosen: torch.Tensor
    """N x 256 bool: ``chosen[i, c]`` when class ``c`` of sample ``i`` was pasted (on the batch's device)."""

    @property
    def classes(self) -> list[torch.Tensor]:
        """Per sample, the sorted 1-D int64 CPU tensor of source classes that were pasted."""
        return [torch.nonzero(row).flatten() for row in self.chosen.cpu()]


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
            f"target_image shape {tuple(target_image.shape)} != source_image shape "
            f"{tuple(source_image.shape)}"
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

    Every one of the 256 label values of sample ``i`` gets a key ``torch.rand(N, 256,
    generator=generator)[i]``;
    of the ``n`` classes present in ``source_label[i]`` (``IGNORE_INDEX`` excluded), the ``ceil(n / 2)`` with
    the
    smallest keys are pasted. The whole choice is tensor work on the batch's device, with no host
    synchronisation, and a seeded generator makes it reproducible (``None`` uses torch's global CPU
    generator).
    A sample with no valid source class gets an empty mask: its output is the target image and label.

    Args:
        source_image, target_image: ``N x 3 x H x W`` float images.
        source_label: ``N x H x W`` int source ground truth (values 0-255).
        target_label: ``N x H x W`` int target pseudo-labels (from the teacher).
        generator: ``torch.Generator`` for the choice; keys are drawn on its device.
    """
    _check_batch(source_image, source_label, target_image, target_label)
    n = source_label.shape[0]
    device = source_label.device
    values = source_label.reshape(n, -1).long().clamp(0, _LABEL_VALUES - 1)
    present = torch.zeros(n, _LABEL_VALUES, dtype=torch.bool, device=device).scatter_(1, values, True)
    present[:, IGNORE_INDEX] = False
    keys = torch.rand(
        n, _LABEL_VALUES, generator=generator, device=generator.device if generator is not None else "cpu"
    ).to(device)
    keys = torch.where(present, keys, torch.full_like(keys, 2.0))  # absent classes sort last
    positions = torch.arange(_LABEL_VALUES, device=device).expand(n, -1)
    rank = torch.empty(n, _LABEL_VALUES, dtype=torch.long, device=device).scatter_(
        1, keys.argsort(dim=1), positions
    )
    wanted = (present.sum(dim=1, keepdim=True) + 1) // 2  # ceil(n / 2)
    chosen = present & (rank < wanted)
    mask = chosen.gather(1, values).view_as(source_label)
    image = torch.where(mask.unsqueeze(1), source_image, target_image)
    label = torch.where(mask, source_label, target_label.to(source_label.dtype))
    return ClassMixResult(image=image, label=label, mask=mask, chosen=chosen)


def pixel_weight(
    teacher_probs: torch.Tensor, mask: torch.Tensor, threshold: float = CONFIDENCE_THRESHOLD
) -> torch.Tensor:
    """Per-pixel weight of the loss on a ClassMix-ed pseudo-label, from the teacher's class probabilities.

    ``teacher_probs``: ``N x C x H x W`` softmax probabilities of the teacher on the target images; see
    :func:`confidence_weight`, which takes only their maximum per pixel.
    """
    if teacher_probs.dim() != 4:
        raise ValueError(f"teacher_probs must be N x C x H x W, got shape {tuple(teacher_probs.shape)}")
    return confidence_weight(teacher_probs.max(dim=1).values, mask, threshold)


def confident_share(confidence: torch.Tensor, threshold: float = CONFIDENCE_THRESHOLD) -> torch.Tensor:
    """Per image, the share of its pixels whose ``confidence`` (``N x H x W``) is at least ``threshold``:
    DACS's weight of the pseudo-label loss. float32, ``N``."""
    return (confidence >= threshold).flatten(1).float().mean(dim=1)


def confidence_weight(
    confidence: torch.Tensor,
    mask: torch.Tensor,
    threshold: float = CONFIDENCE_THRESHOLD,
    per_pixel: bool = False,
) -> torch.Tensor:
    """Per-pixel weight of the loss on a ClassMix-ed pseudo-label.

    Pasted source pixels (``mask`` True / > 0.5) carry ground truth and get weight 1. Every other
    pixel gets one scalar per image: the fraction of the teacher's pixels on that target image whose
    largest class probability (``confidence``, ``N x H x W``) is ``>= threshold`` (DACS's confidence weight,
    its reference code's "threshold_uniform"; that code pools the fraction over the whole batch, here it is
    per sample). ``per_pixel``: instead, each target pixel weighs 1 where ``confidence >= threshold`` and 0
    elsewhere (the reference code's other choice, "threshold").

    Returns:
        ``N x H x W`` float tensor (dtype of ``confidence``).
    """
    if confidence.dim() != 3:
        raise ValueError(f"confidence must be N x H x W, got shape {tuple(confidence.shape)}")
    if tuple(mask.shape) != tuple(confidence.shape):
        raise ValueError(f"mask must be N x H x W = {tuple(confidence.shape)}, got {tuple(mask.shape)}")
    n, h, w = confidence.shape
    if per_pixel:
        target = (confidence >= threshold).to(confidence.dtype)
    else:
        fraction = confident_share(confidence, threshold).to(confidence.dtype)  # one scalar per image
        target = fraction.view(n, 1, 1).expand(n, h, w)
    is_source = mask if mask.dtype == torch.bool else mask > 0.5
    ones = torch.ones((), dtype=confidence.dtype, device=confidence.device)
    return torch.where(is_source.to(confidence.device), ones, target)


def _percent(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.1f}"


def pseudo_labels(teacher_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DACS's pseudo-label per pixel and its confidence, the largest softmax probability, from the teacher's
    ``N x C x H x W`` logits: ``(confidence, label)``, float32 and int64 ``N x H x W``."""
    if teacher_logits.dim() != 4:
        raise ValueError(f"teacher_logits must be N x C x H x W, got shape {tuple(teacher_logits.shape)}")
    confidence, label = torch.softmax(teacher_logits.float(), dim=1).max(dim=1)
    return confidence, label


class PseudoLabelQuality:
    """How far a DACS teacher's pseudo-labels can be trusted, counted against ground truth (which DACS itself
    never sees): per confidence threshold, the share of the labelled pixels the teacher is that sure of and
    how many of those it labels right, also per true class; and DACS's loss weight on target pixels
    (:func:`confidence_weight`'s fraction, over all pixels of an image) averaged over the images.

    Streaming like :class:`segdemo.metrics.ConfusionMatrix`: :meth:`update` batch by batch, counts on the CPU.
    """

    def __init__(
        self,
        thresholds: Sequence[float] = (0.5, 0.9, CONFIDENCE_THRESHOLD),
        num_classes: int = NUM_CLASSES,
        weight_threshold: float = CONFIDENCE_THRESHOLD,
    ) -> None:
        if not thresholds or any(not 0.0 <= t <= 1.0 for t in thresholds):
            raise ValueError(f"thresholds must be in [0, 1], got {list(thresholds)}")
        self.thresholds = tuple(sorted({float(t) for t in thresholds}))
        self.num_classes = num_classes
        self.weight_threshold = weight_threshold
        zeros = torch.zeros(len(self.thresholds), num_classes, dtype=torch.long)
        self.confident = zeros.clone()  # [threshold, true class]: labelled pixels at least that sure
        self.confident_right = zeros.clone()  # ... of which the pseudo-label is the true class
        self.pixels = torch.zeros(num_classes, dtype=torch.long)  # labelled pixels per true class
        self.right = torch.zeros(num_classes, dtype=torch.long)  # ... labelled right at any confidence
        self.weight_sum = 0.0
        self.images = 0

    def update(self, confidence: torch.Tensor, pseudo: torch.Tensor, label: torch.Tensor) -> None:
        """Count one batch: ``N x H x W`` confidence, pseudo-label (:func:`pseudo_labels`) and true trainIds
        (``IGNORE_INDEX`` and ids outside the classes are left out)."""
        if not (confidence.shape == pseudo.shape == label.shape) or confidence.dim() != 3:
            raise ValueError(
                "confidence, pseudo-labels and labels must all be N x H x W, got "
                f"{tuple(confidence.shape)}, {tuple(pseudo.shape)} and {tuple(label.shape)}"
            )
        confidence, pseudo, label = (t.detach().cpu() for t in (confidence, pseudo, label))
        self.weight_sum += float(confident_share(confidence, self.weight_threshold).sum())
        self.images += confidence.shape[0]
        valid = (label >= 0) & (label < self.num_classes)
        truth, sure, guess = label[valid].long(), confidence[valid], pseudo[valid].long()
        hit = guess == truth
        c = self.num_classes
        self.pixels += torch.bincount(truth, minlength=c)
        self.right += torch.bincount(truth[hit], minlength=c)
        for i, threshold in enumerate(self.thresholds):
            kept = sure >= threshold
            self.confident[i] += torch.bincount(truth[kept], minlength=c)
            self.confident_right[i] += torch.bincount(truth[kept & hit], minlength=c)

    @staticmethod
    def _share(part: torch.Tensor, whole: torch.Tensor) -> np.ndarray:
        """``part / whole`` in percent, NaN where ``whole`` is 0."""
        whole = whole.double()
        return torch.where(whole > 0, 100.0 * part.double() / whole.clamp(min=1), float("nan")).numpy()

    def coverage(self) -> np.ndarray:
        """Per threshold: percent of the labelled pixels the teacher is at least that sure of."""
        return self._share(self.confident.sum(dim=1), self.pixels.sum().expand(len(self.thresholds)))

    def accuracy(self) -> np.ndarray:
        """Per threshold: percent of those confident pixels whose pseudo-label is right (NaN: none)."""
        return self._share(self.confident_right.sum(dim=1), self.confident.sum(dim=1))

    def pixel_accuracy(self) -> float:
        """Percent of the labelled pixels whose pseudo-label is right, at any confidence."""
        return float(self._share(self.right.sum(), self.pixels.sum()))

    def mean_weight(self) -> float:
        """DACS's loss weight on target pixels, mean over the images (0 to 1; NaN before any update)."""
        return self.weight_sum / self.images if self.images else float("nan")

    def table(self, class_names: Sequence[str]) -> str:
        """Markdown: one table per threshold, then one per true class (the classes with labelled pixels)."""
        from segdemo.results import markdown_table  # the one Markdown writer; not needed to train

        sure = f"at least {self.weight_threshold:g} sure"
        parts = [
            markdown_table(
                ["threshold", "labelled pixels at least this sure (%)", "pseudo-labels right there (%)"],
                [
                    [f"{t:g}" + (" (DACS)" if t == self.weight_threshold else ""), _percent(c), _percent(r)]
                    for t, c, r in zip(self.thresholds, self.coverage(), self.accuracy())
                ],
            ),
            (
                f"Pseudo-labels right at any confidence: {_percent(self.pixel_accuracy())}% of the labelled "
                f"pixels. DACS's loss weight on target pixels (the share of an image's pixels {sure}), mean "
                f"over {self.images} images: {self.mean_weight():.3f}."
            ),
        ]
        if self.weight_threshold in self.thresholds:
            i = self.thresholds.index(self.weight_threshold)
            columns = (
                self._share(self.pixels, self.pixels.sum().expand(self.num_classes)),
                self._share(self.right, self.pixels),
                self._share(self.confident[i], self.pixels),
                self._share(self.confident_right[i], self.confident[i]),
            )
            header = ["true class", "share of labelled pixels (%)", "right at any confidence (%)"]
            lines = [
                [class_names[k], *(_percent(column[k]) for column in columns)]
                for k in range(self.num_classes)
                if self.pixels[k] > 0
            ]
            parts.append(markdown_table([*header, f"{sure} (%)", "right there (%)"], lines))
        return "\n\n".join(parts)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, step: int, momentum: float = 0.99) -> None:
    """Move the teacher towards the student (mean-teacher update, in place).

    ``alpha = min(1 - 1 / (step + 1), momentum)``, then every teacher parameter becomes
    ``alpha * teacher + (1 - alpha) * student``. The ramp makes the teacher a plain running mean of
    the students early on (step 0 copies the student) and caps its memory at about ``1 / (1 - momentum)``
    steps later (100 for DACS's 0.99). Buffers (BatchNorm running statistics, counters) are copied from the
    student rather than averaged. Parameters and buffers are paired in registration order, so a wrapped
    student (e.g. DistributedDataParallel's ``.module``) must be unwrapped first by the caller if needed.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    alpha = min(1.0 - 1.0 / (step + 1), momentum)
    t_params, s_params = list(teacher.parameters()), list(student.parameters())
    t_bufs, s_bufs = list(teacher.buffers()), list(student.buffers())
    if len(t_params) != len(s_params) or len(t_bufs) != len(s_bufs):
        raise ValueError(
            f"teacher and student differ: {len(t_params)} vs {len(s_params)} parameters, {len(t_bufs)} vs "
            f"{len(s_bufs)} buffers"
        )
    for t, s in zip(t_params, s_params):
        if t.shape != s.shape:
            raise ValueError(
                f"parameter shape mismatch: teacher {tuple(t.shape)} vs student {tuple(s.shape)}"
            )
    # One fused multi-tensor update; mul then add rather than lerp: with alpha == 0 the teacher becomes the
    # student's values bit-exactly.
    if t_params:
        torch._foreach_mul_(t_params, alpha)
        torch._foreach_add_(t_params, [s.detach() for s in s_params], alpha=1.0 - alpha)
    if t_bufs:
        torch._foreach_copy_(t_bufs, s_bufs)


# ---------------------------------------------------------------------------------------------
# App-facing helpers on 8-bit images and numpy label maps
# ---------------------------------------------------------------------------------------------


@contextmanager
def batch_statistics(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, ``model``'s BatchNorm layers normalise with the statistics of the batch they see.

    DACS's reference code keeps its EMA teacher in train mode, so the teacher's pseudo-labels on a
    target batch use that batch's own BatchNorm statistics rather than running statistics gathered on
    source images. That matters for a network whose BatchNorm learns its statistics (BiSeNet): with
    source statistics the teacher is unconfident on target images and DACS's confidence weight stays
    near 0 (docs/results.md). The rest of the model stays in its mode and the running statistics are
    left exactly as they were (momentum 0, counter restored).
    """
    saved = []
    # Layers without running statistics normalise with the batch's in any mode: nothing to switch for them.
    for module in batchnorm_layers(model):
        saved.append((module, module.training, module.momentum, module.num_batches_tracked.clone()))
        module.train()
        module.momentum = 0.0  # running = 1.0 * running + 0.0 * batch: unchanged
    try:
        yield model
    finally:
        for module, training, momentum, counter in saved:
            module.train(training)
            module.momentum = momentum
            module.num_batches_tracked.copy_(counter)


class MixPreview(NamedTuple):
    """Output of :func:`mix_preview`: one ClassMix, as numpy arrays the size of the source image."""

    image: np.ndarray
    """H x W x 3 uint8 mixed image."""
    label: np.ndarray
    """H x W uint8 mixed label: source label where ``mask``, the pseudo-label (or 255) elsewhere."""
    mask: np.ndarray
    """H x W bool, True on the pasted source pixels."""
    classes: list[int]
    """The pasted source classes (trainIds), sorted."""
    target: np.ndarray
    """The target image resized to the source's size."""
    weight: np.ndarray | None
    """H x W float32 loss weight (:func:`pixel_weight`), or None without a teacher."""
    confident_fraction: float | None
    """Fraction of target pixels the teacher is confident about (the weight outside the mask)."""


def present_classes(label: np.ndarray) -> list[int]:
    """The trainIds 0-18 that occur in a label map, sorted."""
    values = np.unique(np.asarray(label))
    return [int(v) for v in values if 0 <= v < NUM_CLASSES]


def _resize_map(values: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    import cv2

    height, width = size
    if values.shape[:2] == (height, width):
        return values
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.resize(values, (width, height), interpolation=interpolation)


def mix_preview(
    source_image: np.ndarray,
    source_label: np.ndarray,
    target_image: np.ndarray,
    classes: Sequence[int] | None = None,
    seed: int = 0,
    pseudo_label: np.ndarray | None = None,
    confidence: np.ndarray | None = None,
    threshold: float = CONFIDENCE_THRESHOLD,
) -> MixPreview:
    """One DACS ClassMix on 8-bit images, for display.

    ``classes=None`` draws half of the source's classes as :func:`class_mix` does, with a CPU
    generator seeded by ``seed``; otherwise exactly ``classes`` are pasted. The target image (and the
    teacher's ``pseudo_label`` / ``confidence`` maps, e.g. from :func:`segdemo.inference.predict` on
    the target) are resized to the source's size. Without ``pseudo_label`` the target part of the
    mixed label is ignore (255), and without ``confidence`` there is no weight map.

    The weight (:func:`confidence_weight`) only uses the teacher's largest class probability per pixel, the
    confidence map.
    """
    from segdemo.fda import resize_to

    source_label = np.asarray(source_label)
    source_image = np.asarray(source_image)
    if source_label.shape != source_image.shape[:2]:
        raise ValueError(
            f"the source label is {source_label.shape[1]} x {source_label.shape[0]} pixels but the source "
            f"image is {source_image.shape[1]} x {source_image.shape[0]}"
        )
    size = source_label.shape
    target = resize_to(target_image, size)
    # Copies: uploads decoded by PIL and cached arrays are read-only, torch wants writable memory.
    src_t = torch.from_numpy(np.array(source_image, dtype=np.uint8)).permute(2, 0, 1)[None]
    tgt_t = torch.from_numpy(np.array(target, dtype=np.uint8)).permute(2, 0, 1)[None]
    lab_t = torch.from_numpy(source_label.astype(np.int64))[None]
    if pseudo_label is None:
        pseudo = torch.full_like(lab_t, IGNORE_INDEX)
    else:
        pseudo = torch.from_numpy(
            _resize_map(np.asarray(pseudo_label, np.uint8), size, True).astype(np.int64)
        )[None]
    if classes is None:
        generator = torch.Generator().manual_seed(int(seed))
        mixed = class_mix(src_t, lab_t, tgt_t, pseudo, generator=generator)
        image, label, mask, chosen = mixed.image, mixed.label, mixed.mask, mixed.classes[0].tolist()
    else:
        chosen = sorted({int(c) for c in classes})
        mask = class_mask(lab_t, chosen)
        image = torch.where(mask.unsqueeze(1), src_t, tgt_t)
        label = torch.where(mask, lab_t, pseudo)
    weight, fraction = None, None
    if confidence is not None:
        conf = _resize_map(np.asarray(confidence, np.float32), size, False)
        weight_t = confidence_weight(torch.from_numpy(conf)[None], mask, threshold)[0]
        weight = weight_t.numpy().astype(np.float32)
        fraction = float((conf >= threshold).mean())
    return MixPreview(
        image=image[0].permute(1, 2, 0).numpy().astype(np.uint8),
        label=label[0].numpy().astype(np.uint8),
        mask=mask[0].numpy(),
        classes=chosen,
        target=target,
        weight=weight,
        confident_fraction=fraction,
    )


def weight_image(weight: np.ndarray) -> np.ndarray:
    """An H x W weight map in [0, 1] as an RGB picture (viridis: 0 dark blue, 1 yellow)."""
    from segdemo.viz import viridis_image

    return viridis_image(weight)


def mask_image(image: np.ndarray, mask: np.ndarray, darken: float = 0.25) -> np.ndarray:
    """The image where ``mask`` is True, darkened to ``darken`` of its brightness elsewhere."""
    image = np.asarray(image)
    out = np.rint(image.astype(np.float32) * darken).astype(np.uint8)
    out[np.asarray(mask, bool)] = image[np.asarray(mask, bool)]
    return out
