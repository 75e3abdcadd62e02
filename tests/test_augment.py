"""Tests for segdemo.augment: joint image + mask behaviour, probabilities, reproducibility."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from segdemo.augment import AUGMENTATIONS, RandomGamma, aug1, aug2, build_augmentation

H, W = 12, 16


def make_sample(seed: int = 0) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """A random uint8 image and a trainId mask, both with column 0 marked."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(30, 220, (3, H, W), dtype=torch.uint8, generator=g)
    image[:, :, 0] = torch.tensor([255, 0, 0], dtype=torch.uint8).view(3, 1)
    mask = torch.randint(0, 19, (H, W), dtype=torch.uint8, generator=g)
    mask[:, 0] = 255
    return tv_tensors.Image(image), tv_tensors.Mask(mask)


class Spy:
    """Wraps a transform and counts how often it is called."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def __call__(self, *inputs: Any) -> Any:
        self.calls += 1
        return self.inner(*inputs)


def test_build_augmentation_names() -> None:
    assert build_augmentation(None) is None
    assert build_augmentation("none") is None
    assert set(AUGMENTATIONS) == {"none", "aug1", "aug2", "aug12"}
    for name in ("aug1", "aug2", "aug12", " AUG12 "):
        assert isinstance(build_augmentation(name), v2.Compose)


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="aug3") as info:
        build_augmentation("aug3")
    for name in AUGMENTATIONS:
        assert name in str(info.value)


def test_aug1_flips_image_and_mask_together() -> None:
    image, mask = make_sample()
    flipped = 0
    for seed in range(200):
        torch.manual_seed(seed)
        out_image, out_mask = aug1()(image, mask)
        assert isinstance(out_image, tv_tensors.Image) and isinstance(out_mask, tv_tensors.Mask)
        if torch.equal(out_image, image):
            assert torch.equal(out_mask, mask)
        else:
            flipped += 1
            assert torch.equal(out_image, image.flip(-1))
            assert torch.equal(out_mask, mask.flip(-1))
            # The marked column moved to the right edge in both.
            assert out_image[0, :, -1].eq(255).all() and out_mask[:, -1].eq(255).all()
    assert 70 <= flipped <= 130  # p = 0.5; 200 draws: mean 100, sd ~7


def test_aug2_never_changes_the_mask() -> None:
    changed_images = 0
    for seed in range(60):
        image, mask = make_sample(seed)
        torch.manual_seed(seed)
        out_image, out_mask = aug2()(image, mask)
        assert isinstance(out_mask, tv_tensors.Mask) and out_mask.dtype == torch.uint8
        assert torch.equal(out_mask, mask)
        assert out_image.dtype == torch.uint8 and out_image.shape == image.shape
        changed_images += not torch.equal(out_image, image)
    # 1/8 of draws apply nothing, and a weak blur can be invisible; most still change the image.
    assert changed_images >= 30


def test_aug2_ops_are_the_documented_ones() -> None:
    steps = aug2().transforms
    assert [type(s) for s in steps] == [v2.RandomApply] * 3
    assert [s.p for s in steps] == [0.5, 0.5, 0.5]
    inner = [s.transforms[0] for s in steps]
    assert isinstance(inner[0], v2.ColorJitter)
    assert isinstance(inner[1], v2.GaussianBlur)
    assert isinstance(inner[2], RandomGamma)


def test_each_aug2_op_fires_about_half_the_time_independently() -> None:
    pipeline = aug2()
    spies = []
    for step in pipeline.transforms:
        spy = Spy(step.transforms[0])
        step.transforms = [spy]
        spies.append(spy)
    image, mask = make_sample()
    n, all_three = 400, 0
    for seed in range(n):
        before = [s.calls for s in spies]
        torch.manual_seed(seed)
        pipeline(image, mask)
        all_three += all(s.calls > b for s, b in zip(spies, before, strict=True))
    for spy in spies:
        assert 0.4 * n <= spy.calls <= 0.6 * n, (spy.inner, spy.calls)
    assert 0.06 * n <= all_three <= 0.2 * n  # independent: 1/8 of draws apply all three


def test_each_aug2_op_alters_the_image_when_forced() -> None:
    image, mask = make_sample()
    for step in aug2().transforms:
        forced = v2.RandomApply(step.transforms, p=1.0)
        torch.manual_seed(0)
        out_image, out_mask = forced(image, mask)
        assert not torch.equal(out_image, image), step
        assert torch.equal(out_mask, mask)


@pytest.mark.parametrize("name", ["aug1", "aug2", "aug12"])
def test_reproducible_under_seed(name: str) -> None:
    image, mask = make_sample()
    runs = []
    for seed in (3, 3, 4, 5, 6):
        torch.manual_seed(seed)
        runs.append(build_augmentation(name)(image, mask))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    # Different seeds give different results for at least one of several draws.
    assert any(not torch.equal(runs[0][0], other[0]) for other in runs[2:])


def test_aug12_flip_still_moves_image_and_mask_together() -> None:
    image, mask = make_sample()
    outcomes = set()
    for seed in range(40):
        torch.manual_seed(seed)
        _, out_mask = build_augmentation("aug12")(image, mask)
        flipped = torch.equal(out_mask, mask.flip(-1))
        assert flipped or torch.equal(out_mask, mask)
        outcomes.add(flipped)
    assert outcomes == {True, False}


def test_random_gamma_matches_adjust_gamma_and_skips_masks() -> None:
    image, mask = make_sample()
    out_image, out_mask = RandomGamma((1.3, 1.3))(image, mask)
    assert torch.equal(out_image, F.adjust_gamma(image, 1.3))
    assert not torch.equal(out_image, image)
    assert torch.equal(out_mask, mask)


def test_random_gamma_samples_within_range() -> None:
    t = RandomGamma((0.7, 1.5))
    torch.manual_seed(0)
    gammas = [t.make_params([])["gamma"] for _ in range(300)]
    assert 0.7 <= min(gammas) < 0.75 and 1.45 < max(gammas) <= 1.5
    with pytest.raises(ValueError, match="gamma_range"):
        RandomGamma((1.5, 0.7))
