"""Tests for segdemo.datasets: layouts, validation messages, label mapping, resizing, the real GTA5
samples."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from segdemo.datasets import GTA5, Cityscapes, DatasetError, SizeMismatchWarning, validate_root
from segdemo.labels import IGNORE_INDEX, id_to_train_id
from segdemo.normalization import IMAGENET_MEAN, IMAGENET_STD, denormalize, normalize

GTA5_FIXTURES = Path(__file__).resolve().parents[2] / "shared/fixtures/gta5"
VALID_TRAIN_IDS = set(range(19)) | {IGNORE_INDEX}
W, H = 16, 8

# ----------------------------------------------------------------------------------------------
# Helpers writing tiny datasets
# ----------------------------------------------------------------------------------------------


def write_image(path: Path, seed: int, size: tuple[int, int] = (W, H)) -> np.ndarray:
    """Write a random RGB PNG (or JPEG by suffix) and return its H x W x 3 pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def write_label(path: Path, values: np.ndarray, mode: str = "L") -> np.ndarray:
    """Write an H x W uint8 label map as an "L" or palette ("P") PNG and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.asarray(values, dtype=np.uint8)
    if mode == "P":
        # Build the palette image from raw bytes so the indices are exactly ``values``.
        im = Image.frombytes("P", (values.shape[1], values.shape[0]), values.tobytes())
        im.putpalette([c for i in range(256) for c in (i, 255 - i, (7 * i) % 256)])
    else:
        im = Image.fromarray(values)
    im.save(path)
    return values


def random_ids(seed: int, high: int = 35, size: tuple[int, int] = (W, H)) -> np.ndarray:
    """H x W label ids covering 0..high-1 (every value appears when the map is big enough)."""
    ids = np.arange(size[0] * size[1]) % high
    return np.random.default_rng(seed).permutation(ids).reshape(size[1], size[0]).astype(np.uint8)


def random_train_ids(seed: int, size: tuple[int, int] = (W, H)) -> np.ndarray:
    values = np.array(sorted(VALID_TRAIN_IDS), dtype=np.uint8)
    return np.random.default_rng(seed).choice(values, (size[1], size[0]))


def make_gta5(root: Path, n: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    """GTA5 layout with ``n`` pairs of palette label-id maps; returns [(pixels, ids)]."""
    out = []
    for i in range(1, n + 1):
        pixels = write_image(root / "images" / f"{i:05d}.png", seed=i)
        ids = write_label(root / "labels" / f"{i:05d}.png", random_ids(i), mode="P")
        out.append((pixels, ids))
    return out


CS_NAMES = (
    "frankfurt/frankfurt_000000_000294",
    "lindau/lindau_000001_000019",
    "munster/munster_000002_000019",
)


def make_cityscapes_official(root: Path, split: str = "val", train_ids: bool = True) -> dict[str, tuple]:
    """Official layout; each label folder also holds the other gtFine products, as the zip does."""
    out = {}
    for i, name in enumerate(CS_NAMES):
        pixels = write_image(root / "leftImg8bit" / split / f"{name}_leftImg8bit.png", seed=10 + i)
        gt = root / "gtFine" / split
        ids = write_label(gt / f"{name}_gtFine_labelIds.png", random_ids(20 + i))
        write_label(gt / f"{name}_gtFine_instanceIds.png", random_ids(30 + i, high=200))
        Image.fromarray(pixels).save(gt / f"{name}_gtFine_color.png")
        expected = id_to_train_id(ids)
        if train_ids:
            # Deliberately NOT equal to the mapped labelIds, to see which file was used.
            expected = write_label(gt / f"{name}_gtFine_labelTrainIds.png", random_train_ids(40 + i))
        out[Path(name).name] = (pixels, expected)
    return out


# ----------------------------------------------------------------------------------------------
# GTA5 on a tiny tree
# ----------------------------------------------------------------------------------------------


def test_gta5_items_map_label_ids_to_train_ids(tmp_path: Path) -> None:
    data = make_gta5(tmp_path)
    ds = GTA5(tmp_path, normalize=False)
    assert len(ds) == 2 and ds.root == tmp_path
    assert ds.files == [
        (tmp_path / "images" / f"{i:05d}.png", tmp_path / "labels" / f"{i:05d}.png") for i in (1, 2)
    ]
    for (pixels, ids), (image, label) in zip(data, ds, strict=True):
        assert image.dtype == torch.float32 and image.shape == (3, H, W)
        assert label.dtype == torch.int64 and label.shape == (H, W)
        assert torch.equal(image, torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)
        assert np.array_equal(label.numpy(), id_to_train_id(ids))
    # Spot-check the table itself: road (7) -> 0, car (26) -> 13, unlabeled (0) and GTA5's 34 -> ignore.
    _, ids = data[0]
    label = ds[0][1].numpy()
    for label_id, train_id in ((7, 0), (26, 13), (33, 18), (0, 255), (34, 255)):
        assert (label[ids == label_id] == train_id).all() and (ids == label_id).any()


def test_gta5_normalisation_maths(tmp_path: Path) -> None:
    ((pixels, _), _) = make_gta5(tmp_path)
    raw = torch.from_numpy(pixels).permute(2, 0, 1).double() / 255
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(3, 1, 1)
    expected = (raw - mean) / std
    image, _ = GTA5(tmp_path)[0]
    assert torch.allclose(image.double(), expected, atol=1e-5)
    custom, _ = GTA5(tmp_path, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))[0]
    assert torch.allclose(custom[1].double(), (raw[1] - 0.5) / 0.5, atol=1e-5)


def test_normalize_helpers_on_batches() -> None:
    batch = torch.rand(2, 3, 4, 5)
    out = normalize(batch, IMAGENET_MEAN, IMAGENET_STD)
    assert out.shape == batch.shape and not torch.equal(out, batch)
    # One pixel by hand: (x - mean_c) / std_c.
    assert out[1, 2, 3, 4].item() == pytest.approx((batch[1, 2, 3, 4].item() - 0.406) / 0.225, abs=1e-6)
    assert torch.allclose(denormalize(out, IMAGENET_MEAN, IMAGENET_STD), batch, atol=1e-6)
    # Default statistics are ImageNet's, and a single 3 x H x W image works too.
    assert torch.allclose(normalize(batch[0]), out[0])
    with pytest.raises(TypeError, match="floating"):
        normalize(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))
    with pytest.raises(ValueError, match="shape"):
        normalize(torch.zeros(1, 4, 2, 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_normalize_on_gpu() -> None:
    batch = torch.rand(2, 3, 4, 5, device="cuda")
    assert torch.allclose(denormalize(normalize(batch)), batch, atol=1e-6)


def test_resize_keeps_label_values_and_uses_width_height(tmp_path: Path) -> None:
    make_gta5(tmp_path, n=1)
    full_label = GTA5(tmp_path)[0][1]
    for size in ((8, 4), (5, 3), (40, 20)):
        image, label = GTA5(tmp_path, size=size)[0]
        assert image.shape == (3, size[1], size[0]) and label.shape == (size[1], size[0])
        # Nearest never invents a value: bilinear on ids would create in-between classes.
        assert set(label.unique().tolist()) <= set(full_label.unique().tolist())


def test_image_resize_is_antialiased(tmp_path: Path) -> None:
    # Columns repeat [255, 0, 0, 0]: an antialiased 4x downscale averages to ~64, while plain
    # bilinear or nearest sampling lands between/on the dark columns and gives ~0.
    pixels = np.zeros((8, 32, 3), dtype=np.uint8)
    pixels[:, ::4] = 255
    (tmp_path / "images").mkdir()
    Image.fromarray(pixels).save(tmp_path / "images" / "00001.png")
    write_label(tmp_path / "labels" / "00001.png", np.full((8, 32), 7))
    image, _ = GTA5(tmp_path, size=(8, 2), normalize=False)[0]
    assert image.mean().item() * 255 == pytest.approx(63.75, abs=4)


def test_gta5_size_mismatch_detected_and_warned_once(tmp_path: Path) -> None:
    make_gta5(tmp_path, n=2)
    small = np.repeat(np.repeat(random_ids(5, size=(8, 4)), 2, axis=0), 2, axis=1)  # 16x8 after nearest x2
    write_label(tmp_path / "labels" / "00002.png", random_ids(5, size=(8, 4)), mode="P")
    ds = GTA5(tmp_path)
    assert ds.size_mismatches() == [(tmp_path / "images" / "00002.png", (W, H), (8, 4))]
    with pytest.warns(SizeMismatchWarning, match="00002.png") as record:
        _, label = ds[1]
    assert len(record) == 1
    assert label.shape == (H, W)
    assert np.array_equal(label.numpy(), id_to_train_id(small))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second load of the same file must not warn again
        ds[1]
        ds[0]
        _, raw_label = ds.load_raw(1)
    assert raw_label.shape == (H, W)


def test_gta5_unexpected_label_value_names_the_file(tmp_path: Path) -> None:
    make_gta5(tmp_path, n=2)
    bad = random_ids(1)
    bad[0, 0] = 40
    write_label(tmp_path / "labels" / "00002.png", bad)
    ds = GTA5(tmp_path)  # structural checks only: the bad value is not seen yet
    ds[0]
    with pytest.raises(DatasetError, match="00002.png") as info:
        ds[1]
    assert "40" in str(info.value)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_image_names_the_file(tmp_path: Path, damage: str) -> None:
    make_gta5(tmp_path, n=1)
    path = tmp_path / "images" / "00001.png"
    write_image(path, seed=0, size=(64, 64))  # incompressible, so half the bytes cuts into pixel data
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a png at all")
    ds = GTA5(tmp_path)
    with pytest.raises(DatasetError, match="truncated or corrupt") as info:
        ds[0]
    assert str(path) in str(info.value)


def test_corrupt_or_rgb_label_names_the_file(tmp_path: Path) -> None:
    make_gta5(tmp_path, n=2)
    (tmp_path / "labels" / "00001.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    Image.new("RGB", (W, H)).save(tmp_path / "labels" / "00002.png")
    ds = GTA5(tmp_path)
    with pytest.raises(DatasetError, match="00001.png"):
        ds[0]
    with pytest.raises(DatasetError, match="00002.png.*mode 'RGB'"):
        ds[1]


def test_index_errors_and_negative_indices(tmp_path: Path) -> None:
    make_gta5(tmp_path, n=2)
    ds = GTA5(tmp_path)
    assert torch.equal(ds[-1][1], ds[1][1])
    for index in (2, -3, 100):
        with pytest.raises(IndexError):
            ds[index]


def test_load_raw_returns_pil_and_uint8_train_ids(tmp_path: Path) -> None:
    ((pixels, ids), _) = make_gta5(tmp_path)
    ds = GTA5(tmp_path, size=(8, 4), normalize=True)
    image, label = ds.load_raw(0)  # native size, whatever ``size`` says
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (W, H)
    assert np.array_equal(np.asarray(image), pixels)
    assert label.dtype == np.uint8 and np.array_equal(label, id_to_train_id(ids))


def test_transform_gets_resized_uint8_tv_tensors_before_normalisation(tmp_path: Path) -> None:
    make_gta5(tmp_path, n=1)
    seen = {}

    def flip(image: tv_tensors.Image, mask: tv_tensors.Mask) -> tuple:
        seen.update(image=image, mask=mask)
        return F.horizontal_flip(image), F.horizontal_flip(mask)

    plain_image, plain_label = GTA5(tmp_path, size=(8, 4))[0]
    image, label = GTA5(tmp_path, size=(8, 4), transform=flip)[0]
    assert isinstance(seen["image"], tv_tensors.Image) and seen["image"].dtype == torch.uint8
    assert isinstance(seen["mask"], tv_tensors.Mask) and seen["mask"].shape == (4, 8)
    assert seen["image"].shape == (3, 4, 8)
    assert torch.allclose(image, plain_image.flip(-1)) and torch.equal(label, plain_label.flip(-1))
    assert type(image) is torch.Tensor and label.dtype == torch.int64

    with pytest.raises(TypeError, match="pair"):
        GTA5(tmp_path, transform=lambda image, mask: image)[0]


def test_uint8_items_are_what_training_loaders_hand_over(tmp_path: Path) -> None:
    ((pixels, ids), _) = make_gta5(tmp_path)
    image, label = GTA5(tmp_path, as_uint8=True)[0]
    assert image.dtype == torch.uint8 and label.dtype == torch.uint8 and image.shape == (3, H, W)
    assert torch.equal(image, torch.from_numpy(pixels).permute(2, 0, 1))
    assert torch.equal(label, torch.from_numpy(id_to_train_id(ids)))
    # The float item is the same picture, scaled and normalised.
    floating, long_label = GTA5(tmp_path)[0]
    assert torch.allclose(floating, normalize(image.float() / 255), atol=1e-6) and torch.equal(
        long_label, label.long()
    )


def test_target_images_need_no_labels(tmp_path: Path) -> None:
    expected = make_cityscapes_official(tmp_path, split="train")
    shutil.rmtree(tmp_path / "gtFine")  # adaptation never reads target labels: they may be absent
    with pytest.raises(DatasetError, match="gtFine"):
        Cityscapes(tmp_path, "train")
    images = Cityscapes(tmp_path, "train", labels=False, as_uint8=True)
    assert len(images) == 3 and not images.has_labels and all(label is None for _, label in images.files)
    (item,) = images[0]
    pixels = expected[Path(CS_NAMES[0]).name][0]
    assert torch.equal(item, torch.from_numpy(pixels).permute(2, 0, 1))
    (flat_root := tmp_path / "flat" / "images").mkdir(parents=True)
    write_image(flat_root / "a.png", seed=1)
    assert len(Cityscapes(tmp_path / "flat", "train", labels=False)) == 1


def test_labels_at_their_native_size_for_full_resolution_scoring(tmp_path: Path) -> None:
    expected = make_cityscapes_official(tmp_path, split="val")
    image, label = Cityscapes(tmp_path, size=(8, 4), label_size="native", as_uint8=True)[0]
    assert image.shape == (3, 4, 8) and label.shape == (H, W)
    assert torch.equal(label, torch.from_numpy(expected[Path(CS_NAMES[0]).name][1]))
    _, small = Cityscapes(tmp_path, size=(8, 4), label_size=(4, 2))[0]
    assert small.shape == (2, 4)


def test_the_sample_cache_gives_the_same_items_and_spares_the_decoding(tmp_path: Path, monkeypatch) -> None:
    from segdemo import datasets

    make_gta5(tmp_path / "gta5", n=3)
    cache = tmp_path / "cache"
    plain = [GTA5(tmp_path / "gta5", size=(8, 4), as_uint8=True)[i] for i in range(3)]
    cached = GTA5(tmp_path / "gta5", size=(8, 4), as_uint8=True, cache_dir=cache)
    first = [cached[i] for i in range(3)]  # fills the cache
    assert cached.cache.entries() == 3
    for a, b in zip(plain, first):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])

    def no_decoding(path):
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(datasets, "_read_image", no_decoding)
    again = [GTA5(tmp_path / "gta5", size=(8, 4), as_uint8=True, cache_dir=cache)[i] for i in range(3)]
    for a, b in zip(plain, again):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    monkeypatch.undo()
    # Another size is another entry; a rewritten source file too (never a stale entry).
    GTA5(tmp_path / "gta5", size=(16, 8), cache_dir=cache)[0]
    assert cached.cache.entries() == 4
    write_image(tmp_path / "gta5" / "images" / "00001.png", seed=99)
    fresh = GTA5(tmp_path / "gta5", size=(8, 4), as_uint8=True, cache_dir=cache)[0][0]
    assert not torch.equal(fresh, plain[0][0]) and cached.cache.entries() == 5
    # Damaged entries are read as missing and written again.
    for entry in cache.glob("*/*.npz"):
        entry.write_bytes(entry.read_bytes()[:40])
    repaired = [GTA5(tmp_path / "gta5", size=(8, 4), as_uint8=True, cache_dir=cache)[i] for i in (1, 2)]
    for a, b in zip(plain[1:], repaired):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert sum(1 for entry in cache.glob("*/*.npz") if entry.stat().st_size > 40) == 2


def test_hidden_files_are_ignored(tmp_path: Path) -> None:
    make_gta5(tmp_path, n=1)
    (tmp_path / "images" / "._00001.png").write_bytes(b"macOS resource fork")
    assert len(GTA5(tmp_path)) == 1


# ----------------------------------------------------------------------------------------------
# GTA5 validation messages
# ----------------------------------------------------------------------------------------------


def test_gta5_root_missing_or_not_a_dir(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match="does not exist") as info:
        GTA5(missing)
    assert str(missing) in str(info.value) and "images" in str(info.value)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(DatasetError, match="not a directory") as info:
        validate_root("gta5", a_file)
    assert str(a_file) in str(info.value)


@pytest.mark.parametrize("missing", ["images", "labels"])
def test_gta5_missing_subfolder(tmp_path: Path, missing: str) -> None:
    make_gta5(tmp_path / "GTA5", n=1)
    root = tmp_path / "GTA5"
    for p in (root / missing).iterdir():
        p.unlink()
    (root / missing).rmdir()
    with pytest.raises(DatasetError, match=f"no '{missing}' folder") as info:
        GTA5(root)
    assert str(root) in str(info.value)


def test_gta5_pointed_one_level_up_suggests_the_subfolder(tmp_path: Path) -> None:
    make_gta5(tmp_path / "GTA5", n=1)
    with pytest.raises(DatasetError, match="did you mean") as info:
        GTA5(tmp_path)
    assert str(tmp_path / "GTA5") in str(info.value)


def test_gta5_no_images(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    with pytest.raises(DatasetError, match="no images found") as info:
        GTA5(tmp_path)
    assert str(tmp_path / "images") in str(info.value)


def test_gta5_images_without_labels_names_five_and_the_count(tmp_path: Path) -> None:
    make_gta5(tmp_path, n=1)
    for i in range(2, 9):
        write_image(tmp_path / "images" / f"{i:05d}.png", seed=i, size=(2, 2))
    with pytest.raises(DatasetError, match="7 of 8 images") as info:
        validate_root("gta5", tmp_path)
    message = str(info.value)
    assert str(tmp_path / "labels") in message
    assert all(f"{i:05d}.png" in message for i in range(2, 7)) and "00008.png" not in message


def test_gta5_labels_without_images(tmp_path: Path) -> None:
    make_gta5(tmp_path, n=1)
    write_label(tmp_path / "labels" / "00099.png", random_ids(0))
    with pytest.raises(DatasetError, match="have no image") as info:
        GTA5(tmp_path)
    assert "00099.png" in str(info.value) and str(tmp_path / "labels") in str(info.value)


def test_validate_root_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="gta5"):
        validate_root("synthia", tmp_path)


# ----------------------------------------------------------------------------------------------
# Cityscapes
# ----------------------------------------------------------------------------------------------


def check_cityscapes(ds: Cityscapes, expected: dict[str, tuple]) -> None:
    """Every item's pixels and trainIds equal the expected ones, matched by stem."""
    assert len(ds) == len(expected)
    for i, (image_path, _) in enumerate(ds.files):
        key = image_path.name.split("_leftImg8bit")[0].split(".")[0]
        pixels, train_ids = expected[key]
        image, label = ds[i]
        assert image.shape == (3, H, W) and label.dtype == torch.int64
        assert torch.equal(image, torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)
        assert np.array_equal(label.numpy(), train_ids), image_path


