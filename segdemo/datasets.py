"""Loaders for GTA5 (source domain) and Cityscapes (target domain) in the layouts they ship in.

Both datasets are map-style ``torch.utils.data.Dataset``\\ s whose item ``i`` is
``(image, label)``: ``image`` is float32 3 x H x W (ImageNet-normalised, or in [0, 1] with
``normalize=False``), ``label`` is int64 H x W of trainIds 0-18 with 255 = ignore.

Per item the pipeline is::

    decode PNG -> label ids to trainIds -> resize to ``size`` (image bilinear + antialias,
    label nearest) -> ``transform(Image uint8, Mask uint8)`` -> float -> normalise

Constructors only look at file names (:func:`validate_root`); pixel values are checked when an
item is loaded, so building a dataset over the 25k GTA5 files is instant.

Layouts
-------
GTA5::

    root/images/00001.png   RGB
    root/labels/00001.png   palette ("P") or "L" PNG of Cityscapes label ids 0-34

Cityscapes, official (as unzipped from leftImg8bit_trainvaltest.zip + gtFine_trainvaltest.zip)::

    root/leftImg8bit/{split}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    root/gtFine/{split}/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png   (preferred)
    root/gtFine/{split}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png        (fallback, mapped)

Cityscapes, flat "reduced" copy (city subfolders allowed anywhere below ``images``/``labels``)::

    root/{split}/images + root/{split}/labels     (checked first)
    root/images/{split} + root/labels/{split}
    root/images + root/labels

In a flat copy an image ``X_leftImg8bit.png`` (or ``X.png``/``X.jpg``) pairs with the label
``X_gtFine_labelTrainIds.png``, else ``X_gtFine_labelIds.png``, else a label with the same stem.
How a label's values are read is decided per file:

* ``*_labelTrainIds.png``: trainIds; every value must be in 0-18 or 255.
* ``*_labelIds.png``: label ids 0-34, mapped with :func:`segdemo.labels.id_to_train_id`.
* same-name label: decided by :func:`segdemo.labels.ids_to_train_ids` (the rule the app's label uploads
  follow too): trainIds if every value is in 0-18 or 255 and 255 occurs, label ids if every value is
  <= 34 and one is above 18, otherwise an error. A map with only values 0-18 and no 255 could be either
  and is refused with a message to rename it ``*_gtFine_labelTrainIds.png`` or ``*_gtFine_labelIds.png``
  (real trainId maps nearly always hold ignore pixels, real label-id maps ids such as sky = 23).
"""

from __future__ import annotations

import operator
import os
import struct
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from .labels import (
    IGNORE_INDEX,
    LABEL_IDS,
    MAX_ANY_LABEL_ID,
    NUM_CLASSES,
    TRAIN_IDS,
    LabelValuesError,
    ids_to_train_ids,
    listed_values,
)
from .normalization import IMAGENET_MEAN, IMAGENET_STD, normalize
from .sample_cache import SampleCache

GTA5_SIZE: tuple[int, int] = (1280, 720)
"""(width, height) the report trains GTA5 at."""
CITYSCAPES_SIZE: tuple[int, int] = (1024, 512)
"""(width, height) the report evaluates Cityscapes at."""
NATIVE = "native"
"""``label_size`` that keeps labels at their native resolution."""

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")
SPLITS: tuple[str, ...] = ("train", "val", "test")

GTA5_URL = "https://download.visinf.tu-darmstadt.de/data/from_games/"
CITYSCAPES_URL = "https://www.cityscapes-dataset.com/downloads/"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_LABEL_MODES = ("P", "L", "I", "I;16", "I;16L", "I;16B")
# Label value conventions, decided per label file (see the module docstring).
_TRAIN_IDS, _LABEL_IDS, _AUTO = "trainIds", "labelIds", "auto"
_CS_IMAGE_SUFFIX = "_leftImg8bit"
_CS_LABEL_SUFFIXES = (("_gtFine_labelTrainIds", _TRAIN_IDS), ("_gtFine_labelIds", _LABEL_IDS))

