import io

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from segdemo.fda import amplitude_spectra
from segdemo.labels import IGNORE_INDEX, PALETTE
from segdemo.viz import (
    DISAGREEMENT_COLOR,
    WINDOW_COLOR,
    disagreement,
    disagreement_image,
    label_png_bytes,
    legend,
    overlay,
    side_by_side,
    spectrum_image,
    to_png_bytes,
)


@pytest.fixture
def photo() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)


@pytest.fixture
def labels() -> np.ndarray:
    ids = np.zeros((6, 8), dtype=np.uint8)  # road
    ids[:, 4:] = 13  # car
    ids[0, :] = IGNORE_INDEX
    ids[5, 0] = 18  # bicycle, the last class
    ids[5, 1] = 77  # not a class: must be treated like ignore
    return ids


# --- overlay -------------------------------------------------------------------------------------


def test_overlay_alpha_zero_is_the_photo(photo, labels):
    out = overlay(photo, labels, alpha=0.0)
    assert out.dtype == np.uint8 and np.array_equal(out, photo)
    assert out is not photo


def test_overlay_alpha_one_paints_palette_and_leaves_unlabelled_pixels(photo, labels):
    out = overlay(photo, labels, alpha=1.0)
    labelled = labels < 19
    assert np.array_equal(out[labelled], PALETTE[labels[labelled]])
    assert np.array_equal(out[~labelled], photo[~labelled])
    assert np.array_equal(out[5, 0], PALETTE[18]) and np.array_equal(out[5, 1], photo[5, 1])


def test_overlay_blends_with_rounding(photo, labels):
    out = overlay(photo, labels, alpha=0.25)
    expected = np.rint(0.75 * photo[3, 6].astype(float) + 0.25 * PALETTE[13].astype(float))
    assert np.array_equal(out[3, 6], expected.astype(np.uint8))
    assert np.array_equal(out[0], photo[0])  # ignore row untouched at any alpha
    assert np.array_equal(photo, np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8))


@pytest.mark.parametrize("alpha", [-0.01, 1.01, float("nan"), True])
def test_overlay_rejects_bad_alpha(photo, labels, alpha):
    with pytest.raises(ValueError, match="alpha"):
        overlay(photo, labels, alpha)


