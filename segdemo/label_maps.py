"""Label maps users bring (an uploaded ground truth, a folder of labels): any lossless picture of class ids
or of Cityscapes colours, decoded to trainIds with the one rule of :func:`segdemo.labels.ids_to_train_ids`."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from segdemo.images import ImageError, check_dimensions
from segdemo.labels import (
    IGNORE_INDEX,
    MAX_ANY_LABEL_ID,
    NUM_CLASSES,
    PALETTE,
    LabelValuesError,
    ids_to_train_ids,
    listed_values,
    present_values,
)
from segdemo.viz import PNG_LABELS_KEY

LABEL_ENCODINGS = ("auto", "trainIds", "label ids", "colours")
"""How :func:`load_label` reads a label map's values; "auto" decides from the whole set of values."""
LABEL_FORMATS = ("PNG", "TIFF", "BMP", "PPM")
"""Lossless formats a label map may come in (JPEG and WebP would change the ids at class borders)."""


class AmbiguousLabelError(ImageError):
    """Every value of a label map is both a valid trainId and a valid label id: it must be said which."""


def _label_values(picture: Any) -> tuple[np.ndarray, str]:
    """``(values, "ids" | "colours")`` of a decoded label picture, for each mode PIL gives; ImageError if the
    mode
    cannot hold exact class ids or colours."""
    mode = picture.mode
    if mode in ("L", "P", "I", "I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(picture), "ids"
    if mode in ("LA", "La", "PA"):  # ids with transparency: the alpha band says nothing about the class
        return np.asarray(picture.getchannel(0)), "ids"
    if mode in ("RGB", "RGBA", "RGBa", "RGBX"):
        return np.asarray(picture.convert("RGB")), "colours"
    if mode == "F":
        values = np.asarray(picture)
        if np.all(np.isfinite(values)) and np.all(values == np.round(values)):
            return values.astype(np.int64), "ids"
        raise ImageError("the label map holds fractional values (a float image), not class ids")
    if mode == "1":
        raise ImageError(
            "the label map is a black-and-white (1-bit) image: it holds no class ids; save the ids as a "
            "grey or palette PNG"
        )
    raise ImageError(
        f"the label map is a {mode} image, which cannot hold exact class ids or colours; save it as a PNG of "
        "ids (grey or palette) or of Cityscapes colours (RGB)"
    )


def _read_ids(values: np.ndarray, encoding: str, declared: str | None) -> tuple[np.ndarray, str]:
    """trainIds from a map of ids, read as ``encoding`` (see :data:`LABEL_ENCODINGS`); never a silent
    remap."""
    if encoding == "colours":
        raise ImageError("the label map holds ids (a grey or palette image), not colours")
    try:
        return ids_to_train_ids(values, encoding, declared)
    except LabelValuesError as exc:
        error = AmbiguousLabelError if exc.reason == "ambiguous" else ImageError
        raise error(
            _LABEL_PROBLEMS[exc.reason].format(
                values=listed_values(exc.values),
                others=listed_values(exc.others),
                present=listed_values(present_values(values)),
                train=f"0-{NUM_CLASSES - 1}, {IGNORE_INDEX}",
                ids=f"0-{MAX_ANY_LABEL_ID}",
            )
        ) from None


_LABEL_PROBLEMS = {
    "ambiguous": (
        "every value of the label map ({present}) is both a trainId and a Cityscapes label id, so it could "
        "mean two different sets of classes: choose how to read it"
    ),
    "neither": (
        "the label map holds {values}: neither trainIds ({train}) nor label ids ({ids}); no class is guessed"
    ),
    "mixed": (
        "the label map mixes the two conventions ({values} only as trainIds, {others} only as label ids); "
        "no class is guessed"
    ),
    "not trainIds": "read as trainIds, the label map holds {values}, which are none ({train})",
    "not label ids": "read as label ids, the label map holds {values}, which are none ({ids})",
}


class DecodedLabel(NamedTuple):
    """A label map as decoded, before its values are read as classes."""

    values: np.ndarray
    """H x W ids, or H x W x 3 colours."""
    kind: str
    """"ids" or "colours"."""
    declared: str | None
    """What the file says its ids are (this app's masks say "trainIds"), or None."""


def decode_label(source: Any) -> DecodedLabel:
    """Decode a label file (bytes, a path or a file-like upload) of any mode PIL reads; :class:`ImageError`
    with one sentence when it cannot hold exact class ids or colours."""
    data = source.getvalue() if hasattr(source, "getvalue") else source
    if isinstance(data, (str, os.PathLike)):
        data = Path(data).read_bytes()
    if not data:
        raise ImageError("the label file is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(bytes(data)), formats=list(LABEL_FORMATS)) as picture:
            check_dimensions(*picture.size)
            picture.load()
            declared = picture.info.get(PNG_LABELS_KEY)
            values, kind = _label_values(picture)
    except UnidentifiedImageError as exc:
        raise ImageError(
            "a label map must be a lossless image (PNG, TIFF, BMP): JPEG or WebP would change the class ids "
            "at every border"
        ) from exc
    except ImageError:
        raise
    except Exception as exc:  # truncated or damaged file
        raise ImageError(f"the label file could not be decoded ({str(exc)[:120]})") from exc
    return DecodedLabel(values, kind, declared)


def _colours_to_train_ids(values: np.ndarray) -> np.ndarray:
    """Every colour looked up in the palette; colours of no training class are ignore."""
    codes = (values[..., 0].astype(np.int64) << 16) | (values[..., 1].astype(np.int64) << 8) | values[..., 2]
    train_ids = np.full(codes.shape, IGNORE_INDEX, np.uint8)
    for train_id, (r, g, b) in enumerate(PALETTE):
        train_ids[codes == ((int(r) << 16) | (int(g) << 8) | int(b))] = train_id
    return train_ids


def read_label(decoded: DecodedLabel, encoding: str = "auto") -> tuple[np.ndarray, str]:
    """``(uint8 trainIds, the encoding used)`` of a decoded label map, read as ``encoding``."""
    if encoding not in LABEL_ENCODINGS:
        raise ValueError(f"encoding must be one of {LABEL_ENCODINGS}, not {encoding!r}")
    if decoded.kind == "colours":
        if encoding not in ("auto", "colours"):
            raise ImageError(f"the label map is a colour picture; it cannot be read as {encoding}")
        return _colours_to_train_ids(decoded.values), "colours"
    return _read_ids(decoded.values, encoding, decoded.declared)


def set_encoding(decoded: Iterable[DecodedLabel]) -> str:
    """The one encoding a whole set of label maps is read with: colours if they are colour pictures, else
    the reading of :func:`segdemo.labels.ids_to_train_ids` for the values of all of them together (a set is
    ambiguous only when every value of every map fits both conventions). :class:`ImageError` when the set
    mixes colour pictures and id maps, :class:`AmbiguousLabelError` when it must be said. ``decoded`` is
    consumed one map at a time (a generator keeps one in memory)."""
    kinds: set[str] = set()
    declared: set[str | None] = set()
    present = np.zeros(0, np.int64)
    for label in decoded:
        kinds.add(label.kind)
        declared.add(label.declared)
        if label.kind == "ids":
            present = np.union1d(present, present_values(label.values).astype(np.int64))
    if len(kinds) > 1:
        raise ImageError("the label maps mix colour pictures and maps of ids; use one kind for the whole set")
    if kinds == {"colours"}:
        return "colours"
    return _read_ids(present, "auto", declared.pop() if len(declared) == 1 else None)[1]


def load_label(
    source: Any, size: tuple[int, int] | None = None, encoding: str = "auto"
) -> tuple[np.ndarray, str]:
    """Decode an uploaded label map into trainIds; returns ``(H x W uint8 trainIds, encoding used)``.

    Encodings (:data:`LABEL_ENCODINGS`): ``"trainIds"`` (values 0-18 and 255, e.g. the app's "mask PNG"
    download), ``"label ids"`` (Cityscapes ``*_labelIds.png`` or GTA5 palette labels, 0-34, mapped with
    :func:`segdemo.labels.id_to_train_id`) and ``"colours"`` (an RGB picture in the Cityscapes palette; other
    colours become ignore). ``"auto"`` decides from the whole set of values: trainIds if they all are (or the
    file is one of this app's masks, which say so), label ids if they all are, and
    :class:`AmbiguousLabelError` when every value is both (no 255, all of them 0-18), so that the user says
    which. Values that fit neither are refused, never remapped. Any mode PIL decodes (grey, palette, 16-bit,
    with alpha, RGB, ...) works or gets one sentence. ``size`` = (height, width) the label must have.
    Problems raise :class:`segdemo.images.ImageError`.
    """
    if encoding not in LABEL_ENCODINGS:  # before decoding: a bad argument costs nothing
        raise ValueError(f"encoding must be one of {LABEL_ENCODINGS}, not {encoding!r}")
    train_ids, used = read_label(decode_label(source), encoding)
    if size is not None and train_ids.shape != tuple(size):
        raise ImageError(
            f"the label is {train_ids.shape[1]} x {train_ids.shape[0]} pixels but the image is {size[1]} x "
            f"{size[0]}; they must match"
        )
    return train_ids, used