def test_cityscapes_official_prefers_label_train_ids(tmp_path: Path) -> None:
    expected = make_cityscapes_official(tmp_path)
    make_cityscapes_official(tmp_path, split="train")  # another split must not leak in
    ds = Cityscapes(tmp_path, split="val", normalize=False)
    assert ds.layout == "official"
    assert all(label.name.endswith("_gtFine_labelTrainIds.png") for _, label in ds.files)
    assert all("/val/" in image.as_posix() for image, _ in ds.files)
    check_cityscapes(ds, expected)


def test_cityscapes_official_falls_back_to_label_ids_pixel_exact(tmp_path: Path) -> None:
    expected = make_cityscapes_official(tmp_path, train_ids=False)
    ds = Cityscapes(tmp_path, normalize=False)
    assert all(label.name.endswith("_gtFine_labelIds.png") for _, label in ds.files)
    check_cityscapes(ds, expected)


def test_cityscapes_decides_train_ids_or_label_ids_per_file(tmp_path: Path) -> None:
    expected = make_cityscapes_official(tmp_path, train_ids=False)
    gt = tmp_path / "gtFine" / "val" / "lindau"
    expected["lindau_000001_000019"] = (
        expected["lindau_000001_000019"][0],
        write_label(gt / "lindau_000001_000019_gtFine_labelTrainIds.png", random_train_ids(7)),
    )
    check_cityscapes(Cityscapes(tmp_path, normalize=False), expected)


