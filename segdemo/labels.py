"""The 19 Cityscapes training classes, their colours and the label-id -> trainId table.

Everything here is derived from the official definitions shipped by ``cityscapesscripts``
(``cityscapesscripts.helpers.labels``), so ids, names and colours never drift from the benchmark.
"""

from __future__ import annotations

import numpy as np
from cityscapesscripts.helpers.labels import labels as _CITYSCAPES_LABELS

IGNORE_INDEX = 255
NUM_CLASSES = 19

_TRAIN_LABELS = sorted(
    (lab for lab in _CITYSCAPES_LABELS if 0 <= lab.trainId < IGNORE_INDEX), key=lambda lab: lab.trainId
)
assert [lab.trainId for lab in _TRAIN_LABELS] == list(range(NUM_CLASSES))

CLASS_NAMES: tuple[str, ...] = tuple(lab.name for lab in _TRAIN_LABELS)
"""Names of the 19 training classes, indexed by trainId."""

# The trainIds by name, for code that draws or counts particular classes.
(
    ROAD,
    SIDEWALK,
    BUILDING,
    WALL,
    FENCE,
    POLE,
    TRAFFIC_LIGHT,
    TRAFFIC_SIGN,
    VEGETATION,
    TERRAIN,
    SKY,
    PERSON,
    RIDER,
    CAR,
    TRUCK,
    BUS,
    TRAIN,
    MOTORCYCLE,
    BICYCLE,
) = range(NUM_CLASSES)
assert CLASS_NAMES[TRAFFIC_SIGN] == "traffic sign" and CLASS_NAMES[BICYCLE] == "bicycle"

PALETTE: np.ndarray = np.array([lab.color for lab in _TRAIN_LABELS], dtype=np.uint8)
"""19 x 3 uint8 RGB colours, indexed by trainId."""
PALETTE.setflags(write=False)

TRAIN_ID_TO_LABEL_ID: np.ndarray = np.array([lab.id for lab in _TRAIN_LABELS], dtype=np.uint8)
"""The Cityscapes label id of each trainId (used to write label-id maps)."""
TRAIN_ID_TO_LABEL_ID.setflags(write=False)

MAX_LABEL_ID = max(lab.id for lab in _CITYSCAPES_LABELS)
"""Largest official label id (33). GTA5 label maps also use 34, which maps to ignore."""

# Lookup table over every uint8 value: official ids map to their trainId, anything else to ignore.
_ID_TO_TRAIN_ID = np.full(256, IGNORE_INDEX, dtype=np.uint8)
for _lab in _CITYSCAPES_LABELS:
    if 0 <= _lab.id <= 255:
        _ID_TO_TRAIN_ID[_lab.id] = _lab.trainId if 0 <= _lab.trainId < IGNORE_INDEX else IGNORE_INDEX
_ID_TO_TRAIN_ID.setflags(write=False)


def id_to_train_id(ids: np.ndarray) -> np.ndarray:
    """Map a Cityscapes label-id map (any integer dtype) to trainIds (uint8, ignore = 255).

    Ids that are not one of the 19 training classes (void classes, GTA5's 34, anything
    outside 0-255) all become 255.
    """
    ids = np.asarray(ids)
    out = np.full(ids.shape, IGNORE_INDEX, dtype=np.uint8)
    in_range = (ids >= 0) & (ids <= 255)
    out[in_range] = _ID_TO_TRAIN_ID[ids[in_range].astype(np.intp)]
    return out


def colorize(train_ids: np.ndarray) -> np.ndarray:
    """Turn an H x W trainId map into an H x W x 3 uint8 image in the official palette.

    Ignore (255) and any value outside 0-18 are drawn black.
    """
    train_ids = np.asarray(train_ids)
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:NUM_CLASSES] = PALETTE
    clipped = np.where((train_ids >= 0) & (train_ids < 256), train_ids, IGNORE_INDEX).astype(np.intp)
    return lut[clipped]


# ---------------------------------------------------------------------------------------------
# The one decision: does a map of ids hold trainIds or label ids?
# ---------------------------------------------------------------------------------------------

TRAIN_IDS = "trainIds"
LABEL_IDS = "label ids"
MAX_ANY_LABEL_ID = 34
"""Largest label id a label-id map may hold: Cityscapes stops at 33, GTA5 also uses 34 (licence plate,
ignored)."""


class LabelValuesError(ValueError):
    """A map whose values cannot be read as asked. ``reason`` says why, ``values`` lists the culprits:

    * "ambiguous": every value is both a trainId and a label id (all 0-18, no 255): it must be said which;
    * "neither": some values are neither (``values``);
    * "mixed": some values are only trainIds (``values``), others only label ids (``others``);
    * "not trainIds" / "not label ids": read as asked, ``values`` do not fit.
    """

    def __init__(self, reason: str, values: np.ndarray, others: np.ndarray | None = None) -> None:
        self.reason, self.values = reason, values
        self.others = others if others is not None else values[:0]
        super().__init__(f"{reason}: {listed_values(values)}")


def listed_values(values: np.ndarray) -> str:
    """At most five values, for a message."""
    return ", ".join(str(int(v)) for v in values[:5]) + (", ..." if len(values) > 5 else "")


def present_values(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values of a label map (bincount is much faster than np.unique for uint8)."""
    if values.dtype == np.uint8:
        return np.flatnonzero(np.bincount(values.ravel(), minlength=256))
    return np.unique(values)


def ids_to_train_ids(
    values: np.ndarray, encoding: str = "auto", declared: str | None = None
) -> tuple[np.ndarray, str]:
    """``(uint8 trainIds, the encoding used)`` of a map of class ids; the one place that decides how one is
    read.

    ``encoding`` is :data:`TRAIN_IDS`, :data:`LABEL_IDS` (0-34, mapped with :func:`id_to_train_id`) or "auto",
    which decides from the whole set of values: trainIds if the file declares it (``declared``, e.g. a
    ``*_labelTrainIds.png`` name or this app's PNG marker) and they fit; otherwise trainIds if every value is
    one and some value (255, ignore) is not a label id, label ids if every value is one and some is not a
    trainId. A map that fits both (all 0-18, no 255) is ambiguous; values that fit neither are never remapped:
    both raise :class:`LabelValuesError`.
    """
    present = present_values(values).astype(np.int64)
    is_train_id = (present >= 0) & ((present < NUM_CLASSES) | (present == IGNORE_INDEX))
    is_label_id = (present >= 0) & (present <= MAX_ANY_LABEL_ID)
    if encoding == "auto":
        if declared in (TRAIN_IDS, LABEL_IDS):
            encoding = declared
        elif is_train_id.all() and is_label_id.all():
            raise LabelValuesError("ambiguous", present)
        elif is_train_id.all():
            encoding = TRAIN_IDS
        elif is_label_id.all():
            encoding = LABEL_IDS
        elif not (is_train_id | is_label_id).all():
            raise LabelValuesError("neither", present[~(is_train_id | is_label_id)])
        else:
            raise LabelValuesError("mixed", present[~is_label_id], present[~is_train_id])
    if encoding == TRAIN_IDS:
        if not is_train_id.all():
            raise LabelValuesError("not trainIds", present[~is_train_id])
        return values.astype(np.uint8, copy=False), TRAIN_IDS
    if encoding == LABEL_IDS:
        if not is_label_id.all():
            raise LabelValuesError("not label ids", present[~is_label_id])
        return id_to_train_id(values), LABEL_IDS
    raise ValueError(f"encoding must be {TRAIN_IDS!r}, {LABEL_IDS!r} or 'auto', got {encoding!r}")
