"""Tests for segdemo.metrics.ConfusionMatrix."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st

from segdemo.labels import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES
from segdemo.metrics import ConfusionMatrix

# A 3-class example small enough to count by hand.
#   target       pred
#   0 0 1        0 1 1
#   1 2 255      2 2 0     (the 255 pixel is ignored whatever is predicted there)
# Valid (gt -> pred) pairs: 0->0, 0->1, 1->1, 1->2, 2->2.
HAND_TARGET = np.array([[0, 0, 1], [1, 2, 255]], dtype=np.int64)
HAND_PRED = np.array([[0, 1, 1], [2, 2, 0]], dtype=np.int64)
HAND_MATRIX = np.array(
    [
        [1, 1, 0],  # gt 0: once right, once predicted as 1
        [0, 1, 1],  # gt 1: once right, once predicted as 2
        [0, 0, 1],  # gt 2: right
    ],
    dtype=np.int64,
)
# IoU = tp / (gt + pred - tp): class 0: 1/(2+1-1), class 1: 1/(2+2-1), class 2: 1/(1+2-1)
HAND_IOU = np.array([1 / 2, 1 / 3, 1 / 2])


def test_hand_computed_example() -> None:
    cm = ConfusionMatrix(num_classes=3)
    cm.update(HAND_PRED, HAND_TARGET)
    assert cm.matrix.dtype == torch.int64
    np.testing.assert_array_equal(cm.matrix.numpy(), HAND_MATRIX)
    iou = cm.iou()
    assert iou.dtype == np.float64
    np.testing.assert_allclose(iou, HAND_IOU, rtol=0, atol=1e-12)
    assert cm.miou() == pytest.approx(4 / 9, abs=1e-12)
    assert cm.pixel_accuracy() == pytest.approx(3 / 5, abs=1e-12)
    assert cm.summary(["a", "b", "c"]) == {
        "miou": 44.44,
        "pixel_accuracy": 60.0,
        "iou": {"a": 50.0, "b": 33.33, "c": 50.0},
    }


def test_torch_and_batched_inputs_match_numpy() -> None:
    cm_np = ConfusionMatrix(num_classes=3)
    cm_np.update(HAND_PRED, HAND_TARGET)
    cm_t = ConfusionMatrix(num_classes=3)
    # N x H x W torch input, uint8 target (as decoded label PNGs are).
    cm_t.update(torch.from_numpy(HAND_PRED)[None], torch.from_numpy(HAND_TARGET.astype(np.uint8))[None])
    np.testing.assert_array_equal(cm_t.matrix.numpy(), cm_np.matrix.numpy())


def test_read_only_numpy_input_accepted_without_warning() -> None:
    target = HAND_TARGET.copy()
    target.setflags(write=False)
    cm = ConfusionMatrix(num_classes=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cm.update(HAND_PRED, target)
    np.testing.assert_array_equal(cm.matrix.numpy(), HAND_MATRIX)


def test_ignore_pixels_are_skipped_whatever_the_prediction() -> None:
    cm = ConfusionMatrix(num_classes=3)
    target = np.full((4, 5), IGNORE_INDEX)
    pred = np.full((4, 5), 200)  # out of range, but only on ignored pixels: accepted
    cm.update(pred, target)
    assert int(cm.matrix.sum()) == 0
    target[0, 0] = 2
    pred[0, 0] = 1
    cm.update(pred, target)
    expected = np.zeros((3, 3), dtype=np.int64)
    expected[2, 1] = 1
    np.testing.assert_array_equal(cm.matrix.numpy(), expected)


def test_custom_ignore_index() -> None:
    cm = ConfusionMatrix(num_classes=2, ignore_index=-1)
    cm.update(np.array([0, 1, 1]), np.array([0, -1, 1]))
    np.testing.assert_array_equal(cm.matrix.numpy(), [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="collides"):
        ConfusionMatrix(num_classes=3, ignore_index=2)


def test_nan_rule_for_absent_classes() -> None:
    cm = ConfusionMatrix(num_classes=4)
    # class 0: present and right; class 1: in GT, never predicted; class 2: predicted, never in GT;
    # class 3: nowhere.
    cm.update(np.array([0, 0, 2]), np.array([0, 0, 1]))
    iou = cm.iou()
    assert iou[0] == 1.0
    assert iou[1] == 0.0
    assert iou[2] == 0.0
    assert math.isnan(iou[3])
    assert cm.miou() == pytest.approx(1 / 3)  # NaN class excluded from the mean
    summary = cm.summary(["a", "b", "c", "d"])
    assert math.isnan(summary["iou"]["d"])
    assert summary["miou"] == 33.33


def test_empty_matrix_gives_nan_without_warnings() -> None:
    cm = ConfusionMatrix()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(cm.iou()).all()
        assert math.isnan(cm.miou())
        assert math.isnan(cm.pixel_accuracy())


def test_logits_are_argmaxed() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 6, 7, generator=gen)
    target = torch.randint(0, 5, (2, 6, 7), generator=gen)
    target[0, 0, :3] = IGNORE_INDEX
    from_logits = ConfusionMatrix(num_classes=5)
    from_logits.update(logits, target)
    from_ids = ConfusionMatrix(num_classes=5)
    from_ids.update(logits.argmax(1), target)
    np.testing.assert_array_equal(from_logits.matrix.numpy(), from_ids.matrix.numpy())
    assert int(from_logits.matrix.sum()) == 2 * 6 * 7 - 3

    # A single C x H x W numpy map with an H x W target.
    single = ConfusionMatrix(num_classes=5)
    single.update(logits[1].numpy(), target[1].numpy())
    expected = ConfusionMatrix(num_classes=5)
    expected.update(logits[1].argmax(0), target[1])
    np.testing.assert_array_equal(single.matrix.numpy(), expected.matrix.numpy())


def test_errors_are_clear_and_leave_the_matrix_untouched() -> None:
    cm = ConfusionMatrix(num_classes=3)
    cm.update(HAND_PRED, HAND_TARGET)
    before = cm.matrix.clone()
    with pytest.raises(ValueError, match=r"shape mismatch: pred \(2, 2\) vs target \(2, 3\)"):
        cm.update(np.zeros((2, 2), dtype=np.int64), np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"target has values outside 0\.\.2.*\[3\]"):
        cm.update(np.array([0, 1]), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"target has values outside.*\[-1\]"):
        cm.update(np.array([0, 1]), np.array([0, -1]))
    with pytest.raises(ValueError, match=r"pred has values outside 0\.\.2.*\[7\]"):
        cm.update(np.array([0, 7]), np.array([0, 1]))
    with pytest.raises(ValueError, match="pred has values outside"):
        cm.update(np.array([0, IGNORE_INDEX]), np.array([0, 1]))  # 255 is only special in the target
    with pytest.raises(ValueError, match="logits have 4 channels"):
        cm.update(torch.zeros(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="pred must hold integer class ids"):
        cm.update(np.zeros((2, 2), dtype=np.float32), np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="target must hold integer class ids"):
        cm.update(np.zeros((2, 2), dtype=np.int64), np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(TypeError):
        cm.update([[0]], [[0]])
    torch.testing.assert_close(cm.matrix, before)


def test_reset_merge_and_iadd() -> None:
    a = ConfusionMatrix(num_classes=3)
    a.update(HAND_PRED, HAND_TARGET)
    b = ConfusionMatrix(num_classes=3)
    b.update(HAND_PRED, HAND_TARGET)
    b.update(HAND_PRED, HAND_TARGET)
    a += b
    np.testing.assert_array_equal(a.matrix.numpy(), 3 * HAND_MATRIX)
    assert a.merge(b) is a
    np.testing.assert_array_equal(a.matrix.numpy(), 5 * HAND_MATRIX)
    a.reset()
    assert int(a.matrix.sum()) == 0
    with pytest.raises(ValueError, match="cannot merge"):
        a.merge(ConfusionMatrix(num_classes=4))


def test_summary_default_names_are_the_cityscapes_classes() -> None:
    cm = ConfusionMatrix()
    target = np.arange(NUM_CLASSES)
    cm.update(target, target)
    summary = cm.summary()
    assert list(summary["iou"]) == list(CLASS_NAMES)
    assert set(summary["iou"].values()) == {100.0}
    assert summary["miou"] == 100.0
    with pytest.raises(ValueError, match="class names"):
        cm.summary(["only", "three", "names"])


def test_all_reduce_is_a_no_op_without_distributed() -> None:
    assert not dist.is_initialized()
    cm = ConfusionMatrix(num_classes=3)
    cm.update(HAND_PRED, HAND_TARGET)
    assert cm.all_reduce() is cm
    np.testing.assert_array_equal(cm.matrix.numpy(), HAND_MATRIX)


def _all_reduce_worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        cm = ConfusionMatrix(num_classes=3)
        # Rank 0 sees the hand example once, rank 1 twice: the reduced matrix is 3x it on both.
        for _ in range(rank + 1):
            cm.update(HAND_PRED, HAND_TARGET)
        cm.all_reduce()
        np.save(f"{out_dir}/rank{rank}.npy", cm.matrix.numpy())
    finally:
        dist.destroy_process_group()


def test_all_reduce_sums_across_two_gloo_ranks(tmp_path) -> None:
    mp.spawn(_all_reduce_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        np.testing.assert_array_equal(np.load(tmp_path / f"rank{rank}.npy"), 3 * HAND_MATRIX)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_inputs_and_matrix() -> None:
    cm = ConfusionMatrix(num_classes=3, device="cuda")
    cm.update(torch.from_numpy(HAND_PRED).cuda(), torch.from_numpy(HAND_TARGET).cuda())
    assert cm.matrix.device.type == "cuda"
    np.testing.assert_array_equal(cm.matrix.cpu().numpy(), HAND_MATRIX)
    cpu_cm = ConfusionMatrix(num_classes=3)
    cpu_cm.update(torch.from_numpy(HAND_PRED).cuda(), torch.from_numpy(HAND_TARGET).cuda())
    np.testing.assert_array_equal(cpu_cm.matrix.numpy(), HAND_MATRIX)


def _reference_matrix(preds: list[np.ndarray], targets: list[np.ndarray], c: int) -> np.ndarray:
    """Pixel-by-pixel count, the slowest and most obvious way."""
    m = np.zeros((c, c), dtype=np.int64)
    for pred, target in zip(preds, targets):
        for p, t in zip(pred.ravel(), target.ravel()):
            if t != IGNORE_INDEX:
                m[t, p] += 1
    return m


@st.composite
def _batches(draw: st.DrawFn) -> tuple[int, list[np.ndarray], list[np.ndarray]]:
    c = draw(st.integers(1, 6))
    n_batches = draw(st.integers(1, 4))
    preds, targets = [], []
    for _ in range(n_batches):
        n, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
        size = n * h * w
        pred = draw(st.lists(st.integers(0, c - 1), min_size=size, max_size=size))
        target = draw(st.lists(st.sampled_from([*range(c), IGNORE_INDEX]), min_size=size, max_size=size))
        preds.append(np.array(pred, dtype=np.int64).reshape(n, h, w))
        targets.append(np.array(target, dtype=np.int64).reshape(n, h, w))
    return c, preds, targets


@settings(max_examples=60, deadline=None)
@given(_batches())
def test_streaming_equals_one_shot(data: tuple[int, list[np.ndarray], list[np.ndarray]]) -> None:
    c, preds, targets = data
    streaming = ConfusionMatrix(num_classes=c)
    halves = [ConfusionMatrix(num_classes=c), ConfusionMatrix(num_classes=c)]
    for i, (pred, target) in enumerate(zip(preds, targets)):
        streaming.update(pred, target)
        halves[i % 2].update(torch.from_numpy(pred), torch.from_numpy(target))
    one_shot = ConfusionMatrix(num_classes=c)
    one_shot.update(np.concatenate([p.ravel() for p in preds]), np.concatenate([t.ravel() for t in targets]))
    expected = _reference_matrix(preds, targets, c)
    np.testing.assert_array_equal(streaming.matrix.numpy(), expected)
    np.testing.assert_array_equal(one_shot.matrix.numpy(), expected)
    merged = halves[0].merge(halves[1])
    np.testing.assert_array_equal(merged.matrix.numpy(), expected)
    np.testing.assert_array_equal(streaming.iou(), one_shot.iou())  # NaNs in the same places too
