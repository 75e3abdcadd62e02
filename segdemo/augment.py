"""The report's training-time augmentations, on a whole batch on the training device.

Loader workers only decode and resize (or read a cache); every random change happens here, on the batch,
after it reached the device: one random draw per *sample* (each image its own flip, jitter, blur, gamma), from
an explicit ``torch.Generator`` on that device. So the CPU does no float work per pixel, a step needs no host
synchronisation, and a run keyed to its seed, rank and step resumes exactly.

Names accepted by :class:`BatchAugment` (see :data:`AUGMENTATIONS`):

========  ===========================================================================
none      no augmentation
aug1      horizontal flip, p = 0.5, image and label together
aug2      colour jitter, Gaussian blur, gamma correction, each independently p = 0.5
aug12     aug1 then aug2
========  ===========================================================================

Each photometric operation is torchvision's (``torchvision.transforms.v2.functional.adjust_brightness``,
``adjust_contrast``, ``adjust_saturation``, ``adjust_hue``, ``gaussian_blur``, ``adjust_gamma``) with a
factor per sample instead of one per call; ``tests/test_augment.py`` checks each against torchvision,
sample by sample. Colour jitter applies brightness, contrast, saturation and hue in this fixed order
(torchvision's ``ColorJitter`` draws an order per call).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

AUGMENTATIONS: tuple[str, ...] = ("none", "aug1", "aug2", "aug12")
"""Valid names for :class:`BatchAugment` (e.g. for argparse ``choices``)."""

_GREY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


@dataclass(frozen=True)
class Photometric:
    """Per-sample colour jitter, Gaussian blur and gamma, each applied with its own probability.

    ``brightness``, ``contrast`` and ``saturation`` draw a factor in ``[max(0, 1 - v), 1 + v]``, ``hue`` a
    shift
    in ``[-hue, hue]`` (as ``torchvision.transforms.v2.ColorJitter``); the blur a sigma in ``blur_sigma``;
    gamma
    an exponent in ``gamma_range``. A probability of 0 switches an operation off.
    """

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    p_jitter: float = 0.0
    blur_kernel: int = 5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    p_blur: float = 0.0
    gamma_range: tuple[float, float] = (1.0, 1.0)
    p_gamma: float = 0.0

    def __post_init__(self) -> None:
        if self.blur_kernel < 1 or self.blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be odd and positive, got {self.blur_kernel}")
        if not 0 < self.gamma_range[0] <= self.gamma_range[1]:
            raise ValueError(f"gamma_range must satisfy 0 < low <= high, got {self.gamma_range}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """``images``: float N x 3 x H x W in [0, 1]; returns a new batch, also in [0, 1]."""
        _check_images(images)
        n = images.shape[0]

        def draw(low: float, high: float) -> Tensor:
            return _uniform(n, low, high, generator, images)

        def fires(p: float) -> Tensor:
            return _uniform(n, 0.0, 1.0, generator, images) < p

        out = images
        if self.p_jitter > 0:
            jittered = out
            for amount, op in (
                (self.brightness, _brightness),
                (self.contrast, _contrast),
                (self.saturation, _saturation),
            ):
                if amount > 0:
                    jittered = op(jittered, draw(max(0.0, 1.0 - amount), 1.0 + amount))
            if self.hue > 0:
                jittered = _hue(jittered, draw(-self.hue, self.hue))
            out = _where(fires(self.p_jitter), jittered, out)
        if self.p_blur > 0:
            out = _where(fires(self.p_blur), _blur(out, draw(*self.blur_sigma), self.blur_kernel), out)
        if self.p_gamma > 0:
            out = _where(fires(self.p_gamma), out.clamp(0.0, 1.0).pow(_column(draw(*self.gamma_range))), out)
        return out.clamp(0.0, 1.0)  # a blur's float rounding may step a hair outside


AUG2 = Photometric(
    brightness=0.4,
    contrast=0.4,
    saturation=0.4,
    hue=0.1,
    p_jitter=0.5,
    blur_kernel=5,
    blur_sigma=(0.1, 2.0),
    p_blur=0.5,
    gamma_range=(0.7, 1.5),
    p_gamma=0.5,
)
"""Aug2: strong enough to perturb colour statistics, mild enough that every class stays recognisable."""


def dacs_strong(color_jitter: float, blur: bool) -> Photometric:
    """DACS's augmentation of mixed images: colour jitter (``s, s, s, s / 2``, p = 0.8), blur (p = 0.5)."""
    s = float(color_jitter)
    return Photometric(
        brightness=s,
        contrast=s,
        saturation=s,
        hue=min(0.5, s / 2),
        p_jitter=0.8 if s > 0 else 0.0,
        blur_kernel=5,
        blur_sigma=(0.15, 1.15),
        p_blur=0.5 if blur else 0.0,
    )


