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
