"""The demo's profiles: the input size, batch, learning rate and steps of every variant at each scale of
``python -m train demo`` (train/demo.py runs them). No heavy imports: the command line reads these for its
help text.
"""

from __future__ import annotations

from collections.abc import Mapping
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
        summary=(
            "128x64 inputs; from nothing on two CPU cores 5.6-6.3 min with bfloat16 (Intel Xeon with AMX), "
            "6.5-7.3 min with bfloat16 (AMD EPYC), 10.2-11.4 min in float32 there, 12.9-16.9 min on an Intel "
            "Xeon without bfloat16, about 50 min on an AMD EPYC with AVX2 only"
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
        summary=(
            "256x128 inputs, longer schedules and rare class sampling for the target-trained networks, hard "
            "example mining; from "
            "nothing on two CPU cores 24-25 min with bfloat16 (Intel Xeon with AMX), an estimated 38-40 min "
            "with bfloat16 on an AMD EPYC, about an hour in float32, an estimated 3 hours on an AMD EPYC "
            "with AVX2 only"
        ),
    ),
}
DEFAULT_PROFILE = "default"
DEMO_SIZE = DEMO_PROFILES[DEFAULT_PROFILE].size