Transform = Callable[[tv_tensors.Image, tv_tensors.Mask], tuple[Any, Any]]


class DatasetError(ValueError):
    """A dataset folder or file is missing, malformed or holds unexpected values.

    The message names the offending path and says how to fix it.
    """


class SizeMismatchWarning(UserWarning):
    """An image and its label have different sizes; the label is resized to the image (nearest)."""


class BadSampleWarning(UserWarning):
    """A sample that cannot be used (corrupt file, unexpected label values) was skipped; names the file."""


BAD_SAMPLE_POLICIES: tuple[str, ...] = ("stop", "skip")
"""What a dataset does with a sample it cannot use: raise :class:`DatasetError` naming the file ("stop", the
default) or warn (:class:`BadSampleWarning`, naming the file) and return None ("skip"), which
:func:`collate_usable` leaves out of the batch."""


# ----------------------------------------------------------------------------------------------
# Normalisation helpers
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# File reading
# ----------------------------------------------------------------------------------------------


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image, from the PNG IHDR chunk when possible (no decoding)."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError as err:
        raise DatasetError(
            f"cannot read {path}: {err.strerror or err}; check the file exists and is readable"
        ) from err
    if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    try:
        with Image.open(path) as im:  # lazy: reads the header only
            return im.size
    except (OSError, ValueError, SyntaxError) as err:
        raise _corrupt(path, err) from err


def _corrupt(path: Path, err: BaseException) -> DatasetError:
    return DatasetError(
        f"cannot decode {path} ({type(err).__name__}: {err}): the file is truncated or corrupt; re-extract "
        "it from the dataset archive (or delete the pair and its partner file)"
    )


def _read_image(path: Path) -> Image.Image:
    """Decode an image fully as RGB; any decoding problem becomes a DatasetError naming the file."""
    try:
        with Image.open(path) as im:
            im.load()  # force full decoding here so truncation is reported now, with the path
            return im.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise _corrupt(path, err) from err


def _read_label(path: Path) -> np.ndarray:
    """Decode a single-channel label PNG into an integer array of its raw values (palette indices for "P")."""
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            # np.asarray on a "P" image gives palette indices, which is what label maps store.
            values = np.array(im) if mode in _LABEL_MODES else None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise _corrupt(path, err) from err
    if values is None:
        raise DatasetError(
            f"label {path} has image mode {mode!r}; expected a single-channel map of ids (mode 'P' or 'L'). "
            f"If it is a colour-coded *_color.png, use the *_labelIds.png / *_labelTrainIds.png file instead"
        )
    return values


def _to_train_ids(values: np.ndarray, kind: str, path: Path) -> np.ndarray:
    """Turn a raw label map into uint8 trainIds, checking its values against the file's convention."""
    encoding = {_TRAIN_IDS: TRAIN_IDS, _LABEL_IDS: LABEL_IDS, _AUTO: "auto"}[kind]
    try:
        return ids_to_train_ids(values, encoding)[0]
    except LabelValuesError as exc:
        if exc.reason == "ambiguous":
            raise DatasetError(
                f"label {path} holds only values 0-{NUM_CLASSES - 1} ({listed_values(exc.values)}), which "
                "read as trainIds and as label ids mean different classes: name it "
                "X_gtFine_labelTrainIds.png or X_gtFine_labelIds.png to say which"
            ) from None
        train_text = f"trainIds 0-{NUM_CLASSES - 1} or {IGNORE_INDEX}"
        ids_text = f"label ids 0-{MAX_ANY_LABEL_ID}"
        expected = {_TRAIN_IDS: train_text, _LABEL_IDS: ids_text, _AUTO: f"{train_text}, or {ids_text}"}[kind]
        raise DatasetError(
            f"label {path} contains unexpected value(s) {listed_values(exc.values)}: expected {expected}. "
            "Re-extract the file from the dataset archive (labels must be id maps, not colour-coded or "
            "resized with interpolation)"
        ) from None


