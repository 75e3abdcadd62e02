"""Tests for segdemo.fda: the rfft-based FDA swap against a full-FFT reference, spectra, entropy loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.baseline import reference_fda
from segdemo import fda
from segdemo.fda import amplitude_spectra, entropy_loss, fda_source_to_target


def _images(n: int, h: int, w: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("size", [(8, 8), (9, 7), (10, 13), (6, 11), (16, 9), (7, 16)])
@pytest.mark.parametrize("beta", [0.01, 0.1, 0.2, 0.3, 0.49])
def test_matches_full_fft_reference(size: tuple[int, int], beta: float) -> None:
    h, w = size
    src, tgt = _images(2, h, w, seed=1), _images(2, h, w, seed=2)
    out = fda_source_to_target(src, tgt, beta)
    assert out.shape == src.shape and out.dtype == torch.float32
    for i in range(2):
        expected = reference_fda(src[i].double().numpy(), tgt[i].double().numpy(), beta)
        np.testing.assert_allclose(out[i].numpy(), expected, rtol=0, atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(2, 14),
    w=st.integers(2, 14),
    beta=st.floats(0.0, 0.5, exclude_max=True),
    seed=st.integers(0, 2**16),
)
def test_matches_reference_property_float64(h: int, w: int, beta: float, seed: int) -> None:
    src, tgt = _images(1, h, w, seed, torch.float64), _images(1, h, w, seed + 1, torch.float64)
    # Scale like 0..255 pixel values: a wrong window would be far outside the tolerance.
    src, tgt = src * 255, tgt * 255
    out = fda_source_to_target(src, tgt, beta)
    expected = reference_fda(src[0].numpy(), tgt[0].numpy(), beta)
    np.testing.assert_allclose(out[0].numpy(), expected, rtol=0, atol=1e-8)


@pytest.mark.parametrize("max_columns", [0, 10**6], ids=["real-fft-route", "window-dft-route"])
@pytest.mark.parametrize(
    ("size", "beta"), [((64, 96), 0.01), ((64, 96), 0.2), ((63, 101), 0.37), ((9, 7), 0.3)]
)
def test_both_routes_match_the_reference(
    monkeypatch, max_columns: int, size: tuple[int, int], beta: float
) -> None:
    # Small windows take the window-only DFT, large ones the real FFT; force each route everywhere.
    monkeypatch.setattr(fda, "WINDOW_DFT_MAX_COLUMNS", max_columns)
    h, w = size
    src, tgt = (
        _images(2, h, w, seed=21, dtype=torch.float64) * 255,
        _images(1, h, w, seed=22, dtype=torch.float64) * 255,
    )
    out = fda_source_to_target(src, tgt, beta)  # one target broadcast to both sources
    for i in range(2):
        np.testing.assert_allclose(
            out[i].numpy(), reference_fda(src[i].numpy(), tgt[0].numpy(), beta), atol=1e-8
        )


@pytest.mark.parametrize("max_columns", [0, 10**6], ids=["real-fft-route", "window-dft-route"])
def test_both_routes_in_float32_at_a_training_size(monkeypatch, max_columns: int) -> None:
    monkeypatch.setattr(fda, "WINDOW_DFT_MAX_COLUMNS", max_columns)
    src, tgt = _images(1, 256, 512, seed=23), _images(1, 256, 512, seed=24)
    out = fda_source_to_target(src, tgt, 0.05)
    assert out.dtype == torch.float32
    expected = reference_fda(src[0].double().numpy(), tgt[0].double().numpy(), 0.05)
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-4)


def test_target_broadcast_and_single_images() -> None:
    src, tgt = _images(3, 12, 10, seed=3), _images(1, 12, 10, seed=4)
    batched = fda_source_to_target(src, tgt, 0.2)
    for i in range(3):
        expected = reference_fda(src[i].double().numpy(), tgt[0].double().numpy(), 0.2)
        np.testing.assert_allclose(batched[i].numpy(), expected, atol=1e-4)
    # A plain 3 x H x W source gives a 3 x H x W result; a 3 x H x W target broadcasts too.
    single = fda_source_to_target(src[1], tgt[0], 0.2)
    assert single.shape == (3, 12, 10)
    torch.testing.assert_close(single, batched[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(fda_source_to_target(src, tgt[0], 0.2), batched, atol=1e-5, rtol=0)


def test_beta_zero_is_identity_and_tiny_beta_swaps_mean_colour() -> None:
    src, tgt = _images(2, 9, 12, seed=5), _images(2, 9, 12, seed=6) + 2.0
    torch.testing.assert_close(fda_source_to_target(src, tgt, 0.0), src, atol=0, rtol=0)
    # b = floor(9 * 0.05) = 0: only the DC amplitude moves, i.e. each channel takes the target's mean
    # (both images are positive, so the DC phase is 0 for both).
    out = fda_source_to_target(src, tgt, 0.05)
    torch.testing.assert_close(out.mean(dim=(-2, -1)), tgt.mean(dim=(-2, -1)), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        out - out.mean(dim=(-2, -1), keepdim=True),
        src - src.mean(dim=(-2, -1), keepdim=True),
        atol=1e-5,
        rtol=0,
    )


def test_swapping_with_itself_is_identity() -> None:
    src = _images(2, 11, 8, seed=7)
    torch.testing.assert_close(fda_source_to_target(src, src, 0.4), src, atol=1e-5, rtol=0)


def test_half_precision_keeps_dtype() -> None:
    src, tgt = _images(1, 9, 9, seed=8), _images(1, 9, 9, seed=9)
    out = fda_source_to_target(src.half(), tgt.half(), 0.2)
    assert out.dtype == torch.float16
    expected = reference_fda(src[0].half().double().numpy(), tgt[0].half().double().numpy(), 0.2)
    np.testing.assert_allclose(out[0].float().numpy(), expected, atol=2e-3)


@pytest.mark.parametrize(
    ("source", "target", "beta", "match"),
    [
        (torch.rand(1, 4, 8, 8), torch.rand(1, 4, 8, 8), 0.1, "3 channels"),
        (torch.rand(8, 8), torch.rand(8, 8), 0.1, "N x 3 x H x W"),
        (torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9), 0.1, "source is 8 x 8, target is 8 x 9"),
        (torch.rand(3, 3, 8, 8), torch.rand(2, 3, 8, 8), 0.1, "target batch size"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.rand(1, 3, 8, 8), 0.1, "floating-point"),
        (torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), 0.5, r"\[0, 0\.5\)"),
        (torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), -0.01, r"\[0, 0\.5\)"),
        (torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), float("nan"), "finite"),
    ],
)
def test_invalid_inputs(source: torch.Tensor, target: torch.Tensor, beta: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fda_source_to_target(source, target, beta)


def test_non_tensor_input_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        fda_source_to_target(np.zeros((1, 3, 8, 8)), torch.rand(1, 3, 8, 8), 0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    src, tgt = _images(2, 33, 47, seed=10), _images(1, 33, 47, seed=11)
    cpu = fda_source_to_target(src, tgt, 0.09)
    gpu = fda_source_to_target(src.cuda(), tgt, 0.09)  # target is moved to the source's device
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)


@pytest.mark.parametrize("size", [(10, 12), (11, 9)])
def test_amplitude_spectra(size: tuple[int, int]) -> None:
    h, w = size
    src, tgt = _images(1, h, w, seed=12), _images(1, h, w, seed=13)
    spectra = amplitude_spectra(src, tgt[0], 0.25)
    b = math.floor(min(h, w) * 0.25)
    assert spectra["b"] == b == 2
    top, left, bottom, right = spectra["window"]
    assert (top, left, bottom, right) == (h // 2 - b, w // 2 - b, h // 2 + b + 1, w // 2 + b + 1)
    for key in ("source", "target", "result"):
        assert spectra[key].shape == (h, w)
        assert spectra[key].dtype == np.float32
    # Zero frequency sits at the centre: log1p of |sum| averaged over channels.
    dc = np.log1p(src[0].double().sum(dim=(-2, -1)).numpy()).mean()
    assert spectra["source"][h // 2, w // 2] == pytest.approx(dc, rel=1e-5)

    inside = np.zeros((h, w), dtype=bool)
    inside[top:bottom, left:right] = True
    np.testing.assert_allclose(spectra["result"][inside], spectra["target"][inside], atol=1e-4)
    np.testing.assert_allclose(spectra["result"][~inside], spectra["source"][~inside], atol=1e-4)
    # Guard against a vacuous check: source and target do differ inside the window.
    assert np.abs(spectra["source"][inside] - spectra["target"][inside]).max() > 1e-2


def test_amplitude_spectra_beta_zero_and_batches() -> None:
    src, tgt = _images(1, 8, 8, seed=14), _images(1, 8, 8, seed=15)
    spectra = amplitude_spectra(src, tgt, 0.0)
    assert spectra["b"] == 0
    top, left, bottom, right = spectra["window"]
    assert bottom == top and right == left  # empty box: nothing swapped
    np.testing.assert_allclose(spectra["result"], spectra["source"], atol=1e-5)
    with pytest.raises(ValueError, match="single images"):
        amplitude_spectra(_images(2, 8, 8, seed=0), tgt, 0.1)


def test_entropy_loss_hand_values() -> None:
    # Two classes: one pixel at p = (0.5, 0.5) (entropy 1 after normalisation), one at (0.9, 0.1).
    logits = torch.tensor([[0.0, 0.0], [math.log(0.9), math.log(0.1)]], dtype=torch.float64)
    logits = logits.T.reshape(1, 2, 1, 2)  # N x C x H x W
    ent2 = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2)
    eps = 1e-8
    expected_eta2 = (((1.0 + eps) ** 2) + (ent2**2 + eps) ** 2) / 2
    assert entropy_loss(logits).item() == pytest.approx(expected_eta2, rel=1e-12)
    expected_eta1 = ((1.0 + eps) + (ent2**2 + eps)) / 2
    assert entropy_loss(logits, eta=1.0).item() == pytest.approx(expected_eta1, rel=1e-12)
    assert entropy_loss(logits, eta=1.0, eps=0.5).item() == pytest.approx(
        (1.5 + ent2**2 + 0.5) / 2, rel=1e-12
    )


def test_entropy_loss_extremes_and_normalisation() -> None:
    uniform = torch.zeros(2, 19, 3, 4)
    assert entropy_loss(uniform).item() == pytest.approx(1.0, abs=1e-6)  # normalised by log(19)
    confident = torch.zeros(2, 19, 3, 4)
    confident[:, 5] = 100.0
    assert entropy_loss(confident).item() < 1e-12
    logits = torch.randn(2, 19, 3, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    loss = entropy_loss(logits.half())
    assert loss.dtype == torch.float32
    entropy_loss(logits).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="at least 2 classes"):
        entropy_loss(torch.zeros(1, 1, 2, 2))
