"""The demo's profiles: the input size, batch, learning rate and steps of every variant at each scale of
``python -m train demo`` (train/demo.py runs them). No heavy imports: the command line reads these for its
help text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEMO_VARIANTS = (
    "bisenet_gta5",  # first, so that a usable checkpoint exists within minutes
    "bisenet_gta5_aug1",
    "bisenet_gta5_aug2",
    "bisenet_gta5_aug12",
    "bisenet_gta5_fda",
    "bisenet_gta5_dacs",
    "bisenet_cityscapes",
    "deeplabv2_cityscapes",
)
"""Every variant of the report, in the order the demo trains them."""


@dataclass(frozen=True)
class DemoProfile:
    """One scale of the demo: the input size, the batch and the steps of every variant."""

    name: str
    size: tuple[int, int]
    """(width, height) for training and evaluation."""
    batch_size: int
    lr: float
    steps: Mapping[str, int]
    """Optimiser steps per variant at ``--scale 1``."""
    overrides: Mapping[str, Mapping[str, Any]]
    """Config changes for single variants (DeepLabV2's smaller batch)."""
    common: Mapping[str, Any]
    """Config changes for every variant (the full profile's loss)."""
    folder: str
    """Where under ``--out`` its checkpoints go ("" = ``--out`` itself)."""
    summary: str
    """One line for ``--help`` and Home."""
    image_cost: Mapping[str, float]
    """Seconds per training image of a variant relative to the source-only BiSeNet's (1 when absent): what
    :func:`seconds_left` assumes until it has timed the variant on this machine."""


def _steps(steps: int, deeplab_steps: int, target_steps: int | None = None) -> dict[str, int]:
    """Steps per variant: ``steps`` for the BiSeNet variants trained on the source, ``target_steps`` (default
    ``steps``) for the target-trained BiSeNet, ``deeplab_steps`` for DeepLabV2."""
    special = {"bisenet_cityscapes": target_steps or steps, "deeplabv2_cityscapes": deeplab_steps}
    return {name: special.get(name, steps) for name in DEMO_VARIANTS}


# Batch 16 rather than 8: two threads share a 16-image step better (benchmarks/demo_speed.py: 1.7x the
# one-thread rate at batch 16, 1.3x at batch 8), so a variant sees its images in less time. Twice the batch,
# twice Adam's learning rate (the linear scaling rule): 160 steps of 16 at 2e-3 gave the target-trained
# BiSeNet 32.2 mIoU, at 1e-3 26.4 (docs/results.md). DeepLabV2 keeps batch 2 (a ResNet-101 step costs ten
# BiSeNet steps) at 1e-3. The full profile gives the two target-trained networks three and two times the
# default's steps: at 160 steps the target-trained BiSeNet learnt none of the thin classes at 256x128 (35.1
# mIoU), at 480 sixteen of the nineteen (46.4); the whole profile stays within an hour (docs/results.md).
# Its loss mines the hard pixels (ohem_threshold 0.7, BiSeNet's reference loss): on the same scenes that took
# the target-trained BiSeNet from 43.6 to 47.0 and traffic sign from 0 to 17; on generator version 4 it
# reaches 50.6 with eighteen classes clearly above zero, motorcycle at 1.0 (docs/results.md). The two
# target-trained networks draw their images by rare class sampling (DAFormer's, T 0.01), at no cost in time:
# the BiSeNet's motorcycle 9.3 and 1.3 in seeds 0 and 1 (without it 1.0 and 0.0), traffic sign 20.2 against
# 15.8, mIoU 51.3 against 50.9; DeepLabV2 unchanged at 17.3 (docs/results.md).
# Relative costs per image as the demo printed them (docs/results.md, seconds per variant over its images):
# DACS trains on a source and a mixed batch and runs its teacher, 2.0-2.4x the source-only BiSeNet's time
# per image at 128x64 (Intel Xeon with AMX in bfloat16, AMD EPYC in float32), 1.7x at 256x128; DeepLabV2's
# ResNet-101 15-21x at 128x64, 5.2x at 256x128 (batch 4). They vary by a fifth between CPUs: the estimate
# of the time left is an estimate until every variant has run once.
DEFAULT_IMAGE_COST = {"bisenet_gta5_dacs": 2.2, "deeplabv2_cityscapes": 16.0}
FULL_IMAGE_COST = {"bisenet_gta5_dacs": 1.7, "deeplabv2_cityscapes": 5.2, "bisenet_cityscapes": 0.83}
DEMO_PROFILES = {
    "default": DemoProfile(
        name="default",
        size=(128, 64),
        batch_size=16,
        lr=2e-3,
        steps=_steps(160, 60),
        overrides={"deeplabv2_cityscapes": {"batch_size": 2, "lr": 1e-3}},
        common={},
        folder="",
        image_cost=DEFAULT_IMAGE_COST,
        summary=(
            "128x64 inputs; from nothing on two CPU cores 5.6-6.3 min with bfloat16 (Intel Xeon with AMX), "
            "6.5-7.3 min with bfloat16 (AMD EPYC), 10.2-11.4 min in float32 there, "
            "10.7-11.2 min in float32 on an Intel Xeon with AVX512-BF16 but no AMX, "
            "12.1-12.3 min on an AMD EPYC with AVX2 only, 12.9-16.9 min on an Intel Xeon without bfloat16, "
            "about 50 min on a slower, shared AMD EPYC with AVX2 only"
        ),
    ),
    "full": DemoProfile(
        name="full",
        size=(256, 128),
        batch_size=16,
        lr=2e-3,
        steps=_steps(160, 160, target_steps=480),
        overrides={
            "bisenet_cityscapes": {"rcs_temperature": 0.01},
            "deeplabv2_cityscapes": {"batch_size": 4, "lr": 1e-3, "rcs_temperature": 0.01},
        },
        common={"ohem_threshold": 0.7},
        folder="full",
        image_cost=FULL_IMAGE_COST,
        summary=(
            "256x128 inputs, longer schedules and rare class sampling for the target-trained networks, hard "
            "example mining; from "
            "nothing on two CPU cores 24-25 min with bfloat16 (Intel Xeon with AMX), 53 min in float32 on "
            "an Intel Xeon with AVX512-BF16 but no AMX, an estimated 38-40 min "
            "with bfloat16 on an AMD EPYC, 58.5 min in float32 on an AMD EPYC with AVX2 only, an estimated "
            "3 hours on a slower, shared one"
        ),
    ),
}
DEFAULT_PROFILE = "default"
DEMO_SIZE = DEMO_PROFILES[DEFAULT_PROFILE].size


def seconds_left(
    image_cost: Mapping[str, float],
    finished: Sequence[tuple[str, int, float]],
    current: tuple[str, int, int, int, float] | None,
    pending: Sequence[tuple[str, int]],
) -> float | None:
    """Estimated training seconds left in a demo run: ``finished`` holds (variant, images, seconds) of the
    runs timed so far on this machine, ``current`` (variant, images, step, steps, seconds so far) of the run
    in progress, ``pending`` (variant, images) of the runs after it. A variant timed before costs what it
    cost per image then; any other costs ``image_cost`` (a profile's) times this machine's seconds per
    source-only image, from everything timed so far. None until a run has taken a step."""
    timed = [(name, images, seconds) for name, images, seconds in finished if images > 0]
    step = current[2] if current else 0
    if current and step > 0:
        name, images, step, steps, seconds = current
        timed.append((name, round(images * step / steps), seconds))
    work = sum(images * image_cost.get(name, 1.0) for name, images, _ in timed)
    if work <= 0:
        return None
    base = sum(seconds for *_, seconds in timed) / work  # seconds per source-only image, here
    per_image: dict[str, list[float]] = {}
    for name, images, seconds in finished:
        if images > 0:
            per_image.setdefault(name, []).append(seconds / images)

    def cost(name: str, images: int) -> float:
        known = per_image.get(name)
        return images * (sum(known) / len(known) if known else base * image_cost.get(name, 1.0))

    left = sum(cost(name, images) for name, images in pending)
    if current:
        name, images, step, steps, seconds = current
        if step > 0:
            left += seconds * (steps - step) / step  # the run's own pace so far
        else:
            left += cost(name, images)
    return left


def describe_time_left(seconds: object) -> str:
    """``seconds_left``'s estimate in words: "about 12 min left", "under a minute left", or "" for None or
    anything else that is not a number of seconds (a progress file is read as it is)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < 1e9:
        return ""
    if seconds < 60:
        return "under a minute left"
    return f"about {max(1, round(seconds / 60))} min left"