def test_cityscapes_bad_train_id_value_names_the_file(tmp_path: Path) -> None:
    make_cityscapes_official(tmp_path)
    path = tmp_path / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelTrainIds.png"
    write_label(path, np.full((H, W), 19))
    ds = Cityscapes(tmp_path)
    with pytest.raises(DatasetError, match="19") as info:
        ds[0]
    assert str(path) in str(info.value)


def test_cityscapes_resize_to_report_size(tmp_path: Path) -> None:
    make_cityscapes_official(tmp_path)
    image, label = Cityscapes(tmp_path, size=(1024, 512))[0]
    assert image.shape == (3, 512, 1024) and label.shape == (512, 1024)
    assert set(label.unique().tolist()) <= VALID_TRAIN_IDS


FLAT_LAYOUTS = {
    "images+labels": ("images", "labels"),
    "images/val+labels/val": ("images/val", "labels/val"),
    "val/images+val/labels": ("val/images", "val/labels"),
}


@pytest.mark.parametrize("layout", FLAT_LAYOUTS)
@pytest.mark.parametrize("naming", ["trainIds", "labelIds", "same-name-trainIds", "same-name-labelIds"])
@pytest.mark.parametrize("cities", [False, True])
def test_cityscapes_flat_layouts(tmp_path: Path, layout: str, naming: str, cities: bool) -> None:
    image_dir, label_dir = (tmp_path / d for d in FLAT_LAYOUTS[layout])
    expected = {}
    for i, name in enumerate(CS_NAMES):
        rel = name if cities else Path(name).name
        stem = Path(name).name
        pixels = write_image(image_dir / f"{rel}_leftImg8bit.png", seed=i)
        if naming == "trainIds":
            train_ids = write_label(label_dir / f"{rel}_gtFine_labelTrainIds.png", random_train_ids(i))
        elif naming == "same-name-trainIds":
            train_ids = write_label(label_dir / f"{rel}_leftImg8bit.png", random_train_ids(i))
        else:
            suffix = "_gtFine_labelIds.png" if naming == "labelIds" else "_leftImg8bit.png"
            train_ids = id_to_train_id(write_label(label_dir / f"{rel}{suffix}", random_ids(i)))
        expected[stem] = (pixels, train_ids)
    ds = Cityscapes(tmp_path, split="val", normalize=False)
    assert ds.layout == "flat"
    check_cityscapes(ds, expected)


