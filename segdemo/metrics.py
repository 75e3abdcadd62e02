"""Streaming confusion matrix and the segmentation scores derived from it (IoU, mIoU, accuracy).

Conventions: ``matrix[g, p]`` counts pixels whose ground truth is ``g`` and prediction is ``p``
(rows = ground truth, columns = prediction). Pixels whose target equals ``ignore_index`` are
skipped. Scores returned by :meth:`ConfusionMatrix.iou`, :meth:`~ConfusionMatrix.miou` and
:meth:`~ConfusionMatrix.pixel_accuracy` are fractions in [0, 1]; only :meth:`~ConfusionMatrix.summary`
turns them into percentages for display.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import torch
import torch.distributed as dist

from segdemo.labels import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES

__all__ = ["ConfusionMatrix"]


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        x = np.ascontiguousarray(x)
        # torch.from_numpy warns on read-only arrays (e.g. decoded images); copy those instead.
        return torch.from_numpy(x if x.flags.writeable else x.copy())
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


class ConfusionMatrix:
    """Accumulates a ``num_classes x num_classes`` confusion matrix over many batches.

    Args:
        num_classes: number of classes (19 for the Cityscapes trainIds).
        ignore_index: target value whose pixels are not counted.
        device: where the matrix lives (``None`` -> CPU). Inputs on another device are counted on
            their own device and only the small C x C result is moved, so GPU inputs never need
            to be copied to the host.
    """

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        ignore_index: int = IGNORE_INDEX,
        device: torch.device | str | None = None,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} collides with a class id (0..{num_classes - 1})")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64, device=self.device)

    # ------------------------------------------------------------------ accumulation
    @property
    def matrix(self) -> torch.Tensor:
        """The int64 C x C count matrix (rows = ground truth, columns = prediction)."""
        return self._matrix

    def reset(self) -> None:
        """Zero all counts."""
        self._matrix.zero_()

    def update(self, pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> None:
        """Add one batch.

        Args:
            pred: integer class ids with the same shape as ``target`` (N x H x W, H x W, ...), or
                floating-point logits/probabilities with one extra class axis (N x C x H x W for an
                N x H x W target, C x H x W for an H x W target), which are arg-maxed.
            target: integer ground-truth trainIds; ``ignore_index`` pixels are skipped.

        Raises:
            ValueError: on shape mismatch, non-integer ids, or ids outside ``0..C-1`` (the target may
                also hold ``ignore_index``; a prediction is only checked where the target is valid).
        """
        pred_t = _as_tensor(pred, "pred")
        target_t = _as_tensor(target, "target")
        C = self.num_classes

        if target_t.is_floating_point() or target_t.is_complex() or target_t.dtype == torch.bool:
            raise ValueError(f"target must hold integer class ids, got dtype {target_t.dtype}")
        if pred_t.dim() == target_t.dim() + 1:
            # Logits: the class axis is 1 for batched input (N x C x H x W), 0 for a single C x H x W map.
            class_axis = 1 if target_t.dim() >= 3 else 0
            if pred_t.shape[class_axis] != C:
                raise ValueError(
                    f"logits have {pred_t.shape[class_axis]} channels on axis {class_axis} (shape "
                    f"{tuple(pred_t.shape)}), expected num_classes={C}"
                )
            pred_t = pred_t.argmax(dim=class_axis)
        elif pred_t.is_floating_point() or pred_t.is_complex() or pred_t.dtype == torch.bool:
            raise ValueError(
                f"pred must hold integer class ids (or logits with an extra class axis), got dtype "
                f"{pred_t.dtype} with shape {tuple(pred_t.shape)} for target shape {tuple(target_t.shape)}"
            )
        if pred_t.shape != target_t.shape:
            raise ValueError(
                f"shape mismatch: pred {tuple(pred_t.shape)} vs target {tuple(target_t.shape)} (logits must "
                "be N x C x H x W for an N x H x W target)"
            )
        if pred_t.device != target_t.device:
            pred_t = pred_t.to(target_t.device)

        # uint8 targets cannot hold the comparisons below without wrap-around doubts: widen once.
        target_t = target_t.reshape(-1).long()
        pred_t = pred_t.reshape(-1).long()
        valid = target_t != self.ignore_index
        target_t = target_t[valid]
        pred_t = pred_t[valid]
        if target_t.numel() == 0:
            return

        bad_target = (target_t < 0) | (target_t >= C)
        if bool(bad_target.any()):
            bad = torch.unique(target_t[bad_target])[:10].tolist()
            raise ValueError(
                f"target has values outside 0..{C - 1} that are not ignore_index={self.ignore_index}: {bad}"
            )
        bad_pred = (pred_t < 0) | (pred_t >= C)
        if bool(bad_pred.any()):
            bad = torch.unique(pred_t[bad_pred])[:10].tolist()
            raise ValueError(f"pred has values outside 0..{C - 1} on valid target pixels: {bad}")

        counts = torch.bincount(target_t * C + pred_t, minlength=C * C).reshape(C, C)
        self._matrix += counts.to(self._matrix.device)

    def merge(self, other: ConfusionMatrix) -> Self:
        """Add another matrix's counts into this one (in place) and return ``self``."""
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"can only merge a ConfusionMatrix, got {type(other).__name__}")
        if other.num_classes != self.num_classes:
            raise ValueError(
                f"cannot merge {other.num_classes}-class matrix into {self.num_classes}-class one"
            )
        self._matrix += other._matrix.to(self._matrix.device)
        return self

    def __iadd__(self, other: ConfusionMatrix) -> Self:
        return self.merge(other)

    def all_reduce(self) -> Self:
        """Sum the matrix over all ranks when ``torch.distributed`` is initialised; no-op otherwise.

        Call it exactly once, after the last :meth:`update` on every rank (calling it twice would
        count every pixel ``world_size`` times again). Returns ``self``.
        """
        if not (dist.is_available() and dist.is_initialized()):
            return self
        work = self._matrix
        if dist.get_backend() == "nccl" and work.device.type != "cuda":
            # NCCL only reduces CUDA tensors; go through the current GPU and come back.
            work = work.to(torch.device("cuda", torch.cuda.current_device()))
        else:
            work = work.clone()
        dist.all_reduce(work, op=dist.ReduceOp.SUM)
        self._matrix.copy_(work)
        return self

    # ------------------------------------------------------------------ scores
    def _as_numpy(self) -> np.ndarray:
        return self._matrix.detach().cpu().numpy().astype(np.float64)

    def iou(self) -> np.ndarray:
        """Per-class IoU ``tp / (tp + fp + fn)`` as a float64 array of fractions.

        NaN for a class that appears neither in the ground truth nor in the predictions (it
        cannot be scored); 0 for a class present in the ground truth but never predicted correctly.
        """
        m = self._as_numpy()
        tp = np.diag(m)
        union = m.sum(axis=1) + m.sum(axis=0) - tp
        out = np.full(self.num_classes, np.nan, dtype=np.float64)
        np.divide(tp, union, out=out, where=union > 0)
        return out

    def miou(self) -> float:
        """Mean IoU over the classes that have a defined IoU, as a fraction in [0, 1].

        NaN when no valid pixel has been counted.
        """
        iou = self.iou()
        defined = iou[~np.isnan(iou)]
        # Explicit check instead of np.nanmean so an empty matrix gives NaN without a RuntimeWarning.
        return float(defined.mean()) if defined.size else math.nan

    def pixel_accuracy(self) -> float:
        """Fraction of counted pixels predicted correctly (NaN when nothing was counted)."""
        m = self._as_numpy()
        total = m.sum()
        return float(np.trace(m) / total) if total > 0 else math.nan

    def summary(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """Scores in percent rounded to 2 decimals, for display.

        Args:
            class_names: one name per class; ``None`` -> ``CLASS_NAMES`` when there are 19 classes,
                otherwise the class indices as strings.

        Returns:
            ``{"miou": float, "pixel_accuracy": float, "iou": {name: float}}`` (NaN stays NaN).
        """
        if class_names is None:
            class_names = (
                CLASS_NAMES
                if self.num_classes == len(CLASS_NAMES)
                else [str(i) for i in range(self.num_classes)]
            )
        if len(class_names) != self.num_classes:
            raise ValueError(f"got {len(class_names)} class names for {self.num_classes} classes")

        def pct(x: float) -> float:
            return round(100.0 * float(x), 2)

        return {
            "miou": pct(self.miou()),
            "pixel_accuracy": pct(self.pixel_accuracy()),
            "iou": {name: pct(v) for name, v in zip(class_names, self.iou())},
        }

    def __repr__(self) -> str:
        return (
            f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
            f"pixels={int(self._matrix.sum())}, miou={self.miou():.4f})"
        )


def row_normalised(confusion: np.ndarray) -> np.ndarray:
    """A C x C confusion matrix (rows = ground truth) as the share of each true class's pixels predicted as
    each class, in percent; NaN rows for classes absent from the ground truth."""
    confusion = np.asarray(confusion, dtype=np.float64)
    totals = confusion.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, 100.0 * confusion / totals, np.nan)
