"""The report's training-time augmentations, as joint image + mask torchvision v2 transforms.

Every pipeline is called as ``image, mask = aug(image, mask)`` on a uint8
``tv_tensors.Image`` (3 x H x W) and a ``tv_tensors.Mask`` (H x W), which is exactly what
:class:`segdemo.datasets.GTA5` and :class:`segdemo.datasets.Cityscapes` pass to their
``transform`` argument. Geometric ops (``aug1``) move image and mask together; photometric ops
(``aug2``) touch the image only. All randomness comes from torch's global generator, so a run is
reproducible under ``torch.manual_seed`` (DataLoader workers seed it per worker).

Names accepted by :func:`build_augmentation` (see :data:`AUGMENTATIONS`):

========  ===========================================================================
none      no augmentation (``None``)
aug1      horizontal flip, p = 0.5
aug2      colour jitter, Gaussian blur, gamma correction, each independently p = 0.5
aug12     aug1 then aug2
========  ===========================================================================
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

AUGMENTATIONS: tuple[str, ...] = ("none", "aug1", "aug2", "aug12")
"""Valid names for :func:`build_augmentation` (e.g. for argparse ``choices``)."""

# Strengths of the photometric ops: strong enough to perturb colour statistics,
# mild enough that every class stays recognisable.
COLOR_JITTER = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1}
BLUR_KERNEL = 5
BLUR_SIGMA = (0.1, 2.0)
GAMMA_RANGE = (0.7, 1.5)


class RandomGamma(v2.Transform):
    """Gamma correction ``x -> x ** gamma`` with gamma drawn uniformly from ``gamma_range``.

    Always applies (wrap it in ``v2.RandomApply`` for a probability). Only images and videos are
    changed; masks, boxes and other tv_tensors pass through untouched.
    """

    def __init__(self, gamma_range: tuple[float, float] = GAMMA_RANGE) -> None:
        super().__init__()
        low, high = gamma_range
        if not 0 < low <= high:
            raise ValueError(f"gamma_range must satisfy 0 < low <= high, got {gamma_range}")
        self.gamma_range = (float(low), float(high))

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        # One gamma per call, shared by every image in the sample.
        low, high = self.gamma_range
        return {"gamma": torch.empty(()).uniform_(low, high).item()}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        # _call_kernel passes through types adjust_gamma has no kernel for (Mask, BoundingBoxes, ...).
        return self._call_kernel(F.adjust_gamma, inpt, gamma=params["gamma"])


def aug1() -> v2.Compose:
    """Horizontal flip with p = 0.5, applied to image and mask together."""
    return v2.Compose([v2.RandomHorizontalFlip(p=0.5)])


def aug2() -> v2.Compose:
    """Colour jitter, Gaussian blur and gamma correction, each applied independently with p = 0.5.

    Photometric only: the mask is returned unchanged.
    """
    return v2.Compose(
        [
            v2.RandomApply([v2.ColorJitter(**COLOR_JITTER)], p=0.5),
            v2.RandomApply([v2.GaussianBlur(kernel_size=BLUR_KERNEL, sigma=BLUR_SIGMA)], p=0.5),
            v2.RandomApply([RandomGamma(GAMMA_RANGE)], p=0.5),
        ]
    )


def build_augmentation(name: str | None) -> v2.Compose | None:
    """Return the joint transform called ``name`` (one of :data:`AUGMENTATIONS`), or ``None`` for "none".

    Raises ``ValueError`` listing the valid names for anything else.
    """
    key = "none" if name is None else str(name).strip().lower()
    if key == "none":
        return None
    if key == "aug1":
        return aug1()
    if key == "aug2":
        return aug2()
    if key == "aug12":
        return v2.Compose([aug1(), aug2()])
    raise ValueError(f"unknown augmentation {name!r}: valid names are {', '.join(AUGMENTATIONS)} (or None)")