def test_overlay_rejects_mismatched_shapes(photo):
    with pytest.raises(ValueError, match="6 x 8"):
        overlay(photo, np.zeros((6, 7), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        overlay(photo.astype(np.float32), np.zeros((6, 8), dtype=np.uint8))


# --- legend --------------------------------------------------------------------------------------


def test_legend_shares_count_ignore_in_the_total():
    ids = np.array([[0, 0, 0, 0, 0], [13, 13, 13, IGNORE_INDEX, IGNORE_INDEX]], dtype=np.uint8)
    entries = legend(ids)
    assert [e["train_id"] for e in entries] == [0, 13]
    assert entries[0] == {"name": "road", "train_id": 0, "color": "#804080", "share": 0.5}
    assert entries[1]["name"] == "car" and entries[1]["color"] == "#00008e"
    assert entries[1]["share"] == pytest.approx(0.3)
    assert sum(e["share"] for e in entries) + np.mean(ids == IGNORE_INDEX) == pytest.approx(1.0)


def test_legend_orders_by_share_then_train_id(labels):
    entries = legend(labels)
    shares = [e["share"] for e in entries]
    assert shares == sorted(shares, reverse=True)
    assert {e["train_id"] for e in entries} == {0, 13, 18}  # 77 and 255 are no classes
    assert legend(np.array([[5, 2]], dtype=np.uint8))[0]["train_id"] == 2  # tie -> lower id first
    assert legend(np.full((3, 3), IGNORE_INDEX, dtype=np.uint8)) == []


# --- disagreement --------------------------------------------------------------------------------


def test_disagreement_mask_fraction_and_image(photo, labels):
    other = labels.copy()
    other[2, 2] = 1
    other[3, 7] = 0
    mask, fraction = disagreement(labels, other)
    assert mask.dtype == bool and mask.sum() == 2 and mask[2, 2] and mask[3, 7]
    assert fraction == pytest.approx(2 / 48)
    assert disagreement(labels, labels)[1] == 0.0

    pic = disagreement_image(photo, labels, other, darken=0.5)
    assert np.array_equal(pic[2, 2], DISAGREEMENT_COLOR) and np.array_equal(pic[3, 7], DISAGREEMENT_COLOR)
    assert np.array_equal(pic[~mask], np.rint(photo[~mask] * 0.5).astype(np.uint8))
    with pytest.raises(ValueError, match="6 x 8"):
        disagreement(labels, labels[:, :7])


# --- spectrum ------------------------------------------------------------------------------------


def _viridis(value: int) -> np.ndarray:
    bgr = cv2.applyColorMap(np.array([[value]], dtype=np.uint8), cv2.COLORMAP_VIRIDIS)[0, 0]
    return bgr[::-1]


def test_spectrum_image_stretches_to_the_colour_map_and_draws_the_window():
    spec = np.zeros((20, 30), dtype=np.float32)
    spec[0, 0] = -2.0
    spec[19, 29] = 6.0
    out = spectrum_image(spec, window=(8, 10, 11, 15))
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert np.array_equal(out[0, 0], _viridis(0)) and np.array_equal(out[19, 29], _viridis(255))
    assert np.array_equal(out[2, 2], _viridis(64))  # 0.0 sits at 2/8 of the range: 63.75 -> 64
    red = np.all(out == WINDOW_COLOR, axis=2)
    ring = np.zeros_like(red)
    ring[7:12, 9:16] = True
    ring[8:11, 10:15] = False
    assert np.array_equal(red, ring)  # a 1-pixel ring just outside the window, nothing else
    assert not red[8:11, 10:15].any()


def test_spectrum_image_from_fda_window_and_empty_window():
    gen = torch.Generator().manual_seed(0)
    src, tgt = torch.rand(3, 32, 48, generator=gen), torch.rand(3, 32, 48, generator=gen)
    spectra = amplitude_spectra(src, tgt, beta=0.05)
    top, left, bottom, right = spectra["window"]
    out = spectrum_image(spectra["result"], spectra["window"], thickness=2)
    red = np.all(out == WINDOW_COLOR, axis=2)
    assert red[top - 2 : bottom + 2, left - 2].all() and red[top - 1, left:right].all()
    assert not red[top:bottom, left:right].any()

    off = amplitude_spectra(src, tgt, beta=0.0)
    plain = spectrum_image(off["result"], off["window"])
    assert np.array_equal(plain, spectrum_image(off["result"], None))
    assert np.array_equal(spectrum_image(np.ones((4, 4))), np.broadcast_to(_viridis(0), (4, 4, 3)))


def test_spectrum_image_window_at_the_border_is_clipped():
    out = spectrum_image(np.arange(100, dtype=float).reshape(10, 10), window=(0, 0, 3, 3))
    red = np.all(out == WINDOW_COLOR, axis=2)
    assert red[3, :4].all() and red[:4, 3].all() and red.sum() == 7


# --- PNG export ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3), (5, 7, 4)])
def test_to_png_bytes_round_trips(shape):
    array = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    data = to_png_bytes(array)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as image:
        assert np.array_equal(np.asarray(image), array)
    with pytest.raises(ValueError, match="uint8"):
        to_png_bytes(array.astype(np.int32))


def test_label_png_round_trips_train_ids_and_carries_the_palette(labels):
    ids = labels.copy()
    ids[5, 1] = 7  # 77 is not a trainId
    ids[1, :] = np.arange(8) + 11  # 11..18
    data = label_png_bytes(ids.astype(np.int64))
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and image.mode == "P"
        assert np.array_equal(np.asarray(image), ids)
        palette = np.array(image.getpalette(), dtype=np.uint8).reshape(-1, 3)
        shown = np.asarray(image.convert("RGB"))
    assert np.array_equal(palette[:19], PALETTE)
    assert np.array_equal(palette[IGNORE_INDEX], [0, 0, 0])
    assert np.array_equal(shown[3, 6], PALETTE[13]) and np.array_equal(shown[0, 0], [0, 0, 0])


def test_label_png_refuses_values_that_are_no_train_ids(labels):
    with pytest.raises(ValueError, match=r"\[77\]"):
        label_png_bytes(labels)


# --- side by side --------------------------------------------------------------------------------


def test_side_by_side_scales_to_a_common_height_with_gaps():
    a = np.full((40, 30, 3), 10, dtype=np.uint8)
    b = np.full((20, 50), 200, dtype=np.uint8)  # grey, half the height -> 40 x 100
    out = side_by_side([a, b], gap=4)
    assert out.shape == (40, 30 + 4 + 100, 3) and out.dtype == np.uint8
    assert np.array_equal(out[:, :30], a)
    assert (out[:, 30:34] == 255).all()
    assert (out[:, 34:] == 200).all()
    small = side_by_side([a, b], gap=0, height=10)
    assert small.shape == (10, 8 + 25, 3)
    with pytest.raises(ValueError):
        side_by_side([])