class BatchAugment:
    """One of :data:`AUGMENTATIONS` on a batch: ``images, labels = augment(images, labels, generator)``.

    ``images`` float N x 3 x H x W in [0, 1], ``labels`` N x H x W; flips move both together, photometric
    operations touch the images only.
    """

    def __init__(self, name: str | None) -> None:
        key = "none" if name is None else str(name).strip().lower()
        if key not in AUGMENTATIONS:
            raise ValueError(
                f"unknown augmentation {name!r}: valid names are {', '.join(AUGMENTATIONS)} (or None)"
            )
        self.name = key
        self.flip = key in ("aug1", "aug12")
        self.photometric = AUG2 if key in ("aug2", "aug12") else None

    def __call__(self, images: Tensor, labels: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        _check_images(images)
        if labels.shape[0] != images.shape[0] or labels.shape[-2:] != images.shape[-2:]:
            raise ValueError(f"labels {tuple(labels.shape)} do not fit images {tuple(images.shape)}")
        if self.flip:
            flipped = _uniform(images.shape[0], 0.0, 1.0, generator, images) < 0.5
            images = _where(flipped, images.flip(-1), images)
            labels = torch.where(flipped.view(-1, *[1] * (labels.dim() - 1)), labels.flip(-1), labels)
        if self.photometric is not None:
            images = self.photometric(images, generator)
        return images, labels

    def __repr__(self) -> str:
        return f"BatchAugment({self.name!r})"


# ---------------------------------------------------------------------------------------------
# The operations, each with one factor per sample (torchvision's formulas)
# ---------------------------------------------------------------------------------------------


def _check_images(images: Tensor) -> None:
    if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(
            f"expected float images N x 3 x H x W in [0, 1], got {images.dtype} {tuple(images.shape)}"
        )


def _uniform(n: int, low: float, high: float, generator: torch.Generator, like: Tensor) -> Tensor:
    # Drawn on the generator's device (the batch's, in training), so nothing crosses between host and device.
    values = torch.rand(n, generator=generator, device=generator.device, dtype=torch.float32)
    return (low + (high - low) * values).to(device=like.device, dtype=like.dtype)


def _column(values: Tensor) -> Tensor:
    return values.view(-1, 1, 1, 1)


def _where(chosen: Tensor, yes: Tensor, no: Tensor) -> Tensor:
    return torch.where(chosen.view(-1, 1, 1, 1), yes, no)


def _grey(images: Tensor) -> Tensor:
    r, g, b = images.unbind(dim=1)
    return (_GREY[0] * r + _GREY[1] * g + _GREY[2] * b).unsqueeze(1)


def _blend(images: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    ratio = _column(factor)
    return (ratio * images + (1.0 - ratio) * other).clamp(0.0, 1.0)


def _brightness(images: Tensor, factor: Tensor) -> Tensor:
    return _blend(images, torch.zeros_like(images), factor)


def _contrast(images: Tensor, factor: Tensor) -> Tensor:
    return _blend(images, _grey(images).mean(dim=(1, 2, 3), keepdim=True), factor)


def _saturation(images: Tensor, factor: Tensor) -> Tensor:
    return _blend(images, _grey(images), factor)


def _hue(images: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue by ``shift`` (in turns) per sample, through HSV as PIL and torchvision do."""
    r, g, b = images.unbind(dim=1)
    maxc, minc = images.amax(dim=1), images.amin(dim=1)
    value, spread = maxc, maxc - minc
    grey = spread == 0  # hue and saturation are 0 there; avoid dividing by 0
    saturation = spread / torch.where(maxc == 0, torch.ones_like(maxc), maxc)
    safe = torch.where(grey, torch.ones_like(spread), spread)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(grey, torch.zeros_like(hue), hue)
    hue = (hue / 6.0 + 1.0).remainder(1.0)
    hue = (hue + shift.view(-1, 1, 1)).remainder(1.0)
    # HSV back to RGB: the sector i = floor(6 h) picks which of v, p, q, t each channel gets.
    sector6 = hue * 6.0
    sector = torch.floor(sector6)
    frac = sector6 - sector
    p = (value * (1.0 - saturation)).clamp(0.0, 1.0)
    q = (value * (1.0 - saturation * frac)).clamp(0.0, 1.0)
    t = (value * (1.0 - saturation * (1.0 - frac))).clamp(0.0, 1.0)
    sector = sector.long().remainder(6)
    choices = torch.stack((value, p, q, t), dim=1)  # N x 4 x H x W
    table = torch.tensor([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]], device=images.device)
    index = table[:, sector].permute(1, 0, 2, 3)  # N x 3 x H x W: for each channel, which of v, p, q, t
    return choices.gather(1, index)


def _gaussian_kernels(sigma: Tensor, size: int) -> Tensor:
    """N x size normalised 1-D Gaussian kernels (torchvision's ``_get_gaussian_kernel1d``, one sigma each)."""
    half = (size - 1) * 0.5
    x = torch.linspace(-half, half, steps=size, device=sigma.device, dtype=sigma.dtype)
    pdf = torch.exp(-0.5 * (x.view(1, -1) / sigma.view(-1, 1)).pow(2))
    return pdf / pdf.sum(dim=1, keepdim=True)


def _blur(images: Tensor, sigma: Tensor, size: int) -> Tensor:
    """Gaussian blur with one sigma per sample: separable, reflect padding, as ``gaussian_blur``."""
    n, c, h, w = images.shape
    kernel = _gaussian_kernels(sigma, size).repeat_interleave(c, dim=0)  # (N * C) x size
    pad = size // 2
    x = images.reshape(1, n * c, h, w)
    x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    x = F.conv2d(x, kernel.view(n * c, 1, 1, size), groups=n * c)
    x = F.conv2d(x, kernel.view(n * c, 1, size, 1), groups=n * c)
    return x.view(n, c, h, w)