# ----------------------------------------------------------------------------------------------
# Folder discovery and validation (file names only; no pixel is read)
# ----------------------------------------------------------------------------------------------


def _walk(folder: Path, suffixes: tuple[str, ...], recursive: bool) -> list[Path]:
    """Files under ``folder`` whose lower-cased name ends with one of ``suffixes``, sorted.

    Hidden files (e.g. macOS ``._00001.png`` resource forks) are skipped.
    """
    suffixes = tuple(s.lower() for s in suffixes)
    found: list[Path] = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            found.extend(
                Path(dirpath, n) for n in filenames if not n.startswith(".") and n.lower().endswith(suffixes)
            )
    else:
        with os.scandir(folder) as entries:
            found.extend(
                Path(e.path)
                for e in entries
                if not e.name.startswith(".") and e.name.lower().endswith(suffixes) and e.is_file()
            )
    return sorted(found)


def _examples(names: Iterable[str], total: int) -> str:
    shown = sorted(names)[:5]
    return ", ".join(shown) + (f", ... ({total} in all)" if total > len(shown) else "")


def _listing(folder: Path) -> str:
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    except OSError:
        return "?"
    if not names:
        return "nothing"
    return ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")


def _nested_hint(root: Path, markers: tuple[str, ...]) -> str:
    """Suggest a subfolder of ``root`` that has all of ``markers`` (a common mistake: pointing one level
    up)."""
    try:
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            if all((sub / m).is_dir() for m in markers):
                return f" (did you mean {sub}? it has {'/ and '.join(markers)}/)"
    except OSError:
        pass
    return ""


def _check_dir(root: Path, what: str, remedy: str) -> None:
    if not root.exists():
        raise DatasetError(f"{what} root {root} does not exist: {remedy}")
    if not root.is_dir():
        raise DatasetError(f"{what} root {root} is not a directory: {remedy}")


def _match(
    images: dict[str, Path],
    labels: dict[str, Any],
    image_dir: Path,
    label_dir: Path,
    what: str,
    empty_remedy: str,
    remedy: str,
) -> None:
    """Raise if there are no images, an image lacks a label or a label lacks an image (keys: pairing
    stems)."""
    if not images:
        raise DatasetError(f"{what}: no images found in {image_dir}: {empty_remedy}")
    missing = [images[k].name for k in images.keys() - labels.keys()]
    if missing:
        raise DatasetError(
            f"{what}: {len(missing)} of {len(images)} images in {image_dir} have no label in {label_dir}: "
            f"{_examples(missing, len(missing))}. {remedy}"
        )
    orphans = [_label_path(labels[k]).name for k in labels.keys() - images.keys()]
    if orphans:
        raise DatasetError(
            f"{what}: {len(orphans)} labels in {label_dir} have no image in {image_dir}: "
            f"{_examples(orphans, len(orphans))}. The download is incomplete or the folders are mixed up: "
            f"re-extract the images, or delete the extra labels"
        )


def _label_path(entry: Any) -> Path:
    return entry[0] if isinstance(entry, tuple) else entry


def _add_unique(table: dict[str, Any], key: str, value: Any, path: Path) -> None:
    if key in table:
        raise DatasetError(
            f"{path} and {_label_path(table[key])} pair with the same name {key!r}: remove one of them (file "
            "names must be unique across city subfolders and image formats)"
        )
    table[key] = value


