"""segdemo.augment: per-sample augmentation of a batch, checked against torchvision's own operations."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from segdemo import augment
from segdemo.augment import AUG2, AUGMENTATIONS, BatchAugment, Photometric, dacs_strong


def _images(n: int = 6, h: int = 24, w: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # Smooth colour gradients plus noise: every hue sector, grey pixels and saturated ones.
    base = torch.rand(n, 3, h, w, generator=g)
    base[:, :, :4] = base[:, :1, :4]  # a grey band
    return base


def _labels(n: int = 6, h: int = 24, w: int = 32) -> torch.Tensor:
    return torch.arange(w).repeat(n, h, 1) % 19  # column index: a flip is visible


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    "op, theirs, low, high",
    [
        (augment._brightness, TF.adjust_brightness, 0.6, 1.4),
        (augment._contrast, TF.adjust_contrast, 0.6, 1.4),
        (augment._saturation, TF.adjust_saturation, 0.6, 1.4),
        (augment._hue, TF.adjust_hue, -0.1, 0.1),
        (augment._hue, TF.adjust_hue, -0.5, 0.5),
    ],
)
def test_each_colour_op_is_torchvisions_with_a_factor_per_sample(op, theirs, low, high) -> None:
    images = _images()
    factors = torch.linspace(low, high, images.shape[0])
    ours = op(images, factors)
    for i, f in enumerate(factors.tolist()):
        torch.testing.assert_close(ours[i], theirs(images[i], f), atol=1e-5, rtol=0)


def test_blur_and_gamma_are_torchvisions_with_a_parameter_per_sample() -> None:
    images = _images()
    sigmas = torch.linspace(0.1, 2.0, images.shape[0])
    ours = augment._blur(images, sigmas, 5)
    for i, sigma in enumerate(sigmas.tolist()):
        torch.testing.assert_close(
            ours[i], TF.gaussian_blur(images[i], [5, 5], [sigma, sigma]), atol=1e-5, rtol=0
        )
    gammas = torch.linspace(0.7, 1.5, images.shape[0])
    photometric = Photometric(gamma_range=(0.7, 1.5), p_gamma=1.0)
    out = photometric(images, _gen(3))
    # Recover each sample's gamma from one pixel, then compare the whole image with torchvision's.
    for i in range(images.shape[0]):
        pixel = images[i, 0, 10, 10].clamp(1e-3, 1 - 1e-3)
        gamma = float(torch.log(out[i, 0, 10, 10]) / torch.log(pixel))
        assert 0.7 - 1e-4 <= gamma <= 1.5 + 1e-4
        torch.testing.assert_close(out[i], TF.adjust_gamma(images[i], gamma), atol=1e-4, rtol=0)
    assert gammas.numel() == images.shape[0]


def test_names_and_bad_names() -> None:
    assert set(AUGMENTATIONS) == {"none", "aug1", "aug2", "aug12"}
    assert BatchAugment(None).name == "none" and BatchAugment(" AUG12 ").flip
    assert BatchAugment("aug2").photometric is AUG2 and not BatchAugment("aug2").flip
    with pytest.raises(ValueError, match="aug3") as info:
        BatchAugment("aug3")
    assert "aug12" in str(info.value)
    with pytest.raises(ValueError, match="float images"):
        BatchAugment("aug1")(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(2, 4, 4), _gen())
    with pytest.raises(ValueError, match="do not fit"):
        BatchAugment("aug1")(torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 5), _gen())


def test_none_changes_nothing() -> None:
    images, labels = _images(), _labels()
    out, out_labels = BatchAugment("none")(images, labels, _gen())
    assert torch.equal(out, images) and torch.equal(out_labels, labels)


def test_aug1_flips_each_sample_and_its_label_together_about_half_of_them() -> None:
    images, labels = _images(n=400, h=4, w=8), _labels(n=400, h=4, w=8)
    out, out_labels = BatchAugment("aug1")(images, labels, _gen(1))
    flipped = [torch.equal(out_labels[i], labels[i].flip(-1)) for i in range(400)]
    for i, was_flipped in enumerate(flipped):
        expected_image = images[i].flip(-1) if was_flipped else images[i]
        expected_label = labels[i].flip(-1) if was_flipped else labels[i]
        assert torch.equal(out[i], expected_image) and torch.equal(out_labels[i], expected_label)
    assert 160 < sum(flipped) < 240  # p = 0.5, one draw per sample


def test_aug2_never_touches_labels_and_each_op_fires_about_half_the_time() -> None:
    images, labels = _images(n=600, h=8, w=8), _labels(n=600, h=8, w=8)
    out, out_labels = BatchAugment("aug2")(images, labels, _gen(2))
    assert torch.equal(out_labels, labels)
    assert out.min() >= 0 and out.max() <= 1 and out.dtype == images.dtype
    changed = [not torch.equal(out[i], images[i]) for i in range(600)]
    # Three independent ops at p = 0.5: a sample is left alone with probability 1/8.
    assert 40 < changed.count(False) < 120
    for name in ("p_jitter", "p_blur", "p_gamma"):  # one op alone changes about half of the samples
        only = Photometric(
            **{**AUG2.__dict__, **{k: 0.0 for k in ("p_jitter", "p_blur", "p_gamma") if k != name}}
        )
        alone = only(images, _gen(3))
        assert 240 < sum(not torch.equal(alone[i], images[i]) for i in range(600)) < 360, name


def test_the_same_generator_seed_gives_the_same_batch_and_others_differ() -> None:
    images, labels = _images(), _labels()
    runs = [BatchAugment("aug12")(images, labels, _gen(seed)) for seed in (5, 5, 6)]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][0], runs[2][0])
    # Each sample draws its own parameters: two copies of one image come out differently.
    twins = images[:1].repeat(8, 1, 1, 1)
    out = AUG2(twins, _gen(7))
    assert len({out[i].sum().item() for i in range(8)}) > 4


def test_dacs_strong_augmentation_settings() -> None:
    strong = dacs_strong(0.2, True)
    assert (strong.brightness, strong.hue, strong.p_jitter, strong.p_blur) == (0.2, 0.1, 0.8, 0.5)
    assert dacs_strong(0.0, False).p_jitter == 0 and dacs_strong(0.0, False).p_blur == 0
    images = _images()
    assert torch.equal(dacs_strong(0.0, False)(images, _gen()), images)
    with pytest.raises(ValueError, match="odd"):
        Photometric(blur_kernel=4)
    with pytest.raises(ValueError, match="gamma_range"):
        Photometric(gamma_range=(0.0, 1.0))
