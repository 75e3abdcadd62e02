"""Tests for segdemo.dacs: ClassMix, the pseudo-label pixel weight, the EMA teacher update and the scoring of
pseudo-labels."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from segdemo.dacs import (
    ClassMixResult,
    PseudoLabelQuality,
    batch_statistics,
    class_mask,
    class_mix,
    confidence_weight,
    ema_update,
    pixel_weight,
    pseudo_labels,
)
from segdemo.labels import CLASS_NAMES, IGNORE_INDEX

X = IGNORE_INDEX  # a one-letter alias keeps the hand-drawn label maps readable

# Four classes {1, 3, 7, 12} plus ignore pixels.
SOURCE_LABEL_4 = [
    [1, 1, 3, 3],
    [1, X, 3, 3],
    [7, 7, 12, 12],
    [7, 7, 12, X],
]
# Five classes {0, 2, 4, 5, 18}: ceil(5 / 2) = 3 are pasted.
SOURCE_LABEL_5 = [
    [0, 0, 2, 2],
    [4, 4, 2, 2],
    [5, 5, 18, 18],
    [X, X, 18, 18],
]
TARGET_LABEL = [
    [9, 9, 9, 9],
    [10, 10, 10, 10],
    [11, 11, X, 11],
    [6, 6, 6, 6],
]


def _batch(labels: list[list[list[int]]], seed: int = 0) -> tuple[torch.Tensor, ...]:
    n = len(labels)
    gen = torch.Generator().manual_seed(1000 + seed)
    source_image = torch.rand(n, 3, 4, 4, generator=gen)
    target_image = torch.rand(n, 3, 4, 4, generator=gen) + 10.0  # disjoint ranges: no accidental equality
    source_label = torch.tensor(labels, dtype=torch.int64)
    target_label = torch.tensor([TARGET_LABEL] * n, dtype=torch.int64)
    return source_image, source_label, target_image, target_label


def _expected_choices(labels: list[list[list[int]]], generator: torch.Generator) -> list[list[int]]:
    """The documented rule: keys torch.rand(N, 256) from the generator; per sample, the ceil(n/2) present
    classes with the smallest keys."""
    keys = torch.rand(len(labels), 256, generator=generator)
    choices = []
    for row_keys, label in zip(keys, labels):
        present = sorted({v for row in label for v in row if v != IGNORE_INDEX})
        by_key = sorted(present, key=lambda c: float(row_keys[c]))
        choices.append(sorted(by_key[: math.ceil(len(present) / 2)]))
    return choices


def _check_composition(result: ClassMixResult, batch: tuple[torch.Tensor, ...]) -> None:
    """Pixel by pixel: source where the mask is set, target elsewhere, for image and label."""
    source_image, source_label, target_image, target_label = batch
    n, _, h, w = source_image.shape
    for i in range(n):
        chosen = set(result.classes[i].tolist())
        for y in range(h):
            for x in range(w):
                from_source = int(source_label[i, y, x]) in chosen
                assert bool(result.mask[i, y, x]) == from_source
                img = source_image if from_source else target_image
                lab = source_label if from_source else target_label
                assert torch.equal(result.image[i, :, y, x], img[i, :, y, x])
                assert int(result.label[i, y, x]) == int(lab[i, y, x])


def test_four_classes_two_chosen_mask_is_their_union() -> None:
    batch = _batch([SOURCE_LABEL_4])
    result = class_mix(*batch, generator=torch.Generator().manual_seed(0))
    assert isinstance(result, ClassMixResult)
    assert result.mask.dtype == torch.bool and result.mask.shape == (1, 4, 4)
    assert result.image.shape == (1, 3, 4, 4) and result.label.shape == (1, 4, 4)
    assert len(result.classes) == 1
    chosen = result.classes[0]
    assert chosen.dtype == torch.int64 and chosen.dim() == 1
    assert chosen.tolist() == _expected_choices([SOURCE_LABEL_4], torch.Generator().manual_seed(0))[0]
    assert len(chosen) == 2 and set(chosen.tolist()) <= {1, 3, 7, 12}
    expected_mask = np.isin(np.array(SOURCE_LABEL_4), chosen.numpy())
    np.testing.assert_array_equal(result.mask[0].numpy(), expected_mask)
    _check_composition(result, batch)


def test_odd_class_count_rounds_up_and_ignore_is_never_chosen() -> None:
    seen: set[int] = set()
    for seed in range(40):
        gen = torch.Generator().manual_seed(seed)
        result = class_mix(*_batch([SOURCE_LABEL_5, SOURCE_LABEL_4], seed), generator=gen)
        five, four = (set(c.tolist()) for c in result.classes)
        assert len(five) == 3 and five <= {0, 2, 4, 5, 18}
        assert len(four) == 2 and four <= {1, 3, 7, 12}
        seen |= five
        # Ignore pixels of the source are never pasted: they show the target there.
        assert not result.mask[0, 3, :2].any() and not result.mask[1, 1, 1]
    assert seen == {0, 2, 4, 5, 18}  # the choice really varies with the seed


def test_exact_choice_for_a_seeded_batch_and_composition() -> None:
    batch = _batch([SOURCE_LABEL_5, SOURCE_LABEL_4, SOURCE_LABEL_5], seed=3)
    result = class_mix(*batch, generator=torch.Generator().manual_seed(7))
    # One row of keys per sample, in batch order, from the same generator.
    expected = _expected_choices(
        [SOURCE_LABEL_5, SOURCE_LABEL_4, SOURCE_LABEL_5], torch.Generator().manual_seed(7)
    )
    assert [c.tolist() for c in result.classes] == expected
    assert result.chosen.shape == (3, 256) and result.chosen.sum(dim=1).tolist() == [3, 2, 3]
    _check_composition(result, batch)


def test_single_class_and_no_valid_class() -> None:
    only_ignore = [[X] * 4 for _ in range(4)]
    one_class = [[X, 4, 4, X]] * 4
    batch = _batch([only_ignore, one_class])
    result = class_mix(*batch, generator=torch.Generator().manual_seed(0))
    assert result.classes[0].numel() == 0 and result.classes[0].dtype == torch.int64
    assert not result.mask[0].any()
    assert torch.equal(result.image[0], batch[2][0]) and torch.equal(result.label[0], batch[3][0])
    assert result.classes[1].tolist() == [4]  # ceil(1 / 2) = 1
    _check_composition(result, batch)


def test_same_seed_same_mix_and_global_rng_fallback() -> None:
    batch = _batch([SOURCE_LABEL_5, SOURCE_LABEL_4, SOURCE_LABEL_5, SOURCE_LABEL_4], seed=1)
    runs = [class_mix(*batch, generator=torch.Generator().manual_seed(123)) for _ in range(2)]
    for a, b in zip(runs[0], runs[1]):
        assert torch.equal(a, b)
    torch.manual_seed(5)
    first = class_mix(*batch)
    torch.manual_seed(5)
    second = class_mix(*batch)
    assert torch.equal(first.mask, second.mask)


def test_class_mix_rejects_bad_shapes() -> None:
    source_image, source_label, target_image, target_label = _batch([SOURCE_LABEL_4])
    with pytest.raises(ValueError, match="target_image shape"):
        class_mix(source_image, source_label, target_image[..., :3], target_label)
    with pytest.raises(ValueError, match="target_label must be N x H x W"):
        class_mix(source_image, source_label, target_image, target_label[0])
    with pytest.raises(ValueError, match="integer class ids"):
        class_mix(source_image, source_label.float(), target_image, target_label)


def test_class_mask_helper() -> None:
    label = torch.tensor(SOURCE_LABEL_4)
    np.testing.assert_array_equal(class_mask(label, [3, 12]).numpy(), np.isin(SOURCE_LABEL_4, [3, 12]))
    assert class_mask(label, torch.tensor([7])).sum() == 4
    assert class_mask(label, []).shape == (4, 4) and not class_mask(label, []).any()
    batched = class_mask(torch.stack([label, label]).to(torch.uint8), [1])
    assert batched.shape == (2, 4, 4) and int(batched.sum()) == 6


def test_pixel_weight_exact_values() -> None:
    # Two classes, so p = (m, 1 - m) with max m. float64 keeps 0.968 exactly on the threshold.
    max_probs = torch.tensor(
        [
            [[0.99, 0.5], [0.968, 0.7]],  # 2 of 4 pixels >= 0.968 (the boundary counts)
            [[0.9, 0.6], [0.967, 0.5]],  # none
        ],
        dtype=torch.float64,
    )
    probs = torch.stack([max_probs, 1 - max_probs], dim=1)
    mask = torch.tensor([[[True, False], [False, False]], [[False, False], [False, True]]])
    expected = torch.tensor([[[1.0, 0.5], [0.5, 0.5]], [[0.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    weight = pixel_weight(probs, mask)
    assert weight.dtype == torch.float64
    torch.testing.assert_close(weight, expected, atol=0, rtol=0)
    torch.testing.assert_close(pixel_weight(probs, mask.float()), expected, atol=0, rtol=0)
    # A lower threshold counts 3 of 4 pixels in sample 1 (0.9, 0.6, 0.967 >= 0.6).
    weight = pixel_weight(probs, mask, threshold=0.6)
    torch.testing.assert_close(weight[1], torch.tensor([[0.75, 0.75], [0.75, 1.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="mask must be N x H x W"):
        pixel_weight(probs, mask[0])


def _pair() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    student = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)  # BatchNorm starts at weight 1 / bias 0 in both: make every parameter differ
    student.train()(torch.randn(4, 3))  # give the student non-default BatchNorm running stats
    return teacher, student


def test_ema_step_zero_copies_the_student() -> None:
    teacher, student = _pair()
    ema_update(teacher, student, step=0)
    for t, s in zip(teacher.state_dict().values(), student.state_dict().values()):
        assert torch.equal(t, s)


@pytest.mark.parametrize(
    ("step", "momentum", "alpha"),
    [
        (1, 0.99, 0.5),
        (3, 0.99, 0.75),
        (50, 0.99, 1 - 1 / 51),
        (99, 0.99, 0.99),
        (10**6, 0.99, 0.99),
        (3, 0.6, 0.6),
        (10**6, 0.999, 0.999),
        (5, 0.0, 0.0),
    ],
)
def test_ema_alpha_schedule(step: int, momentum: float, alpha: float) -> None:
    teacher, student = _pair()
    before = {k: v.clone() for k, v in teacher.named_parameters()}
    ema_update(teacher, student, step=step, momentum=momentum)
    for (name, t), s in zip(teacher.named_parameters(), student.parameters()):
        torch.testing.assert_close(t, alpha * before[name] + (1 - alpha) * s, atol=1e-6, rtol=0)
        assert t.requires_grad and t.grad_fn is None
    # Buffers are copied, not averaged.
    for t, s in zip(teacher.buffers(), student.buffers()):
        assert torch.equal(t, s)


def test_ema_rejects_mismatched_models_and_negative_steps() -> None:
    with pytest.raises(ValueError, match="parameter shape mismatch"):
        ema_update(nn.Linear(3, 2), nn.Linear(3, 4), step=1)
    with pytest.raises(ValueError, match="teacher and student differ"):
        ema_update(nn.Linear(3, 2), nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2)), step=1)
    with pytest.raises(ValueError, match="step"):
        ema_update(nn.Linear(3, 2), nn.Linear(3, 2), step=-1)
    with pytest.raises(ValueError, match="momentum"):
        ema_update(nn.Linear(3, 2), nn.Linear(3, 2), step=1, momentum=1.0)


def test_confidence_weight_is_pixel_weight_from_the_largest_probability() -> None:
    probs = torch.softmax(torch.randn(2, 19, 5, 6, generator=torch.Generator().manual_seed(4)) * 4, dim=1)
    mask = torch.rand(2, 5, 6, generator=torch.Generator().manual_seed(5)) > 0.5
    confidence = probs.max(dim=1).values
    for threshold in (0.3, 0.6, 0.968):
        assert torch.equal(
            confidence_weight(confidence, mask, threshold), pixel_weight(probs, mask, threshold)
        )
    with pytest.raises(ValueError, match="confidence must be N x H x W"):
        confidence_weight(probs, mask)


def test_confidence_weight_per_pixel_weighs_each_sure_pixel_one() -> None:
    confidence = torch.tensor([[[0.99, 0.5], [0.97, 0.2]], [[0.1, 0.1], [0.98, 0.99]]])
    mask = torch.tensor([[[False, False], [False, True]], [[True, False], [False, False]]])
    per_image = confidence_weight(confidence, mask, 0.968)
    per_pixel = confidence_weight(confidence, mask, 0.968, per_pixel=True)
    assert per_image.tolist() == [[[0.5, 0.5], [0.5, 1.0]], [[1.0, 0.5], [0.5, 0.5]]]
    assert per_pixel.tolist() == [[[1.0, 0.0], [1.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]]]


def test_batch_statistics_normalise_with_the_batch_and_leave_running_stats_alone() -> None:
    from segdemo.models import build_model

    torch.manual_seed(0)
    teacher = build_model("bisenet", num_classes=19).eval()
    # Running statistics far from what the batch has, as after training on another domain.
    for module in teacher.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.fill_(0.5)
            module.running_var.fill_(4.0)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    batch = torch.randn(2, 3, 64, 128)
    with torch.no_grad():
        running = teacher(batch)
        with batch_statistics(teacher) as same:
            assert same is teacher and not teacher.training  # only the BatchNorm layers switch
            adapted = teacher(batch)
        reference = copy.deepcopy(teacher).train()(batch)[0]  # plain train mode: main output first
    assert torch.allclose(adapted, reference, atol=1e-5)
    assert (adapted - running).abs().max() > 1e-2
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(not m.training for m in teacher.modules())


def test_pseudo_labels_are_the_most_probable_class_and_its_probability() -> None:
    logits = torch.randn(2, 19, 5, 6, generator=torch.Generator().manual_seed(7)) * 3
    confidence, label = pseudo_labels(logits.to(torch.bfloat16))
    probs = torch.softmax(logits.to(torch.bfloat16).float(), dim=1)
    assert confidence.dtype == torch.float32 and label.dtype == torch.int64
    assert torch.equal(label, probs.argmax(dim=1))
    assert torch.allclose(confidence, probs.max(dim=1).values)
    with pytest.raises(ValueError, match="N x C x H x W"):
        pseudo_labels(logits[0])


def test_pseudo_label_quality_counts_each_threshold_and_class() -> None:
    label = torch.tensor([[[0, 0, 1, X], [1, 1, 2, 2]]])
    pseudo = torch.tensor([[[0, 1, 1, 0], [1, 0, 2, 2]]])
    confidence = torch.tensor([[[0.99, 0.95, 0.6, 0.99], [0.97, 0.4, 0.2, 0.99]]])
    quality = PseudoLabelQuality(thresholds=(0.968, 0.5, 0.9))
    quality.update(confidence, pseudo, label)
    assert quality.thresholds == (0.5, 0.9, 0.968)
    # 7 labelled pixels, 5 labelled right; at 0.5: 5 sure, 4 right; at 0.9: 4, 3; at 0.968: 3, 3.
    assert quality.pixel_accuracy() == pytest.approx(500 / 7)
    np.testing.assert_allclose(quality.coverage(), [500 / 7, 400 / 7, 300 / 7])
    np.testing.assert_allclose(quality.accuracy(), [80.0, 75.0, 100.0])
    # DACS's weight counts every pixel of the image, the ignored one too (the teacher cannot tell): 4 of 8.
    assert quality.mean_weight() == pytest.approx(0.5)
    assert quality.pixels[:3].tolist() == [2, 3, 2] and quality.pixels[3:].sum() == 0
    assert quality.right[:3].tolist() == [1, 2, 2]
    assert quality.confident[2, :3].tolist() == [1, 1, 1]
    # A second image that is sure of nothing: the weight is the mean over the images.
    quality.update(torch.zeros(1, 2, 4), torch.zeros(1, 2, 4, dtype=torch.long), torch.full((1, 2, 4), X))
    assert quality.mean_weight() == pytest.approx(0.25) and quality.images == 2
    table = quality.table(CLASS_NAMES)
    assert "| 0.968 (DACS) | 42.9 | 100.0 |" in table
    assert "| 0.5 | 71.4 | 80.0 |" in table
    assert "| road | 28.6 | 50.0 | 50.0 | 100.0 |" in table
    assert "| sidewalk | 42.9 | 66.7 | 33.3 | 100.0 |" in table
    assert "| wall |" not in table  # no labelled pixels: no row
    assert "mean over 2 images: 0.250" in table


def test_pseudo_label_quality_refuses_bad_thresholds_and_shapes() -> None:
    with pytest.raises(ValueError, match="thresholds must be in"):
        PseudoLabelQuality(thresholds=(0.5, 1.5))
    with pytest.raises(ValueError, match="thresholds must be in"):
        PseudoLabelQuality(thresholds=())
    with pytest.raises(ValueError, match="N x H x W"):
        PseudoLabelQuality().update(torch.zeros(1, 2, 4), torch.zeros(1, 2, 4), torch.zeros(2, 4))
    empty = PseudoLabelQuality()
    assert math.isnan(empty.mean_weight()) and math.isnan(empty.pixel_accuracy())
    assert "| 0.968 (DACS) | n/a | n/a |" in empty.table(CLASS_NAMES)