def _find_gta5(root: Path) -> list[tuple[Path, Path]]:
    layout = f"expected {root}/images/NNNNN.png and {root}/labels/NNNNN.png"
    remedy = (
        f"{layout} (download the GTA5 images and labels from {GTA5_URL} and unpack them so that the two "
        f"folders sit side by side in {root})"
    )
    _check_dir(root, "GTA5", remedy)
    for sub in ("images", "labels"):
        if not (root / sub).is_dir():
            raise DatasetError(
                f"GTA5 root {root} has no {sub!r} folder (it contains "
                f"{_listing(root)}){_nested_hint(root, ('images', 'labels'))}: {remedy}"
            )
    image_dir, label_dir = root / "images", root / "labels"
    images: dict[str, Path] = {}
    for p in _walk(image_dir, IMAGE_EXTENSIONS, recursive=False):
        _add_unique(images, p.stem, p, p)
    labels = {p.stem: p for p in _walk(label_dir, (".png",), recursive=False)}
    pair_remedy = (
        "every images/NNNNN.png needs labels/NNNNN.png: re-extract the GTA5 label archives (the download "
        "comes in several parts) or remove those images"
    )
    _match(images, labels, image_dir, label_dir, f"GTA5 root {root}", remedy, pair_remedy)
    return [(images[k], labels[k]) for k in sorted(images)]


def _cityscapes_key(path: Path) -> tuple[str, str]:
    """Pairing stem and value convention of a Cityscapes image or label file name."""
    stem = path.stem
    for suffix, kind in _CS_LABEL_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)], kind
    return stem.removesuffix(_CS_IMAGE_SUFFIX), _AUTO


def _collect_labels(files: list[Path], allow_same_name: bool) -> dict[str, tuple[Path, str]]:
    """Label files by pairing stem; *_labelTrainIds beats *_labelIds beats a same-name file."""
    rank = {_TRAIN_IDS: 0, _LABEL_IDS: 1, _AUTO: 2}
    labels: dict[str, tuple[Path, str]] = {}
    for p in files:
        key, kind = _cityscapes_key(p)
        if kind == _AUTO and (not allow_same_name or "_gtFine_" in p.stem):
            continue  # other gtFine products (_color, _instanceIds, ...) are not label maps
        current = labels.get(key)
        if current is None or rank[kind] < rank[current[1]]:
            labels[key] = (p, kind)
        elif rank[kind] == rank[current[1]]:
            _add_unique(labels, key, (p, kind), p)
    return labels


def _cityscapes_flat_dirs(root: Path, split: str, remedy: str, with_labels: bool = True) -> tuple[Path, Path]:
    """Pick the images/labels folders of a flat copy (see the module docstring for the order)."""
    split_dir = root / split
    if (split_dir / "images").is_dir() or (split_dir / "labels").is_dir():
        image_dir, label_dir = split_dir / "images", split_dir / "labels"
    else:
        image_dir, label_dir = root / "images", root / "labels"
        if (image_dir / split).is_dir() or (label_dir / split).is_dir():
            image_dir, label_dir = image_dir / split, label_dir / split
        else:
            present = [s for s in SPLITS if (image_dir / s).is_dir()]
            if present:
                raise DatasetError(
                    f"Cityscapes root {root} has no split {split!r}: {image_dir} only has "
                    f"{', '.join(present)}/; pass one of those as split, or add {image_dir / split} and "
                    f"{label_dir / split}"
                )
    for folder in (image_dir, label_dir)[: 2 if with_labels else 1]:
        if not folder.is_dir():
            raise DatasetError(f"Cityscapes root {root}: {folder} is missing: {remedy}")
    return image_dir, label_dir