def test_cityscapes_flat_same_file_names_without_cityscapes_suffixes(tmp_path: Path) -> None:
    # A smooth image: JPEG keeps it close, so the pixels can be compared loosely.
    pixels = np.zeros((H, W, 3), dtype=np.uint8)
    pixels[..., 0] = np.linspace(0, 255, W, dtype=np.uint8)
    pixels[..., 1] = 90
    (tmp_path / "images").mkdir()
    Image.fromarray(pixels).save(tmp_path / "images" / "0001.jpg", quality=95)
    ids = write_label(tmp_path / "labels" / "0001.png", random_ids(0))
    image, label = Cityscapes(tmp_path, normalize=False)[0]
    assert np.array_equal(label.numpy(), id_to_train_id(ids))
    assert (image - torch.from_numpy(pixels).permute(2, 0, 1) / 255).abs().mean() < 0.03


def test_cityscapes_flat_unexpected_values_name_the_file(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "a_leftImg8bit.png", seed=0)
    path = tmp_path / "labels" / "a_leftImg8bit.png"
    write_label(path, np.full((H, W), 40))
    with pytest.raises(DatasetError, match="40") as info:
        Cityscapes(tmp_path)[0]
    assert str(path) in str(info.value)


def test_a_same_name_label_that_reads_both_ways_is_refused_and_a_named_one_is_read(tmp_path: Path) -> None:
    # values 0-18 without 255 are trainIds and label ids alike (road or "unlabeled"?): the name must say which
    write_image(tmp_path / "images" / "a_leftImg8bit.png", seed=0)
    values = np.arange(H * W).reshape(H, W) % 19
    same_name = write_label(tmp_path / "labels" / "a_leftImg8bit.png", values)
    with pytest.raises(DatasetError, match="labelTrainIds.png or X_gtFine_labelIds.png"):
        Cityscapes(tmp_path, normalize=False)[0]
    (tmp_path / "labels" / "a_leftImg8bit.png").rename(tmp_path / "labels" / "a_gtFine_labelTrainIds.png")
    assert np.array_equal(Cityscapes(tmp_path, normalize=False)[0][1].numpy(), same_name)