def _find_cityscapes(
    root: Path, split: str, with_labels: bool = True
) -> tuple[list[tuple[Path, Path | None, str]], str]:
    """Return ([(image, label, value convention)], "official" | "flat") for a Cityscapes root.

    ``with_labels=False`` (target images for adaptation, which needs no target labels) finds the images
    alone: labels are neither required nor paired, and each entry's label is None.
    """
    remedy = (
        f"expected the official layout {root}/leftImg8bit/{split}/<city>/*_leftImg8bit.png + "
        f"{root}/gtFine/{split}/<city>/*_gtFine_labelTrainIds.png (or *_gtFine_labelIds.png), or a flat copy "
        f"{root}/images + {root}/labels (optionally with {split}/ under each, or {root}/{split}/images + "
        f"{root}/{split}/labels). Download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from "
        f"{CITYSCAPES_URL} and unzip both into {root}"
    )
    _check_dir(root, "Cityscapes", remedy)
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a non-empty string such as 'val', got {split!r}")

    if (root / "leftImg8bit").is_dir() or (root / "gtFine").is_dir():
        layout = "official"
        image_dir, label_dir = root / "leftImg8bit" / split, root / "gtFine" / split
        needed = ((root / "leftImg8bit", image_dir), (root / "gtFine", label_dir))[: 2 if with_labels else 1]
        for top, folder in needed:
            if not top.is_dir():
                raise DatasetError(f"Cityscapes root {root} has no {top.name!r} folder: {remedy}")
            if not folder.is_dir():
                raise DatasetError(
                    f"Cityscapes root {root} has no split {split!r}: {folder} is missing ({top} contains "
                    f"{_listing(top)}); pass an existing split or unzip the archive that contains it"
                )
        image_files = _walk(image_dir, (_CS_IMAGE_SUFFIX + ".png",), recursive=True)
        labels = (
            _collect_labels(_walk(label_dir, (".png",), recursive=True), allow_same_name=False)
            if with_labels
            else {}
        )
        label_remedy = (
            "gtFine_trainvaltest.zip provides *_gtFine_labelIds.png for every image (cityscapesscripts' "
            "csCreateTrainIdLabelImgs adds *_gtFine_labelTrainIds.png); re-extract it"
        )
    else:
        if not (root / "images").is_dir() and not (root / split).is_dir():
            hint = _nested_hint(root, ("leftImg8bit", "gtFine")) or _nested_hint(root, ("images", "labels"))
            raise DatasetError(
                f"Cityscapes root {root} has no recognised layout (it contains {_listing(root)}){hint}: "
                f"{remedy}"
            )
        layout = "flat"
        image_dir, label_dir = _cityscapes_flat_dirs(root, split, remedy, with_labels)
        image_files = _walk(image_dir, IMAGE_EXTENSIONS, recursive=True)
        labels = (
            _collect_labels(_walk(label_dir, (".png",), recursive=True), allow_same_name=True)
            if with_labels
            else {}
        )
        label_remedy = (
            "every image X_leftImg8bit.png needs X_gtFine_labelTrainIds.png, X_gtFine_labelIds.png or a "
            "label with the same file name; copy the missing labels or remove those images"
        )

    images: dict[str, Path] = {}
    for p in image_files:
        _add_unique(images, _cityscapes_key(p)[0], p, p)
    what = f"Cityscapes root {root} (split {split!r})"
    if not with_labels:
        if not images:
            raise DatasetError(f"{what}: no images found in {image_dir}: {remedy}")
        return [(images[k], None, _AUTO) for k in sorted(images)], layout
    _match(images, labels, image_dir, label_dir, what, remedy, label_remedy)
    pairs = [(images[k], *labels[k]) for k in sorted(images)]
    return pairs, layout


def validate_root(kind: str, root: str | os.PathLike[str], split: str = "val") -> None:
    """Check that ``root`` holds a usable ``kind`` ("gta5" or "cityscapes") dataset; raise DatasetError if
    not.

    Structural checks only (folders exist, images found, every image has a label and vice versa);
    no pixel is read. ``split`` is used for Cityscapes only. The dataset constructors run the
    same checks.
    """
    key = kind.strip().lower()
    if key == "gta5":
        _find_gta5(Path(root))
    elif key == "cityscapes":
        _find_cityscapes(Path(root), split)
    else:
        raise ValueError(f"unknown dataset kind {kind!r}: expected 'gta5' or 'cityscapes'")


# ----------------------------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------------------------


def _check_size(size: Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in size):
        raise ValueError(f"size must be None or (width, height) with positive ints, got {size!r}")
    return int(size[0]), int(size[1])


class _SegmentationDataset(Dataset):
    """Shared loading pipeline; subclasses fill ``files`` and ``_label_kinds``."""

    name = "dataset"

    def __init__(
        self,
        root: str | os.PathLike[str],
        size: Sequence[int] | None,
        transform: Transform | None,
        normalize: bool,
        mean: Sequence[float],
        std: Sequence[float],
        on_bad_sample: str = "stop",
        as_uint8: bool = False,
        label_size: Sequence[int] | str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if on_bad_sample not in BAD_SAMPLE_POLICIES:
            raise ValueError(f"on_bad_sample must be one of {BAD_SAMPLE_POLICIES}, not {on_bad_sample!r}")
        self.root = Path(root)
        self.on_bad_sample = on_bad_sample
        self.skipped: dict[Path, str] = {}
        """Pairs skipped so far in this process (image path -> why); DataLoader workers keep their own."""
        self.size = _check_size(size)
        self.label_size = label_size if label_size == NATIVE else _check_size(label_size)
        self.transform = transform
        self.normalize = normalize
        self.as_uint8 = as_uint8
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.cache = SampleCache(cache_dir) if cache_dir else None
        self.files: list[tuple[Path, Path | None]] = []
        self._label_kinds: list[str] = []
        # Size-mismatch warnings already given (per process: each DataLoader worker warns on its own).
        self._warned: set[Path] = set()

    @property
    def has_labels(self) -> bool:
        return bool(self.files) and self.files[0][1] is not None

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, samples={len(self)}, size={self.size})"

    def _index(self, index: int) -> int:
        i = operator.index(index)
        n = len(self.files)
        if not -n <= i < n:
            raise IndexError(f"index {index} is out of range for {type(self).__name__} with {n} samples")
        return i % n

    def size_mismatches(self) -> list[tuple[Path, tuple[int, int], tuple[int, int]]]:
        """List ``(image_path, image (w, h), label (w, h))`` for every pair whose sizes differ.

        Reads only the PNG headers, so it is fast even over the full GTA5.
        """
        out = []
        for image_path, label_path in self.files:
            if label_path is None:
                continue
            image_size, label_size = _image_size(image_path), _image_size(label_path)
            if image_size != label_size:
                out.append((image_path, image_size, label_size))
        return out

    def _load(self, i: int) -> tuple[Image.Image, np.ndarray | None]:
        """Decode pair ``i``: RGB image and uint8 trainIds (None without labels) at their native sizes."""
        image_path, label_path = self.files[i]
        image = _read_image(image_path)
        if label_path is None:
            return image, None
        train_ids = _to_train_ids(_read_label(label_path), self._label_kinds[i], label_path)
        label_size = (train_ids.shape[1], train_ids.shape[0])
        if label_size != image.size and image_path not in self._warned:
            self._warned.add(image_path)
            warnings.warn(
                f"{self.name} pair {image_path} / {label_path}: image is {image.size[0]}x{image.size[1]} "
                f"but label is {label_size[0]}x{label_size[1]}; resizing the label to the image (nearest). "
                "size_mismatches() lists every such pair",
                SizeMismatchWarning,
                stacklevel=3,
            )
        return image, train_ids

    @staticmethod
    def _resize_label(train_ids: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        if (train_ids.shape[1], train_ids.shape[0]) == size:
            return train_ids
        # NEAREST only: interpolating would invent ids that are not in the map.
        return np.array(Image.fromarray(train_ids).resize(size, Image.Resampling.NEAREST))

    def load_raw(self, index: int) -> tuple[Image.Image, np.ndarray | None]:
        """Pair ``index`` for display: the RGB image at native size and its uint8 trainId map (255 = ignore).

        Ignores ``size``, ``transform`` and ``normalize``; a label of another size is resized to the image.
        """
        image, train_ids = self._load(self._index(index))
        return image, None if train_ids is None else self._resize_label(train_ids, image.size)

    def _resized(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Pair ``i`` decoded, checked and resized: uint8 H x W x 3 image, uint8 label (read from the cache
        when there is one, and written to it the first time)."""
        image_path, label_path = self.files[i]
        key = None
        if self.cache is not None:
            key = self.cache.key(image_path, label_path, self._label_kinds[i], self.size, self.label_size)
            cached = self.cache.get(key)
            if cached is not None:
                return cached
        image, train_ids = self._load(i)
        target = self.size or image.size
        if image.size != target:
            # Pillow's BILINEAR widens its filter when downscaling, i.e. it is antialiased.
            image = image.resize(target, Image.Resampling.BILINEAR)
        pixels = np.asarray(image)
        if train_ids is not None:
            label_target = (
                image.size
                if self.label_size is None
                else (
                    (train_ids.shape[1], train_ids.shape[0]) if self.label_size == NATIVE else self.label_size
                )
            )
            train_ids = self._resize_label(train_ids, label_target)
        if key is not None:
            self.cache.put(key, pixels, train_ids)
        return pixels, train_ids

    def _load_usable(self, i: int) -> tuple[np.ndarray, np.ndarray | None] | None:
        """Pair ``i``; with ``on_bad_sample="skip"``, None for a pair that cannot be used (warning once per
        file). Nothing takes its place, so no other sample is seen twice in an epoch."""
        if self.on_bad_sample == "stop":
            return self._resized(i)
        try:
            return self._resized(i)
        except DatasetError as err:
            image_path = self.files[i][0]
            if image_path not in self.skipped:
                self.skipped[image_path] = str(err)
                warnings.warn(f"{self.name}: skipping a bad sample: {err}", BadSampleWarning, stacklevel=3)
            return None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...] | None:
        loaded = self._load_usable(self._index(index))
        if loaded is None:
            return None  # skipped (on_bad_sample="skip"): collate_usable leaves it out of the batch
        pixels, train_ids = loaded
        img = (
            torch.from_numpy(np.array(pixels)).permute(2, 0, 1).contiguous()
        )  # a copy: cache entries are read-only
        mask = None if train_ids is None else torch.from_numpy(np.array(train_ids))
        if self.transform is not None:
            if mask is None:
                raise ValueError(f"{self.name}: a joint image + mask transform needs labels")
            out = self.transform(tv_tensors.Image(img), tv_tensors.Mask(mask))
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise TypeError(f"transform must return an (image, mask) pair, got {type(out).__name__}")
            img, mask = out

        x = torch.as_tensor(img).as_subclass(torch.Tensor)
        y = None if mask is None else torch.as_tensor(mask).as_subclass(torch.Tensor)
        if y is not None and y.ndim == 3 and y.shape[0] == 1:
            y = y[0]
        if self.as_uint8:
            # What training loaders hand over: the device converts, normalises and augments the whole batch.
            if x.dtype != torch.uint8:
                x = F.to_dtype(x, torch.uint8, scale=True)
            x = x.contiguous()
            return (x,) if y is None else (x, y.to(torch.uint8).contiguous())
        if x.dtype == torch.uint8:
            x = x.to(torch.float32) / 255
        else:
            # A transform may already have converted to float (taken to be in [0, 1]) or another dtype.
            x = F.to_dtype(x, torch.float32, scale=True)
        if self.normalize:
            x = normalize(x, self.mean, self.std)
        return (x.contiguous(),) if y is None else (x.contiguous(), y.to(torch.int64).contiguous())


def collate_usable(samples: list[tuple[torch.Tensor, ...] | None]) -> tuple[torch.Tensor, ...] | None:
    """``default_collate`` of the samples that are not None (the ones ``on_bad_sample="skip"`` left out); None
    when there is none. A batch with a skipped sample is one sample smaller; nothing is duplicated."""
    from torch.utils.data import default_collate

    usable = [sample for sample in samples if sample is not None]
    return default_collate(usable) if usable else None


class GTA5(_SegmentationDataset):
    """GTA5 (Richter et al. 2016): ``root/images/NNNNN.png`` + ``root/labels/NNNNN.png`` of label ids 0-34.

    Args:
        root: folder holding ``images/`` and ``labels/``.
        size: output (width, height), e.g. :data:`GTA5_SIZE`; ``None`` keeps the native 1914 x 1052.
        transform: joint ``transform(Image uint8 3xHxW, Mask uint8 HxW) -> (image, mask)``, applied after
            resizing and before normalisation (training augments on the device instead:
            :mod:`segdemo.augment`).
        normalize: ``(x/255 - mean) / std`` if True, else float in [0, 1].
        mean, std: per-channel statistics for ``normalize``.
        as_uint8: items as uint8 3 x H x W image and uint8 H x W label (``normalize`` is then not applied):
            what training loaders hand over, a quarter of the bytes of float32 and no float work in the
            workers.
        label_size: (width, height) of the label if other than ``size``, or :data:`NATIVE` to keep the label
            at its native resolution (evaluation at Cityscapes' full 2048 x 1024, predictions upsampled).
        cache_dir: keep decoded, checked, resized samples there (:mod:`segdemo.sample_cache`) and read them
            from there on later epochs.
        on_bad_sample: "stop" raises :class:`DatasetError` naming the file of a pair that cannot be used
            (truncated or corrupt image or label, label values outside the convention); "skip" warns
            (:class:`BadSampleWarning`, naming the file, once per file) and returns None, which
            :func:`collate_usable` leaves out of its batch. Never a silently wrong label.

    Some real GTA5 pairs have an image and a label of different sizes: :meth:`size_mismatches`
    lists them, and loading one resizes the label to the image (nearest) with a
    :class:`SizeMismatchWarning` once per file.
    """

    name = "GTA5"

    def __init__(
        self,
        root: str | os.PathLike[str],
        size: Sequence[int] | None = None,
        transform: Transform | None = None,
        normalize: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        on_bad_sample: str = "stop",
        as_uint8: bool = False,
        label_size: Sequence[int] | str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(
            root, size, transform, normalize, mean, std, on_bad_sample, as_uint8, label_size, cache_dir
        )
        self.files = _find_gta5(self.root)
        self._label_kinds = [_LABEL_IDS] * len(self.files)


class Cityscapes(_SegmentationDataset):
    """Cityscapes (Cordts et al. 2016) fine annotations, official layout or a flat reduced copy.

    See the module docstring for the accepted layouts and how label values are interpreted.

    Args:
        root: dataset folder (holding ``leftImg8bit/`` + ``gtFine/``, or ``images/`` + ``labels/``).
        split: "train", "val" or "test".
        size: output (width, height), e.g. :data:`CITYSCAPES_SIZE`; ``None`` keeps the native 2048 x 1024.
        transform, normalize, mean, std, on_bad_sample, as_uint8, label_size, cache_dir: as for :class:`GTA5`.
        labels: False for images alone (the unlabeled target images of adaptation): labels are neither needed
            nor read, and an item is a 1-tuple ``(image,)``.

    ``layout`` is "official" or "flat", whichever was found.
    """

    name = "Cityscapes"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "val",
        size: Sequence[int] | None = None,
        transform: Transform | None = None,
        normalize: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        on_bad_sample: str = "stop",
        as_uint8: bool = False,
        label_size: Sequence[int] | str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        labels: bool = True,
    ) -> None:
        super().__init__(
            root, size, transform, normalize, mean, std, on_bad_sample, as_uint8, label_size, cache_dir
        )
        self.split = split
        pairs, self.layout = _find_cityscapes(self.root, split, with_labels=labels)
        self.files = [(image, label) for image, label, _ in pairs]
        self._label_kinds = [kind for _, _, kind in pairs]