def test_cityscapes_flat_missing_split(tmp_path: Path) -> None:
    for split in ("train", "val"):
        write_image(tmp_path / "images" / split / f"a_{split}.png", seed=0)
        write_label(tmp_path / "labels" / split / f"a_{split}.png", random_train_ids(0))
    assert len(Cityscapes(tmp_path, split="train")) == 1
    with pytest.raises(DatasetError, match="no split 'test'") as info:
        Cityscapes(tmp_path, split="test")
    assert str(tmp_path / "images") in str(info.value)


def test_cityscapes_no_recognised_layout(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    with pytest.raises(DatasetError, match="no recognised layout") as info:
        Cityscapes(tmp_path)
    assert str(tmp_path) in str(info.value) and "leftImg8bit" in str(info.value)


def test_cityscapes_root_missing(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist") as info:
        validate_root("cityscapes", tmp_path / "cs")
    assert str(tmp_path / "cs") in str(info.value)


def test_cityscapes_official_missing_gtfine_or_split(tmp_path: Path) -> None:
    make_cityscapes_official(tmp_path)
    with pytest.raises(DatasetError, match="no split 'train'") as info:
        Cityscapes(tmp_path, split="train")
    assert str(tmp_path / "leftImg8bit" / "train") in str(info.value) and "val/" in str(info.value)
    (tmp_path / "gtFine").rename(tmp_path / "elsewhere")
    with pytest.raises(DatasetError, match="no 'gtFine' folder") as info:
        Cityscapes(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_cityscapes_official_images_without_label_maps(tmp_path: Path) -> None:
    make_cityscapes_official(tmp_path)
    # Only the colour and instance images left: they are not label maps.
    for p in (tmp_path / "gtFine/val/lindau").glob("*_label*Ids.png"):
        p.unlink()
    with pytest.raises(DatasetError, match="1 of 3 images") as info:
        Cityscapes(tmp_path)
    assert "lindau_000001_000019_leftImg8bit.png" in str(info.value)
    assert str(tmp_path / "gtFine" / "val") in str(info.value)


def test_cityscapes_official_labels_without_images(tmp_path: Path) -> None:
    make_cityscapes_official(tmp_path)
    (tmp_path / "leftImg8bit/val/munster/munster_000002_000019_leftImg8bit.png").unlink()
    with pytest.raises(DatasetError, match="have no image") as info:
        Cityscapes(tmp_path)
    assert "munster_000002_000019_gtFine_labelTrainIds.png" in str(info.value)


def test_cityscapes_duplicate_stems_are_reported(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "a.png", seed=0)
    write_image(tmp_path / "images" / "a.jpg", seed=1)
    write_label(tmp_path / "labels" / "a.png", random_train_ids(0))
    with pytest.raises(DatasetError, match="same name") as info:
        Cityscapes(tmp_path)
    assert str(tmp_path / "images") in str(info.value)


# ----------------------------------------------------------------------------------------------
# The three real GTA5 samples
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_gta5() -> Path:
    if not (GTA5_FIXTURES / "images").is_dir():
        pytest.skip(
            f"real GTA5 samples not found at {GTA5_FIXTURES} (the shared/ folder beside the checkout)"
        )
    return GTA5_FIXTURES


def test_real_gta5_full_size(real_gta5: Path) -> None:
    ds = GTA5(real_gta5, normalize=False)
    assert len(ds) == 3 and ds.size_mismatches() == []
    saw_34 = False
    for i, (image_path, label_path) in enumerate(ds.files):
        image, label = ds[i]
        assert image.shape == (3, 1052, 1914) and image.dtype == torch.float32
        assert label.shape == (1052, 1914) and label.dtype == torch.int64
        assert 0.0 <= image.min().item() and image.max().item() <= 1.0
        pixels = np.array(Image.open(image_path).convert("RGB"))
        assert torch.equal(image[:, 500, 900], torch.from_numpy(pixels[500, 900]).float() / 255)
        ids = np.array(Image.open(label_path))
        assert set(label.unique().tolist()) <= VALID_TRAIN_IDS
        assert np.array_equal(label.numpy(), id_to_train_id(ids))
        if (ids == 34).any():
            saw_34 = True
            assert (label.numpy()[ids == 34] == IGNORE_INDEX).all()
    assert saw_34, "sample 00002 contains GTA5's label id 34"


def test_real_gta5_report_size(real_gta5: Path) -> None:
    full = GTA5(real_gta5)
    ds = GTA5(real_gta5, size=(1280, 720))
    for i in range(len(ds)):
        image, label = ds[i]
        assert image.shape == (3, 720, 1280) and image.dtype == torch.float32
        assert label.shape == (720, 1280) and label.dtype == torch.int64
        _, full_label = full.load_raw(i)
        assert set(label.unique().tolist()) <= set(np.unique(full_label).tolist())
        # Normalised ImageNet-style: roughly zero-centred, unit-ish spread.
        assert -2.2 < image.min().item() and image.max().item() < 2.7
