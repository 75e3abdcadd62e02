"""Procedural two-domain street scenes: the project's embedded stand-in for GTA5 -> Cityscapes.

Every image is a small 3-D street (pinhole camera over a flat ground plane) rendered with
numpy + OpenCV polygons, painter's algorithm far to near. The label map is drawn with the very
same polygons, so labels are exact; all 19 Cityscapes training classes occur and ignore (255)
is never produced.

Two domains differ the way the real pair does:

* ``"source"`` (GTA5-like, written in the GTA5 layout): saturated, warm, bright, hard sunlight
  with strong face shading and cast shadows, crisp aliased edges, clean textures, no noise.
  Wide multi-lane roads seen from a high, wide-angle camera; parked cars, wide sidewalk and
  tree rows mostly on the right; many cars, trucks and buses, few pedestrians; riders mostly on
  motorcycles; palm trees and glass office towers.
* ``"target"`` (Cityscapes-like, written in the Cityscapes layout): cooler, greyer, darker and
  flatter (overcast light, per-image white balance, lifted blacks, vignetting), slight blur,
  sensor noise and finer surface textures. A lower, narrower-angle camera, narrower roads and
  wider sidewalks on both sides with the parking and bicycles biased to the left (and many
  one-way streets driven in the left lane), many more pedestrians and cyclists, few trucks, more
  trams. Shape and texture variants the source never
  shows: hatchbacks and vans, articulated buses, children and long coats, conifers, brick
  facades, pitched roofs, shop awnings, lattice fences, rectangular signs, on-sidewalk cycle
  paths.

Speed (one core, 320x160, measured on the development machine)::

    OMP_NUM_THREADS=1 python -c "import time, numpy as np; from segdemo.synthetic import render_scene; \
t = time.perf_counter(); [render_scene(np.random.default_rng(i), d) for i in range(100) \
for d in ('source', 'target')]; print(200 * 60 / (time.perf_counter() - t), 'images/minute')"

gave about 2000 images/minute (rendering only, both domains alternating). Writing PNGs as well,
``OMP_NUM_THREADS=1 python -m segdemo.synthetic --out /tmp/gen --n-source 100 --n-target-train 80
--n-target-val 20`` took 7.9 s for the 200 images, about 1500 images/minute.

API: :func:`render_scene` (one image + trainIds), :func:`generate` (both data sets on disk),
:func:`scene_rng` (the per-image generator ``generate`` uses), :func:`is_procedural` (is a data
root ours?). Command line::

    python -m segdemo.synthetic --out data/synthetic --seed 0 [--n-source N --n-target-train N
        --n-target-val N --size 320x160 --progress]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from segdemo.labels import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES, TRAIN_ID_TO_LABEL_ID

DEFAULT_SIZE: tuple[int, int] = (320, 160)
"""(width, height) of generated images; width = 2 * height like Cityscapes."""

DOMAINS: tuple[str, ...] = ("source", "target")

MIN_SIZE = (32, 16)

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

CITIES: dict[str, tuple[str, ...]] = {"train": ("synthaven", "polyburg"), "val": ("procville",)}
"""Made-up city names per Cityscapes split; image i goes to city i % len(cities)."""

FRAME = 19  # Cityscapes annotates frame 19 of each 30-frame snippet

_README_MARKER = "segdemo procedural street scenes"

# ---------------------------------------------------------------------------------------------
# Domain styles
# ---------------------------------------------------------------------------------------------


def _hex(*codes: str) -> np.ndarray:
    """Colours given as '#rrggbb' strings -> N x 3 float32 in 0..1."""
    return np.array([[int(c[i : i + 2], 16) / 255.0 for i in (1, 3, 5)] for c in codes], np.float32)


# Colour *distributions* per material: a sample picks one base colour and jitters it. The lists
# deliberately overlap across classes (grey walls, grey buildings, grey cars, grey sidewalks; red
# cars, red buses, red trams, red clothes ...) so that shape and context have to be learned.
_SOURCE_PALETTE: dict[str, np.ndarray] = {
    "sky_top": _hex("#2f6fd8", "#3a7fe0", "#2a62c4"),
    "sky_low": _hex("#a6d2f7", "#bfe0fb", "#f2d9b0"),
    "cloud": _hex("#ffffff", "#f4f1ea"),
    "road": _hex("#5f5c5a", "#6b6660", "#545456", "#74706a"),
    "marking": _hex("#f2f0e6", "#f0c832"),
    "sidewalk": _hex("#b4aa9b", "#c8beae", "#b98a76", "#a9a39a"),
    "curb": _hex("#d2ccc0", "#bdb6aa"),
    "building": _hex("#d9be96", "#c8784f", "#e6e0d4", "#969499", "#a2b4c8", "#8c6446", "#dca096", "#e8c878"),
    "glass_facade": _hex("#4a8ccc", "#5aa0b4", "#3c6e9c"),
    "window": _hex("#3c6ea8", "#283c50", "#78aad2", "#5a82a0"),
    "roof": _hex("#7a4a3a", "#5c5c60"),
    "wall": _hex("#b9b4aa", "#a09687", "#c8aa82", "#828282", "#d2c3a5"),
    "fence": _hex("#5a5a5a", "#967850", "#e6e6e6", "#3c503c"),
    "pole": _hex("#6e6e73", "#465046", "#969696"),
    "light_box": _hex("#282828", "#3c4628", "#c8aa28"),
    "sign": _hex("#d22828", "#2c5ac8", "#f0c828", "#f5f5f5", "#28a046"),
    "vegetation": _hex("#3c8c32", "#5aa03c", "#287028", "#78963c"),
    "palm": _hex("#4c9a3a", "#6aa83c"),
    "trunk": _hex("#6e5032", "#8a6a46"),
    "terrain": _hex("#6ea03c", "#96aa50", "#a08c5a", "#82b446"),
    "skin": _hex("#f0c8a0", "#c89664", "#8c5a3c", "#e6b48c"),
    "hair": _hex("#281e14", "#5a3c1e", "#c8aa64", "#1e1e1e"),
    "clothes": _hex(
        "#d23232", "#2846b4", "#f0f0f0", "#1e1e23", "#e6b428", "#3c963c", "#f08228", "#8c8c96", "#a03ca0"
    ),
    "trousers": _hex("#2c3c6e", "#1e1e23", "#a08c6e", "#5a5a5a", "#d2d2d2"),
    "car": _hex("#c81e1e", "#1e3cb4", "#e6e6e6", "#1e1e23", "#aaafb4", "#e6be28", "#287840", "#f07820"),
    "truck": _hex("#f0f0f0", "#c82828", "#2846a0", "#8c8c8c", "#e6b428"),
    "bus": _hex("#f0f0f0", "#e6be28", "#c82828", "#2850b4", "#32a046"),
    "tram": _hex("#c82828", "#f0f0f0", "#e6c828", "#2850b4", "#969696"),
    "motorbike": _hex("#1e1e1e", "#c81e1e", "#1e46c8", "#b4b4be", "#f07814"),
    "bicycle": _hex("#1e1e1e", "#c81e1e", "#1e46c8", "#b4b4be", "#28963c"),
    "helmet": _hex("#1e1e1e", "#f0f0f0", "#c81e1e", "#1e46c8"),
    "glass": _hex("#1e2837", "#324b64", "#3c4650"),
}

_TARGET_PALETTE: dict[str, np.ndarray] = {
    "sky_top": _hex("#b4bec8", "#8ca5be", "#c8cdd2"),
    "sky_low": _hex("#d7dce1", "#e1e4e6", "#c3cdd7"),
    "cloud": _hex("#e6e8ea", "#aab0b8"),
    "road": _hex("#4e5256", "#5a5e62", "#46494c", "#63666a"),
    "marking": _hex("#d2d4d2", "#c8c8be"),
    "sidewalk": _hex("#8c8c8a", "#9b9690", "#7d7873", "#a0a09b", "#8a7c78"),
    "curb": _hex("#a5a5a0", "#969691"),
    "building": _hex("#a09b91", "#b4aa96", "#8c8782", "#c3bead", "#968c7d", "#aaa5a0", "#b9a58c", "#7d7873"),
    "brick": _hex("#8c4b3c", "#a05a46", "#784137"),
    "window": _hex("#28323c", "#3c4650", "#1e2328", "#505a64"),
    "roof": _hex("#5a3c32", "#46464b", "#6e4637"),
    "awning": _hex("#8c2828", "#285a3c", "#c8b48c", "#3c3c50"),
    "wall": _hex("#96938c", "#a59b8c", "#827d78", "#b4aa9b", "#6e6e6e"),
    "fence": _hex("#3c3c3c", "#6e5a41", "#969691", "#2d3c32"),
    "pole": _hex("#5a5a5f", "#3c413c", "#7d7d7d"),
    "light_box": _hex("#232323", "#2d322d", "#3c3c32"),
    "sign": _hex("#a52323", "#234b96", "#d2aa28", "#dcdcdc", "#237846"),
    "vegetation": _hex("#507846", "#466e3c", "#64783c", "#3c5f37"),
    "conifer": _hex("#2d4632", "#283c2d"),
    "trunk": _hex("#4b3c2d", "#5a4b3c"),
    "terrain": _hex("#6e7846", "#827d55", "#5f6e41", "#8c8264"),
    "skin": _hex("#dcb496", "#b48c6e", "#785037", "#c8a082"),
    "hair": _hex("#231e19", "#4b3723", "#a08c64", "#a0a0a0"),
    "clothes": _hex(
        "#1e1e23", "#3c3c46", "#6e2828", "#28375a", "#8c8273", "#c8c8c3", "#4b5a3c", "#a07837", "#5a5a64"
    ),
    "trousers": _hex("#232837", "#19191e", "#5a5046", "#46464b", "#8c8278"),
    "car": _hex("#aaaaaf", "#1e1e23", "#e1e1e1", "#3c4655", "#5a5f64", "#8c1e1e", "#283c64", "#c8c3b4"),
    "truck": _hex("#e1e1e1", "#8c8c8c", "#3c4664", "#a03228"),
    "bus": _hex("#e6e6e1", "#d2aa28", "#a03228", "#2d4b8c", "#3c7850"),
    "tram": _hex("#dcd2b9", "#a52d2d", "#e6e6e1", "#2d4b8c", "#c8aa28"),
    "motorbike": _hex("#1e1e1e", "#8c1e1e", "#283c78", "#a0a0a5"),
    "bicycle": _hex("#1e1e1e", "#8c1e1e", "#283c78", "#a0a0a5", "#3c643c", "#dcdcd7"),
    "helmet": _hex("#1e1e1e", "#e6e6e6", "#a01e1e"),
    "glass": _hex("#191e23", "#2d3741", "#283037"),
}


def _class_amp(values: dict[int, float], default: float) -> np.ndarray:
    amp = np.full(256, default, np.float32)
    for cls, value in values.items():
        amp[cls] = value
    return amp


@dataclass(frozen=True)
class _Style:
    """Everything that differs between the two domains (layout, frequencies, look)."""

    palette: dict[str, np.ndarray]
    horizon: tuple[float, float]  # horizon row as a fraction of the image height
    cam_height: tuple[float, float]  # metres above the road
    focal: tuple[float, float]  # focal length in image widths (larger = narrower field of view)
    principal_jitter: float  # horizontal shift of the vanishing point, in image widths
    lanes: tuple[int, int]
    one_way: float  # probability of a one-way street
    left_lane: float  # on a one-way street, probability that the camera drives in the left-most lane
    lane_width: tuple[float, float]
    sidewalk: tuple[tuple[float, float], tuple[float, float]]  # width range, (left, right)
    parking: tuple[float, float]  # probability of a parking lane, (left, right)
    parked_fill: float  # fraction of parking slots that hold a car
    tree_row: tuple[float, float]  # probability of a street tree row, (left, right)
    verge: float  # probability of a grass strip between curb and sidewalk, per side
    building_height: tuple[float, float]
    building_setback: tuple[float, float]
    yard: tuple[float, float, float, float]  # property line: P(wall), P(fence), P(hedge), P(nothing)
    counts: dict[str, float]  # Poisson means of object counts per image
    p_tram: float
    p_rider_bicycle: float  # the rest ride motorcycles
    people_side: float  # probability that a pedestrian is on the left sidewalk
    variants: frozenset[str]  # shape/texture variants this domain shows
    sun: tuple[float, float, float]  # (lit face, shaded face, cast shadow) brightness factors
    paint: tuple[float, float]  # freshness of the road markings, 1 = new
    texture: tuple[np.ndarray, np.ndarray, np.ndarray]  # coarse, medium, fine amplitude per class


_SOURCE = _Style(
    palette=_SOURCE_PALETTE,
    horizon=(0.40, 0.50),
    cam_height=(1.7, 2.3),
    focal=(0.72, 0.88),
    principal_jitter=0.05,
    lanes=(3, 5),
    one_way=0.1,
    left_lane=0.0,
    lane_width=(3.4, 3.9),
    sidewalk=((1.0, 2.5), (3.0, 5.0)),
    parking=(0.15, 0.8),
    parked_fill=0.7,
    tree_row=(0.2, 0.6),
    verge=0.35,
    building_height=(8.0, 45.0),
    building_setback=(0.5, 6.0),
    yard=(0.30, 0.25, 0.15, 0.30),
    counts={
        "car": 6.0,
        "truck": 1.6,
        "bus": 0.6,
        "person": 3.0,
        "rider": 0.9,
        "parked_bicycle": 0.4,
        "parked_motorbike": 0.7,
        "pole": 5.0,
        "sign": 2.0,
        "traffic_light": 1.5,
    },
    p_tram=0.25,
    p_rider_bicycle=0.3,
    people_side=0.25,
    variants=frozenset({"palm", "glass_tower", "sedan_only"}),
    sun=(1.18, 0.60, 0.55),
    paint=(0.95, 1.0),
    texture=(
        _class_amp({VEGETATION: 0.10, TERRAIN: 0.06, SKY: 0.0}, 0.03),
        _class_amp({VEGETATION: 0.08, TERRAIN: 0.04, ROAD: 0.015}, 0.0),
        _class_amp({}, 0.0),
    ),
)

_TARGET = _Style(
    palette=_TARGET_PALETTE,
    horizon=(0.34, 0.42),
    cam_height=(1.2, 1.5),
    focal=(0.9, 1.05),
    principal_jitter=0.04,
    lanes=(2, 3),
    one_way=0.6,
    left_lane=0.9,
    lane_width=(2.9, 3.3),
    sidewalk=((3.0, 6.0), (2.0, 4.0)),
    parking=(0.75, 0.35),
    parked_fill=0.65,
    tree_row=(0.7, 0.5),
    verge=0.45,
    building_height=(11.0, 22.0),
    building_setback=(0.0, 3.0),
    yard=(0.30, 0.30, 0.20, 0.20),
    counts={
        "car": 2.5,
        "truck": 0.3,
        "bus": 0.35,
        "person": 10.0,
        "rider": 2.5,
        "parked_bicycle": 3.5,
        "parked_motorbike": 0.4,
        "pole": 7.0,
        "sign": 3.0,
        "traffic_light": 1.5,
    },
    p_tram=0.45,
    p_rider_bicycle=0.85,
    people_side=0.6,
    variants=frozenset(
        {
            "hatchback",
            "van",
            "articulated",
            "child",
            "coat",
            "conifer",
            "brick",
            "pitched_roof",
            "awning",
            "lattice",
            "rect_sign",
            "cycle_path",
            "two_tone",
        }
    ),
    sun=(1.0, 0.84, 0.85),
    paint=(0.55, 1.0),
    texture=(
        _class_amp({VEGETATION: 0.10, TERRAIN: 0.08, SKY: 0.02, ROAD: 0.05, SIDEWALK: 0.06}, 0.05),
        _class_amp({VEGETATION: 0.12, TERRAIN: 0.08, ROAD: 0.03, SIDEWALK: 0.04, BUILDING: 0.03}, 0.02),
        _class_amp({VEGETATION: 0.14, TERRAIN: 0.12, ROAD: 0.06, SIDEWALK: 0.05, SKY: 0.01}, 0.03),
    ),
)

_STYLES: dict[str, _Style] = {"source": _SOURCE, "target": _TARGET}

# ---------------------------------------------------------------------------------------------
# Camera and canvas
# ---------------------------------------------------------------------------------------------

_SHIFT = 4  # cv2 sub-pixel bits: coordinates are passed as fixed point with 4 fractional bits
_ONE = 1 << _SHIFT
_Z_MIN = 0.3  # metres; nothing is projected closer than this
_FAR = 260.0  # metres; the ground ends here, hidden behind the skyline


class _Camera:
    """Pinhole camera at (0, height, 0) looking along +Z; X to the right, Y up."""

    def __init__(self, focal: float, cx: float, horizon: float, height: float) -> None:
        self.f, self.cx, self.horizon, self.height = focal, cx, horizon, height
        self.pos = np.array([0.0, height, 0.0])

    def project(self, pts: np.ndarray) -> np.ndarray:
        pts = np.asarray(pts, np.float64)
        z = np.maximum(pts[..., 2], _Z_MIN)
        x = self.cx + self.f * pts[..., 0] / z
        y = self.horizon + self.f * (self.height - pts[..., 1]) / z
        return np.stack([x, y], axis=-1)

    def sees(self, normal: np.ndarray, point: np.ndarray) -> bool:
        """Back-face test: is the outward normal of a planar face at `point` towards the camera."""
        return float(np.dot(normal, self.pos - point)) > 0.0


class _Canvas:
    """An RGB float image and its label map, always drawn together."""

    def __init__(self, width: int, height: int) -> None:
        self.img = np.zeros((height, width, 3), np.float32)
        self.lab = np.full((height, width), IGNORE_INDEX, np.uint8)

    @staticmethod
    def _fixed(polys: list[np.ndarray]) -> list[np.ndarray]:
        return [np.round(np.asarray(p) * _ONE).astype(np.int32).reshape(-1, 2) for p in polys]

    def fill(self, polys: list[np.ndarray], color: np.ndarray, label: int | None) -> None:
        """Fill 2-D polygons (pixel coordinates); label None keeps the labels underneath."""
        pts = self._fixed(polys)
        cv2.fillPoly(self.img, pts, _cv_color(color), cv2.LINE_8, _SHIFT)
        if label is not None:
            cv2.fillPoly(self.lab, pts, int(label), cv2.LINE_8, _SHIFT)

    def lines(
        self,
        polylines: list[np.ndarray],
        color: np.ndarray,
        label: int | None,
        thickness: float,
        closed: bool = False,
    ) -> None:
        pts = self._fixed(polylines)
        t = max(1, round(thickness))
        cv2.polylines(self.img, pts, closed, _cv_color(color), t, cv2.LINE_8, _SHIFT)
        if label is not None:
            cv2.polylines(self.lab, pts, closed, int(label), t, cv2.LINE_8, _SHIFT)

    def blend(self, polys: list[np.ndarray], color: np.ndarray, alpha: float, label: int | None) -> None:
        """See-through fill (fence mesh, spoked wheels): the image mixes, the label is replaced."""
        pts = self._fixed(polys)
        allp = np.concatenate(pts) // _ONE
        h, w = self.lab.shape
        x0, y0 = max(int(allp[:, 0].min()) - 1, 0), max(int(allp[:, 1].min()) - 1, 0)
        x1, y1 = min(int(allp[:, 0].max()) + 2, w), min(int(allp[:, 1].max()) + 2, h)
        if x0 >= x1 or y0 >= y1:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        offset = np.array([x0 * _ONE, y0 * _ONE], np.int32)
        cv2.fillPoly(mask, [p - offset for p in pts], 1, cv2.LINE_8, _SHIFT)
        sel = mask.astype(bool)
        region = self.img[y0:y1, x0:x1]
        region[sel] = region[sel] * (1.0 - alpha) + np.asarray(color, np.float32) * alpha
        if label is not None:
            self.lab[y0:y1, x0:x1][sel] = label


def _cv_color(color: np.ndarray) -> tuple[float, float, float]:
    c = np.asarray(color, np.float64)
    return float(c[0]), float(c[1]), float(c[2])


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 14) -> np.ndarray:
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=-1)


_UNIT_CIRCLE = np.stack(
    [
        np.cos(np.linspace(0, 2 * np.pi, 16, endpoint=False)),
        np.sin(np.linspace(0, 2 * np.pi, 16, endpoint=False)),
    ],
    axis=-1,
)

# ---------------------------------------------------------------------------------------------
# The street plan
# ---------------------------------------------------------------------------------------------


@dataclass
class _Side:
    """One side of the street, all distances as absolute |X| in metres."""

    sign: int  # -1 left, +1 right
    road_edge: float  # the curb
    parking: bool  # a parking lane just inside the curb
    verge: float  # grass strip width between curb and sidewalk (0 = none)
    sidewalk: float
    cycle_path: bool
    building_line: float  # facades stand here (beyond the property line)
    yard_terrain: bool  # ground between property line and facades: grass instead of paving

    @property
    def walk_in(self) -> float:  # inner edge of the sidewalk
        return self.road_edge + self.verge

    @property
    def property_line(self) -> float:
        return self.road_edge + self.verge + self.sidewalk


_Draw = Callable[[], None]


class _Scene:
    """Plans and renders one street scene for one domain."""

    def __init__(self, rng: np.random.Generator, style: _Style, width: int, height: int) -> None:
        self.rng, self.st, self.w, self.h = rng, style, width, height
        self.has = style.variants.__contains__
        u = rng.uniform
        self.cam = _Camera(
            focal=u(*style.focal) * width,
            cx=width * (0.5 + u(-1, 1) * style.principal_jitter),
            horizon=u(*style.horizon) * height,
            height=u(*style.cam_height),
        )
        self.canvas = _Canvas(width, height)
        self.sun_x = 1.0 if rng.random() < 0.5 else -1.0  # the sun is on the right (+1) or left side
        lit, shade, _ = style.sun
        # brightness of a face by the direction its outward normal points
        self.light = {
            "front": (lit + shade) / 2 + 0.05,
            "top": lit + 0.05,
            "bottom": shade * 0.6,
            "right": lit if self.sun_x > 0 else shade,
            "left": shade if self.sun_x > 0 else lit,
        }
        self.items: list[tuple[float, int, _Draw]] = []  # street layer: (depth, tie-break, draw)
        self.background: list[tuple[float, int, _Draw]] = []  # roadside layer

    # --- small helpers ---------------------------------------------------------------------
    def color(self, material: str, spread: float = 0.06) -> np.ndarray:
        options = self.st.palette[material]
        base = options[self.rng.integers(len(options))]
        tint = 1.0 + self.rng.normal(0.0, spread, 3)
        gain = 1.0 + self.rng.normal(0.0, spread * 1.3)
        return np.clip(base * tint * gain, 0.0, 1.0).astype(np.float32)

    def poisson(self, key: str) -> int:
        return int(self.rng.poisson(self.st.counts[key]))

    def add(self, depth: float, draw: _Draw, background: bool = False) -> None:
        layer = self.background if background else self.items
        layer.append((depth, len(layer), draw))

    def face(
        self,
        pts3d: np.ndarray,
        normal: tuple[float, float, float],
        color: np.ndarray,
        label: int | None,
        shade: str | None = None,
    ) -> bool:
        """Draw a planar 3-D polygon if it faces the camera; shade by its orientation."""
        pts3d = np.asarray(pts3d, np.float64)
        if not self.cam.sees(np.asarray(normal, np.float64), pts3d[0]):
            return False
        factor = self.light[shade] if shade else 1.0
        self.canvas.fill([self.cam.project(pts3d)], np.clip(color * factor, 0, 1), label)
        return True

    def box(
        self,
        x0: float,
        x1: float,
        y0: float,
        y1: float,
        z0: float,
        z1: float,
        color: np.ndarray,
        label: int,
        top_color: np.ndarray | None = None,
    ) -> list[str]:
        """Axis-aligned box; returns the names of the faces that were drawn."""
        behind = z0 < _Z_MIN  # the box starts behind the camera: its front face is not in view
        z0 = max(z0, _Z_MIN)
        drawn = []
        faces = {
            "front": ([(x0, y0, z0), (x1, y0, z0), (x1, y1, z0), (x0, y1, z0)], (0, 0, -1)),
            "right": ([(x1, y0, z0), (x1, y0, z1), (x1, y1, z1), (x1, y1, z0)], (1, 0, 0)),
            "left": ([(x0, y0, z0), (x0, y0, z1), (x0, y1, z1), (x0, y1, z0)], (-1, 0, 0)),
            "top": ([(x0, y1, z0), (x1, y1, z0), (x1, y1, z1), (x0, y1, z1)], (0, 1, 0)),
            "bottom": ([(x0, y0, z0), (x1, y0, z0), (x1, y0, z1), (x0, y0, z1)], (0, -1, 0)),
        }
        if behind:
            del faces["front"]
        for name, (pts, normal) in faces.items():
            c = top_color if (name == "top" and top_color is not None) else color
            if self.face(np.array(pts), normal, c, label, shade=name):
                drawn.append(name)
        return drawn

    def billboard(self, x: float, z: float) -> tuple[np.ndarray, float]:
        """Screen position of a ground point and pixels per metre there (for flat upright objects)."""
        foot = self.cam.project(np.array([x, 0.0, z]))
        return foot, self.cam.f / max(z, _Z_MIN)

    # --- planning --------------------------------------------------------------------------
    def plan_street(self) -> None:
        st, rng, u = self.st, self.rng, self.rng.uniform
        n_lanes = int(rng.integers(st.lanes[0], st.lanes[1] + 1))
        lane_w = u(*st.lane_width)
        # right-hand traffic: the camera drives in the right half, oncoming traffic uses the left half;
        # on one-way streets every lane goes our way and the camera may be in the left-most lane,
        # which brings the left sidewalk close (lanes are counted from the right)
        one_way = rng.random() < st.one_way
        if one_way:
            cam_lane = n_lanes - 1 if rng.random() < st.left_lane else int(rng.integers(n_lanes))
            n_right = n_lanes
        else:
            cam_lane = int(rng.integers(0, max(1, n_lanes // 2)))
            n_right = max(1, n_lanes // 2)
        right_edge = lane_w * (cam_lane + 0.5)
        left_edge = lane_w * (n_lanes - cam_lane - 0.5)
        self.lane_w, self.n_lanes = lane_w, n_lanes
        self.lanes = [(right_edge - lane_w * (i + 0.5), +1 if i < n_right else -1) for i in range(n_lanes)]
        self.sides: dict[int, _Side] = {}
        for sign, lanes_edge in ((-1, left_edge), (+1, right_edge)):
            k = 0 if sign < 0 else 1
            parking = rng.random() < st.parking[k]
            edge = lanes_edge + (2.3 if parking else 0.0)  # a parking lane widens the road
            verge = u(0.8, 2.5) if rng.random() < st.verge else 0.0
            sidewalk = u(*st.sidewalk[k])
            cycle = self.has("cycle_path") and sidewalk > 3.2 and rng.random() < 0.5
            setback = u(*st.building_setback)
            line = edge + verge + sidewalk + setback
            self.sides[sign] = _Side(
                sign,
                edge,
                parking,
                verge,
                sidewalk,
                cycle,
                line,
                yard_terrain=setback > 1.5 and rng.random() < 0.5,
            )
        self.crosswalk = u(8.0, 45.0) if rng.random() < 0.45 else None
        self.tram_x: float | None = None
        if rng.random() < st.p_tram:
            # trams run on rails in the middle of the street (the lane left of the camera, or the centre)
            if n_lanes > 2 and not one_way:
                self.tram_x = self.lanes[min(n_lanes - 1, n_right)][0]  # first oncoming lane
            else:
                self.tram_x = (right_edge - left_edge) / 2  # middle of the street

    # --- background: sky, skyline, ground ------------------------------------------------
    def draw_sky(self) -> None:
        c, hz = self.canvas, self.cam.horizon
        top, low = self.color("sky_top", 0.04), self.color("sky_low", 0.03)
        rows = np.clip(np.arange(self.h, dtype=np.float32) / max(hz, 1.0), 0.0, 1.0) ** 1.4
        c.img[:] = (top[None, :] * (1 - rows[:, None]) + low[None, :] * rows[:, None])[:, None, :]
        c.lab[:] = SKY
        n_clouds = int(self.rng.integers(0, 6))
        for _ in range(n_clouds):
            cx, cy = self.rng.uniform(0, self.w), self.rng.uniform(-0.1, 0.8) * hz
            cloud = self.color("cloud", 0.02)
            alpha = self.rng.uniform(0.3, 0.8)
            for _ in range(int(self.rng.integers(3, 7))):
                r = self.rng.uniform(0.03, 0.09) * self.w
                blob = _ellipse(
                    cx + self.rng.uniform(-2, 2) * r,
                    cy + self.rng.uniform(-0.4, 0.4) * r,
                    r,
                    r * self.rng.uniform(0.4, 0.7),
                )
                c.blend([blob], cloud, alpha, None)

    def draw_skyline(self) -> None:
        """Distant buildings and trees at the end of the street, hazy (they cover the horizon)."""
        z, x = _FAR - 10.0, -700.0
        haze = self.st.palette["sky_low"][0]
        while x < 700.0:
            wdt = self.rng.uniform(15, 50)
            if self.rng.random() < 0.3:
                hgt = self.rng.uniform(6, 16)
                pts = np.array(
                    [
                        (x, 0, z),
                        (x + wdt, 0, z),
                        (x + wdt, hgt, z),
                        (x + wdt * 0.5, hgt * 1.3, z),
                        (x, hgt, z),
                    ]
                )
                color, label = self.color("vegetation") * 0.5 + haze * 0.5, VEGETATION
            else:
                hgt = self.rng.uniform(8, 45)
                pts = np.array([(x, 0, z), (x + wdt, 0, z), (x + wdt, hgt, z), (x, hgt, z)])
                color, label = self.color("building") * 0.55 + haze * 0.45, BUILDING
            self.canvas.fill([self.cam.project(pts)], color, label)
            x += wdt

    def ground_strip(
        self, x0: float, x1: float, color: np.ndarray, label: int, z0: float = _Z_MIN, z1: float = _FAR
    ) -> None:
        pts = np.array([(x0, 0, z0), (x1, 0, z0), (x1, 0, z1), (x0, 0, z1)])
        self.canvas.fill([self.cam.project(pts)], color, label)

    def ground_quads(
        self, quads: list[tuple[float, float, float, float]], color: np.ndarray, label: int | None
    ) -> None:
        """Many ground rectangles (x0, x1, z0, z1) in one call (lane dashes, zebra stripes)."""
        if not quads:
            return
        q = np.array(quads, np.float64)
        pts = np.stack(
            [
                np.stack([q[:, 0], np.zeros(len(q)), q[:, 2]], -1),
                np.stack([q[:, 1], np.zeros(len(q)), q[:, 2]], -1),
                np.stack([q[:, 1], np.zeros(len(q)), q[:, 3]], -1),
                np.stack([q[:, 0], np.zeros(len(q)), q[:, 3]], -1),
            ],
            axis=1,
        )
        self.canvas.fill(list(self.cam.project(pts)), color, label)

    def draw_ground(self) -> None:
        rng = self.rng
        road = self.color("road", 0.03)
        left, right = self.sides[-1], self.sides[+1]
        self.ground_strip(-left.road_edge, right.road_edge, road, ROAD)
        # asphalt patches: darker/lighter repairs so the road is not one flat colour
        patches = []
        for _ in range(int(rng.integers(0, 5))):
            x = rng.uniform(-left.road_edge, right.road_edge - 1)
            z = rng.uniform(3, 60)
            patches.append((x, x + rng.uniform(0.8, 4), z, z + rng.uniform(1, 10)))
        self.ground_quads(patches, road * rng.uniform(0.8, 1.15), None)
        for side in (left, right):
            s = side.sign
            sidewalk, curb = self.color("sidewalk", 0.04), self.color("curb", 0.03)
            yard_color = self.color("terrain") if side.yard_terrain else sidewalk * 0.95
            yard_label = TERRAIN if side.yard_terrain else SIDEWALK
            self.ground_strip(s * side.property_line, s * 400.0, yard_color, yard_label)
            self.ground_strip(s * side.walk_in, s * side.property_line, sidewalk, SIDEWALK)
            if side.cycle_path:  # red cycle path on the road half of the sidewalk (still sidewalk)
                a = side.walk_in + 0.4
                self.ground_strip(s * a, s * (a + 1.5), np.clip(sidewalk * (1.25, 0.8, 0.75), 0, 1), SIDEWALK)
            if side.verge > 0:
                self.ground_strip(s * side.road_edge, s * side.walk_in, self.color("terrain"), TERRAIN)
            self.ground_strip(s * side.road_edge, s * (side.road_edge + 0.25), curb, SIDEWALK)
            # paving joints: a few transverse lines on the sidewalk
            joints = [(side.walk_in, side.property_line, z, z + 0.06) for z in np.arange(2.0, 60.0, 2.5)]
            self.ground_quads(
                [(s * a, s * b, z0, z1) if s > 0 else (-b, -a, z0, z1) for a, b, z0, z1 in joints],
                sidewalk * 0.85,
                None,
            )
        self.draw_markings()
        if self.tram_x is not None:
            self.draw_rails(self.tram_x)
        self.cast_shadows()

    def draw_markings(self) -> None:
        rng = self.rng
        white = self.color("marking", 0.02)
        fade = rng.uniform(*self.st.paint)  # how fresh the road paint is (1 = new)
        road = self.st.palette["road"][0]
        white = white * fade + road * (1 - fade)
        quads = []
        period, dash = rng.uniform(8, 12), rng.uniform(2.5, 4.0)
        phase = rng.uniform(0, period)
        right_edge = self.sides[1].road_edge - (2.3 if self.sides[1].parking else 0)
        for i in range(1, self.n_lanes):
            x = right_edge - self.lane_w * i
            for z in np.arange(phase, 120.0, period):
                quads.append((x - 0.07, x + 0.07, z, z + dash))
        for sign, side in self.sides.items():  # solid edge lines
            x = side.road_edge - (2.3 if side.parking else 0.0) - 0.3
            quads.append(
                (sign * x - 0.07, sign * x + 0.07, _Z_MIN, _FAR)
                if sign > 0
                else (-x - 0.07, -x + 0.07, _Z_MIN, _FAR)
            )
        if self.crosswalk is not None:
            z = self.crosswalk
            xs = np.arange(-self.sides[-1].road_edge + 0.3, self.sides[1].road_edge - 0.5, 1.0)
            quads += [(x, x + 0.5, z, z + 3.0) for x in xs]
        self.ground_quads(quads, white, ROAD)

    def draw_rails(self, x: float) -> None:
        rails = []
        for dx in (-0.72, 0.72):
            rails.append((x + dx - 0.05, x + dx + 0.05, _Z_MIN, 200.0))
        self.ground_quads(rails, np.array([0.30, 0.29, 0.28], np.float32), ROAD)
        shine = [(a + 0.03, b - 0.03, z0, z1) for a, b, z0, z1 in rails]
        self.ground_quads(shine, np.array([0.62, 0.60, 0.58], np.float32), ROAD)

    def cast_shadows(self) -> None:
        """Hard shadows of the buildings on the sunny side fall across the street (ground only)."""
        strength = self.st.sun[2]
        side = self.sides[int(self.sun_x)]  # the buildings on the sun's side shade the street
        reach = self.rng.uniform(0.15, 0.6) * self.st.building_height[1] * 0.3
        x_far, x_near = side.building_line, side.building_line - reach
        pts = np.array([(x_far, 0, _Z_MIN), (x_near, 0, _Z_MIN), (x_near, 0, _FAR), (x_far, 0, _FAR)])
        pts[:, 0] *= side.sign
        mask = np.zeros(self.canvas.lab.shape, np.uint8)
        cv2.fillPoly(mask, self.canvas._fixed([self.cam.project(pts)]), 1, cv2.LINE_8, _SHIFT)
        self.canvas.img[mask.astype(bool)] *= strength

    # --- roadside: buildings, walls, fences, hedges -------------------------------------------
    def plan_roadside(self) -> None:
        for side in self.sides.values():
            z = self.rng.uniform(-8.0, 4.0)
            while z < _FAR - 20:
                length = self.rng.uniform(10, 35)
                if self.rng.random() < 0.18:  # a gap: side street or garden with trees behind
                    gap = self.rng.uniform(4, 14)
                    self.plan_gap(side, z, z + gap)
                    z += gap
                self.plan_building(side, z, z + length)
                z += length
            self.plan_property_line(side)
            self.plan_tree_row(side)

    def plan_building(self, side: _Side, z0: float, z1: float) -> None:
        h = self.rng.uniform(*self.st.building_height)
        if self.has("glass_tower") and self.rng.random() < 0.15:
            h = self.rng.uniform(40, 80)
            style = "glass"
        elif self.has("brick") and self.rng.random() < 0.35:
            style = "brick"
        else:
            style = "plain"
        line = side.building_line + self.rng.uniform(0, 0.8)
        self.add(z0, lambda: self.draw_building(side, line, z0, z1, h, style), background=True)

    def draw_building(self, side: _Side, line: float, z0: float, z1: float, h: float, style: str) -> None:
        s, rng = side.sign, self.rng
        depth = 14.0
        x0, x1 = (-line - depth, -line) if s < 0 else (line, line + depth)
        wall = self.color("brick" if style == "brick" else "glass_facade" if style == "glass" else "building")
        facade = "right" if s < 0 else "left"  # the face looking at the street
        pitched = self.has("pitched_roof") and style != "glass" and rng.random() < 0.5
        if pitched:
            self.draw_roof(side, line, depth, z0, z1, h)
        drawn = self.box(x0, x1, 0.0, h, z0, z1, wall, BUILDING)
        # a cornice band along the top and a darker plinth at street level
        band = wall * rng.uniform(0.75, 1.2)
        fx = line * s
        if facade in drawn:
            self.face(
                np.array([(fx, h - 0.6, z0), (fx, h - 0.6, z1), (fx, h, z1), (fx, h, z0)]),
                (-s, 0, 0),
                band,
                None,
                shade=facade,
            )
            self.face(
                np.array([(fx, 0, z0), (fx, 0, z1), (fx, 0.5, z1), (fx, 0.5, z0)]),
                (-s, 0, 0),
                wall * 0.7,
                None,
                shade=facade,
            )
            self.facade_details(side, fx, z0, z1, h, wall, style, facade)
        if "front" in drawn and z0 > 2:
            self.front_windows(x0, x1, z0, h, style)

    def draw_roof(self, side: _Side, line: float, depth: float, z0: float, z1: float, h: float) -> None:
        s = side.sign
        rise = self.rng.uniform(3.0, 5.5)
        eave, ridge = line * s, (line + depth / 2) * s
        roof = self.color("roof")
        slope = np.array([(eave, h, z0), (eave, h, z1), (ridge, h + rise, z1), (ridge, h + rise, z0)])
        normal = (-s * rise, depth / 2, 0.0)
        self.face(slope, normal, roof, BUILDING, shade="top")
        gable = np.array([(eave, h, z0), (ridge, h + rise, z0), ((line + depth) * s, h, z0)])
        self.face(gable, (0, 0, -1), roof * 0.8, BUILDING, shade="front")

    def facade_details(
        self, side: _Side, fx: float, z0: float, z1: float, h: float, wall: np.ndarray, style: str, shade: str
    ) -> None:
        rng, cam = self.rng, self.cam
        s = side.sign
        normal = (-s, 0.0, 0.0)
        if not cam.sees(np.array(normal), np.array([fx, 0.0, z0])):
            return
        z_cut = min(z1, cam.f)  # beyond this depth a ~1.2 m window is about a pixel: skip them
        zs0 = max(z0, 1.0)
        if zs0 >= z_cut:
            return
        light = self.light[shade]
        if style == "brick":  # mortar courses: the texture the source never shows
            ys = np.arange(0.35, h, 0.35)
            segs = [np.array([(fx, y, zs0), (fx, y, min(z1, 60.0))]) for y in ys]
            self.canvas.lines([cam.project(p) for p in segs], wall * 0.6 * light, None, 1)
        if style == "glass":
            # curtain wall: mullion grid on a reflective facade
            segs = [np.array([(fx, 0, z), (fx, h, z)]) for z in np.arange(zs0, z_cut, 1.6)]
            segs += [np.array([(fx, y, zs0), (fx, y, z_cut)]) for y in np.arange(3.0, h, 3.2)]
            self.canvas.lines([cam.project(p) for p in segs], wall * 0.55 * light, None, 1)
            return
        floor_h = rng.uniform(3.0, 3.6)
        win_w, win_h = rng.uniform(0.9, 1.5), rng.uniform(1.2, 1.8)
        spacing = rng.uniform(2.4, 3.6)
        glass = [self.color("window") * light * k for k in (0.8, 1.0, 1.3)]
        groups: list[list[np.ndarray]] = [[], [], []]
        zs = np.arange(zs0 + rng.uniform(0.5, spacing), z_cut - win_w, spacing)
        floors = np.arange(floor_h + 0.8, h - 1.2 - win_h, floor_h)
        if len(zs) and len(floors):
            zz, yy = np.meshgrid(zs, floors)
            zz, yy = zz.ravel(), yy.ravel()
            quads = np.stack(
                [
                    np.stack([np.full_like(zz, fx), yy, zz], -1),
                    np.stack([np.full_like(zz, fx), yy, zz + win_w], -1),
                    np.stack([np.full_like(zz, fx), yy + win_h, zz + win_w], -1),
                    np.stack([np.full_like(zz, fx), yy + win_h, zz], -1),
                ],
                axis=1,
            )
            proj = cam.project(quads)
            choice = rng.integers(0, 3, len(proj))
            for p, k in zip(proj, choice, strict=True):
                groups[k].append(p)
        for polys, c in zip(groups, glass, strict=True):
            if polys:
                self.canvas.fill(polys, c, None)
        # ground floor: shop windows and doors, with awnings in the target
        shops = []
        awnings = []
        z = zs0 + rng.uniform(0.5, 3.0)
        while z < min(z_cut, 80.0):
            w = rng.uniform(1.5, 4.0)
            shops.append(np.array([(fx, 0.6, z), (fx, 0.6, z + w), (fx, 2.6, z + w), (fx, 2.6, z)]))
            if self.has("awning") and rng.random() < 0.4:
                out = fx - s * 1.2
                awnings.append(
                    (
                        np.array([(fx, 3.1, z), (fx, 3.1, z + w), (out, 2.5, z + w), (out, 2.5, z)]),
                        np.array([(out, 2.5, z), (out, 2.5, z + w), (out, 2.2, z + w), (out, 2.2, z)]),
                    )
                )
            z += w + rng.uniform(1.0, 4.0)
        if shops:
            self.canvas.fill([cam.project(p) for p in shops], self.color("window") * light * 0.8, None)
        if awnings:
            color = self.color("awning")
            for slope, valance in awnings:
                self.canvas.fill([cam.project(slope)], color * self.light["top"], BUILDING)
                self.canvas.fill([cam.project(valance)], color * self.light["front"], BUILDING)

    def front_windows(self, x0: float, x1: float, z: float, h: float, style: str) -> None:
        """Windows on a building's end wall (seen where the row is interrupted)."""
        if style == "glass" or z > self.cam.f:
            return
        rows = np.arange(3.8, h - 2.0, 3.3)
        cols = np.arange(x0 + 1.5, x1 - 1.5, 3.0)
        if not (len(rows) and len(cols)):
            return
        xx, yy = np.meshgrid(cols, rows)
        xx, yy = xx.ravel(), yy.ravel()
        quads = np.stack(
            [
                np.stack([xx, yy, np.full_like(xx, z)], -1),
                np.stack([xx + 1.2, yy, np.full_like(xx, z)], -1),
                np.stack([xx + 1.2, yy + 1.5, np.full_like(xx, z)], -1),
                np.stack([xx, yy + 1.5, np.full_like(xx, z)], -1),
            ],
            axis=1,
        )
        self.canvas.fill(list(self.cam.project(quads)), self.color("window") * self.light["front"], None)

    def plan_gap(self, side: _Side, z0: float, z1: float) -> None:
        """Between buildings: a set-back building and/or trees, so the gap is not empty."""
        line = side.building_line + self.rng.uniform(8, 20)
        h = self.rng.uniform(*self.st.building_height)
        self.add(
            z0 + 0.01, lambda: self.draw_building(side, line, z0 - 5, z1 + 5, h, "plain"), background=True
        )
        for _ in range(int(self.rng.integers(1, 4))):
            z = self.rng.uniform(z0, z1)
            x = side.sign * (side.building_line + self.rng.uniform(1, 5))
            self.add(z0 + 0.02, self.tree_drawer(x, z), background=True)

    def plan_property_line(self, side: _Side) -> None:
        """Walls, fences and hedges between the sidewalk and the front yards."""
        rng = self.rng
        z = rng.uniform(0.0, 10.0)
        probs = np.array(self.st.yard)
        x = side.sign * (side.property_line + 0.15)
        while z < 120.0:
            length = rng.uniform(6, 30)
            kind = ("wall", "fence", "hedge", "none")[int(rng.choice(4, p=probs / probs.sum()))]
            if kind != "none":
                self.add(
                    1000.0 - abs(x) + z * 1e-3, self.structure_drawer(kind, x, z, z + length), background=True
                )
            z += length + rng.uniform(0, 8)
        # a railing between sidewalk and road now and then
        if rng.random() < 0.2:
            z0 = rng.uniform(2, 30)
            z1 = z0 + rng.uniform(5, 20)
            rx = side.sign * (side.road_edge + 0.3)
            h, color = rng.uniform(0.9, 1.3), self.color("fence")
            # short pieces, each depth-sorted on its own, so parked cars and people occlude it correctly
            for a in np.arange(z0, z1, 3.0):
                b = min(a + 3.0, z1)
                self.add(a, lambda a=a, b=b: self.draw_fence(rx, a, b, h, color, "bars"))

    def structure_drawer(self, kind: str, x: float, z0: float, z1: float) -> _Draw:
        rng = self.rng
        if kind == "wall":
            h, color = rng.uniform(0.7, 2.6), self.color("wall")
            return lambda: self.box(x - 0.15, x + 0.15, 0, h, z0, z1, color, WALL, top_color=color * 1.1)
        if kind == "hedge":
            h, color = rng.uniform(0.8, 2.0), self.color("vegetation")
            return lambda: self.draw_hedge(x, z0, z1, h, color)
        h = rng.uniform(1.0, 2.2)
        color = self.color("fence")
        variant = (
            "lattice"
            if self.has("lattice") and rng.random() < 0.5
            else ("mesh" if rng.random() < 0.5 else "bars")
        )
        return lambda: self.draw_fence(x, z0, z1, h, color, variant)

    def draw_hedge(self, x: float, z0: float, z1: float, h: float, color: np.ndarray) -> None:
        self.box(x - 0.4, x + 0.4, 0, h, z0, z1, color, VEGETATION, top_color=color * 1.15)
        # a bumpy top so hedges do not look like walls
        n = max(2, int((z1 - z0) / 1.2))
        zs = np.linspace(z0, z1, n)
        bumps = [
            _ellipse(*self.cam.project(np.array([x, h, z])), *(self.cam.f / max(z, 1) * np.array([0.5, 0.3])))
            for z in zs
        ]
        self.canvas.fill(bumps, color * self.light["top"], VEGETATION)

    def draw_fence(self, x: float, z0: float, z1: float, h: float, color: np.ndarray, variant: str) -> None:
        cam = self.cam
        plane = np.array([(x, 0.05, max(z0, _Z_MIN)), (x, 0.05, z1), (x, h, z1), (x, h, max(z0, _Z_MIN))])
        poly = cam.project(plane)
        self.canvas.blend([poly], color, 0.35 if variant != "bars" else 0.2, FENCE)
        zs = np.arange(max(z0, 1.0), z1, 2.5 if variant != "bars" else 0.25)
        posts = [cam.project(np.array([(x, 0, z), (x, h, z)])) for z in zs]
        rails = [cam.project(np.array([(x, y, max(z0, 1.0)), (x, y, z1)])) for y in (0.15, h - 0.05)]
        if variant == "lattice":  # diagonal trellis
            d = 0.8
            for z in np.arange(max(z0, 1.0) - h, z1, d):
                a = np.array([(x, 0.05, z), (x, h, z + h)])
                b = np.array([(x, 0.05, z + h), (x, h, z)])
                for seg in (a, b):
                    seg[:, 2] = np.clip(seg[:, 2], max(z0, 1.0), z1)
                    rails.append(cam.project(seg))
        thick = max(1.0, cam.f * 0.05 / max(z0, 1.0))
        self.canvas.lines(posts + rails, color * 0.9, FENCE, min(thick, 3))

    # --- street furniture -------------------------------------------------------------------
    def plan_tree_row(self, side: _Side) -> None:
        k = 0 if side.sign < 0 else 1
        if self.rng.random() >= self.st.tree_row[k]:
            return
        x = side.sign * (side.road_edge + (side.verge / 2 if side.verge else 0.7))
        z = self.rng.uniform(3, 12)
        spacing = self.rng.uniform(7, 15)
        while z < 150:
            self.add(z, self.tree_drawer(x + self.rng.normal(0, 0.1), z))
            z += spacing * self.rng.uniform(0.8, 1.2)

    def tree_drawer(self, x: float, z: float) -> _Draw:
        rng = self.rng
        kind = "round"
        if self.has("palm") and rng.random() < 0.4:
            kind = "palm"
        elif self.has("conifer") and rng.random() < 0.3:
            kind = "conifer"
        height = rng.uniform(5, 11) if kind != "palm" else rng.uniform(8, 14)
        color = self.color("conifer" if kind == "conifer" else "palm" if kind == "palm" else "vegetation")
        trunk = self.color("trunk")
        seed = int(rng.integers(1 << 31))
        return lambda: self.draw_tree(x, z, kind, height, color, trunk, np.random.default_rng(seed))

    def draw_tree(
        self,
        x: float,
        z: float,
        kind: str,
        height: float,
        color: np.ndarray,
        trunk: np.ndarray,
        rng: np.random.Generator,
    ) -> None:
        foot, s = self.billboard(x, z)
        fx, fy = foot
        tw = max(0.14 * s, 0.6)  # half the trunk width, at least about a pixel wide
        if kind == "palm":
            top = fy - height * s
            bend = rng.uniform(-0.6, 0.6) * s
            self.canvas.fill(
                [
                    np.array(
                        [
                            (fx - tw, fy),
                            (fx + tw, fy),
                            (fx + bend + tw * 0.6, top),
                            (fx + bend - tw * 0.6, top),
                        ]
                    )
                ],
                trunk,
                VEGETATION,
            )
            fronds = []
            for ang in np.linspace(0, 2 * np.pi, 9, endpoint=False) + rng.uniform(0, 0.7):
                ln = rng.uniform(2.0, 3.2) * s
                ex, ey = fx + bend + np.cos(ang) * ln, top + abs(np.sin(ang)) * ln * 0.6 + 0.3 * ln
                mx, my = fx + bend + np.cos(ang) * ln * 0.5, top - 0.1 * ln
                fronds.append(
                    np.array([(fx + bend, top), (mx, my - 0.15 * s), (ex, ey), (mx, my + 0.15 * s)])
                )
            self.canvas.fill(fronds, color, VEGETATION)
            return
        crown_base = height * rng.uniform(0.3, 0.45)
        self.canvas.fill(
            [
                np.array(
                    [
                        (fx - tw, fy),
                        (fx + tw, fy),
                        (fx + tw * 0.7, fy - crown_base * s - 0.5 * s),
                        (fx - tw * 0.7, fy - crown_base * s - 0.5 * s),
                    ]
                )
            ],
            trunk,
            VEGETATION,
        )
        if kind == "conifer":
            width = height * rng.uniform(0.28, 0.38)
            tiers = []
            for i in range(4):
                y_bot = fy - (crown_base + i * (height - crown_base) / 5) * s
                w = width * (1 - i * 0.2) * s
                tiers.append(
                    np.array(
                        [(fx - w, y_bot), (fx + w, y_bot), (fx, y_bot - (height - crown_base) * 0.45 * s)]
                    )
                )
            self.canvas.fill(tiers, color, VEGETATION)
            return
        radius = (height - crown_base) / 2
        cy = fy - (crown_base + radius) * s
        lumps = []
        for i in range(int(rng.integers(3, 6))):
            r = radius * rng.uniform(0.55, 0.85) * s
            ox, oy = rng.uniform(-0.6, 0.6) * radius * s, rng.uniform(-0.5, 0.4) * radius * s
            shape = _UNIT_CIRCLE * r * rng.uniform(0.85, 1.15, (16, 1)) + (fx + ox, cy + oy)
            lumps.append((shape, 0.85 + 0.1 * i + (0.15 if ox * self.sun_x > 0 else 0)))
        for shape, k in lumps:
            self.canvas.fill([shape], np.clip(color * k, 0, 1), VEGETATION)

    def plan_poles(self) -> None:
        rng = self.rng
        for _ in range(self.poisson("pole")):
            side = self.sides[-1 if rng.random() < 0.5 else 1]
            x = side.sign * (side.road_edge + rng.uniform(0.3, 0.6))
            z = rng.uniform(4, 90)
            color = self.color("pole")
            arm = rng.random() < 0.6
            h = rng.uniform(6, 9)
            self.add(z, lambda x=x, z=z, color=color, arm=arm, h=h: self.draw_lamp(x, z, h, color, arm))
        for _ in range(self.poisson("sign")):
            side = self.sides[-1 if rng.random() < 0.4 else 1]
            x = side.sign * (side.road_edge + rng.uniform(0.3, 0.8))
            z = rng.uniform(4, 70)
            self.add(z, self.sign_drawer(x, z))
        n_lights = self.poisson("traffic_light")
        z_cross = self.crosswalk if self.crosswalk is not None else rng.uniform(15, 60)
        for i in range(n_lights):
            overhead = i == 0 and rng.random() < 0.5
            side = self.sides[1 if i % 2 == 0 else -1]
            x = side.sign * (side.road_edge + 0.4)
            z = z_cross + rng.uniform(-1.5, 1.5) + 3.5
            self.add(z, self.light_drawer(x, z, overhead))

    def pole(self, x: float, z: float, h: float, color: np.ndarray, radius: float = 0.08) -> None:
        self.box(x - radius, x + radius, 0, h, z - radius, z + radius, color, POLE)

    def draw_lamp(self, x: float, z: float, h: float, color: np.ndarray, arm: bool) -> None:
        self.pole(x, z, h, color)
        if arm:  # arm reaching over the road with the lamp head at its end
            inward = -np.sign(x) * 1.8
            self.box(min(x, x + inward), max(x, x + inward), h - 0.12, h, z - 0.05, z + 0.05, color, POLE)
            hx = x + inward
            self.box(hx - 0.3, hx + 0.3, h - 0.28, h - 0.05, z - 0.15, z + 0.15, color * 0.8, POLE)
        else:
            self.box(x - 0.2, x + 0.2, h, h + 0.4, z - 0.2, z + 0.2, color * 0.8, POLE)

    def sign_drawer(self, x: float, z: float) -> _Draw:
        rng = self.rng
        shapes = ["circle", "triangle", "diamond", "octagon", "square"]
        if self.has("rect_sign"):
            shapes += ["rect", "rect"]
        shape = shapes[int(rng.integers(len(shapes)))]
        face, rim = self.color("sign"), self.color("sign")
        size = rng.uniform(0.55, 0.8)
        h = rng.uniform(2.0, 3.0)
        pole = self.color("pole")
        back = x < 0 and rng.random() < 0.5  # signs for oncoming traffic show their grey backs
        two = rng.random() < 0.3
        return lambda: self.draw_sign(x, z, h, shape, size, face, rim, pole, back, two)

    def sign_plate(self, shape: str, cx: float, cy: float, r: float) -> np.ndarray:
        if shape == "circle":
            return _ellipse(cx, cy, r, r, 16)
        if shape == "triangle":
            return np.array([(cx - r, cy + 0.7 * r), (cx + r, cy + 0.7 * r), (cx, cy - r)])
        if shape == "diamond":
            return np.array([(cx - r, cy), (cx, cy - r), (cx + r, cy), (cx, cy + r)])
        if shape == "octagon":
            return _ellipse(cx, cy, r, r, 8)
        if shape == "rect":
            return np.array(
                [
                    (cx - 1.4 * r, cy - 0.6 * r),
                    (cx + 1.4 * r, cy - 0.6 * r),
                    (cx + 1.4 * r, cy + 0.6 * r),
                    (cx - 1.4 * r, cy + 0.6 * r),
                ]
            )
        return np.array(
            [
                (cx - r * 0.8, cy - r * 0.8),
                (cx + r * 0.8, cy - r * 0.8),
                (cx + r * 0.8, cy + r * 0.8),
                (cx - r * 0.8, cy + r * 0.8),
            ]
        )

    def draw_sign(
        self,
        x: float,
        z: float,
        h: float,
        shape: str,
        size: float,
        face: np.ndarray,
        rim: np.ndarray,
        pole: np.ndarray,
        back: bool,
        two: bool,
    ) -> None:
        self.pole(x, z, h + size / 2, pole, radius=0.05)
        (fx, fy), s = self.billboard(x, z)
        plates = [(h, shape)] + ([(h - size * 1.1, "rect" if shape != "rect" else "square")] if two else [])
        for y, shp in plates:
            r = size / 2 * s
            cy = fy - y * s
            outer = self.sign_plate(shp, fx, cy, r)
            if back:
                self.canvas.fill([outer], np.clip(pole * 1.1, 0, 1) * self.light["front"], TRAFFIC_SIGN)
                continue
            self.canvas.fill([outer], rim * self.light["front"], TRAFFIC_SIGN)
            self.canvas.fill([self.sign_plate(shp, fx, cy, r * 0.7)], face * self.light["front"], None)

    def light_drawer(self, x: float, z: float, overhead: bool) -> _Draw:
        housing, pole = self.color("light_box"), self.color("pole")
        lit = int(self.rng.integers(3))
        h = self.rng.uniform(2.4, 3.2)
        reach = self.rng.uniform(3, 6)
        return lambda: self.draw_traffic_light(x, z, h, housing, pole, lit, overhead, reach)

    def draw_traffic_light(
        self,
        x: float,
        z: float,
        h: float,
        housing: np.ndarray,
        pole: np.ndarray,
        lit: int,
        overhead: bool,
        reach: float,
    ) -> None:
        bw, bh = 0.32, 0.95
        lamps = np.array([[0.95, 0.15, 0.1], [0.95, 0.7, 0.1], [0.2, 0.9, 0.4]], np.float32)
        if overhead:
            top = 5.6
            self.pole(x, z, top + 0.2, pole, radius=0.11)
            ax = x - np.sign(x) * reach
            self.box(min(x, ax), max(x, ax), top, top + 0.15, z - 0.06, z + 0.06, pole, POLE)
            bx, by = ax + np.sign(x) * 0.5, top - bh
        else:
            self.pole(x, z, h + bh, pole)
            bx, by = x - np.sign(x) * 0.2, h
        self.box(bx - bw / 2, bx + bw / 2, by, by + bh, z - 0.25, z + 0.1, housing, TRAFFIC_LIGHT)
        (fx, fy), s = self.billboard(bx, z - 0.25)
        for i in range(3):
            cy = fy - (by + bh * (0.8 - 0.3 * i)) * s
            c = lamps[i] if i == lit else lamps[i] * 0.25
            self.canvas.fill([_ellipse(fx, cy, 0.1 * s, 0.1 * s, 10)], c, None)

    # --- vehicles -----------------------------------------------------------------------------
    def plan_vehicles(self) -> None:
        rng = self.rng
        occupied: dict[float, list[tuple[float, float]]] = {}

        def place(x: float, length: float, z_lo: float, z_hi: float) -> float | None:
            spans = occupied.setdefault(round(x, 2), [])
            for _ in range(12):
                z = rng.uniform(z_lo, z_hi)
                if all(z + length + 1.5 < a or z > b + 1.5 for a, b in spans):
                    spans.append((z, z + length))
                    return z
            return None

        if self.tram_x is not None:
            length = rng.uniform(20, 32)
            z = place(self.tram_x, length, 8, 45)
            if z is not None:
                heading = 1 if rng.random() < 0.5 else -1
                color, second = self.color("tram"), self.color("tram")
                self.add(z, lambda z=z: self.draw_tram(self.tram_x, z, length, heading, color, second))
        kinds = (
            ["car"] * self.poisson("car") + ["truck"] * self.poisson("truck") + ["bus"] * self.poisson("bus")
        )
        rng.shuffle(kinds)
        for kind in kinds:
            x_lane, heading = self.lanes[int(rng.integers(len(self.lanes)))]
            x = x_lane + rng.normal(0, 0.2)
            length = {"car": 4.5, "truck": 9.0, "bus": 12.0}[kind]
            articulated = kind == "bus" and self.has("articulated") and rng.random() < 0.5
            if articulated:
                length = 18.0
            own_lane = abs(x_lane) < self.lane_w / 2
            z = place(round(x_lane, 2), length, 7.0 if own_lane else 3.5, 80.0)
            if z is not None:
                self.add(z, self.vehicle_drawer("articulated" if articulated else kind, x, z, heading))
        # parked cars along the curb, nose to tail
        for sign, side in self.sides.items():
            if not side.parking:
                continue
            x = sign * (side.road_edge - 1.15)
            z = rng.uniform(-3, 4)
            while z < 90:
                length = rng.uniform(4.0, 4.9)
                if rng.random() < self.st.parked_fill:
                    heading = 1 if sign > 0 or rng.random() < 0.5 else -1
                    self.add(z, self.vehicle_drawer("car", x + rng.normal(0, 0.1), z, heading, parked=True))
                z += length + rng.uniform(0.6, 2.5)

    def vehicle_drawer(self, kind: str, x: float, z: float, heading: int, parked: bool = False) -> _Draw:
        rng = self.rng
        if kind == "car":
            shapes = ["sedan"]
            if self.has("hatchback"):
                shapes += ["hatchback", "hatchback"]
            if self.has("van"):
                shapes.append("van")
            shape = shapes[int(rng.integers(len(shapes)))]
            color = self.color("car")
            dims = (
                rng.uniform(1.7, 1.9),
                rng.uniform(4.0, 4.8) if shape == "sedan" else rng.uniform(3.7, 4.6),
            )
            return lambda: self.draw_car(x, z, heading, shape, dims, color)
        if kind == "truck":
            cab, cargo = self.color("truck"), self.color("truck")
            length = rng.uniform(7, 10)
            return lambda: self.draw_truck(x, z, heading, length, cab, cargo)
        color, stripe = self.color("bus"), self.color("bus")
        length = 18.0 if kind == "articulated" else rng.uniform(10.5, 12.5)
        return lambda: self.draw_bus(x, z, heading, length, color, stripe, kind == "articulated")

    def side_face_x(self, x0: float, x1: float) -> float | None:
        """X of the long side of a vehicle that the camera sees, if any."""
        if x1 < 0:
            return x1
        if x0 > 0:
            return x0
        return None

    def wheels(self, x0: float, x1: float, centres: list[float], r: float, tyre: np.ndarray) -> None:
        sx = self.side_face_x(x0, x1)
        if sx is None:
            return
        polys, hubs = [], []
        for zc in centres:
            ring = np.stack([np.full(16, sx), r + r * _UNIT_CIRCLE[:, 1], zc + r * _UNIT_CIRCLE[:, 0]], -1)
            hub = np.stack(
                [np.full(16, sx), r + 0.5 * r * _UNIT_CIRCLE[:, 1], zc + 0.5 * r * _UNIT_CIRCLE[:, 0]], -1
            )
            polys.append(self.cam.project(ring))
            hubs.append(self.cam.project(hub))
        self.canvas.fill(polys, tyre, None)
        self.canvas.fill(hubs, np.array([0.55, 0.55, 0.57], np.float32) * self.light["front"], None)

    def end_lights(self, x0: float, x1: float, z: float, y: float, heading: int, label: int) -> None:
        """Tail lights (red) on a rear face or headlights (white) on a front face, plus a plate."""
        lamp = (
            np.array([0.85, 0.08, 0.06], np.float32)
            if heading > 0
            else np.array([0.95, 0.95, 0.85], np.float32)
        )
        lw = min(0.35, (x1 - x0) * 0.18)
        quads = [
            np.array(
                [
                    (x0 + 0.08, y, z),
                    (x0 + 0.08 + lw, y, z),
                    (x0 + 0.08 + lw, y + 0.15, z),
                    (x0 + 0.08, y + 0.15, z),
                ]
            ),
            np.array(
                [
                    (x1 - 0.08 - lw, y, z),
                    (x1 - 0.08, y, z),
                    (x1 - 0.08, y + 0.15, z),
                    (x1 - 0.08 - lw, y + 0.15, z),
                ]
            ),
        ]
        self.canvas.fill([self.cam.project(q) for q in quads], lamp, label)
        xc = (x0 + x1) / 2
        plate = np.array(
            [
                (xc - 0.26, y - 0.3, z),
                (xc + 0.26, y - 0.3, z),
                (xc + 0.26, y - 0.18, z),
                (xc - 0.26, y - 0.18, z),
            ]
        )
        self.canvas.fill(
            [self.cam.project(plate)], np.array([0.9, 0.9, 0.88], np.float32) * self.light["front"], label
        )

    def draw_car(
        self, x: float, z: float, heading: int, shape: str, dims: tuple[float, float], color: np.ndarray
    ) -> None:
        width, length = dims
        x0, x1, z1 = x - width / 2, x + width / 2, z + length
        clearance = 0.25
        tyre = np.array([0.08, 0.08, 0.09], np.float32)
        # dark underbody and the two near tyres: seen below the bumper
        self.box(x0 + 0.1, x1 - 0.1, 0.02, clearance + 0.05, z + 0.5, z1 - 0.5, tyre, CAR)
        for tx in (x0 + 0.12, x1 - 0.37):
            self.box(tx, tx + 0.25, 0.0, 0.62, z + 0.55, z + 1.2, tyre, CAR)
        body_top = 0.95 if shape != "van" else 1.05
        glass = self.color("glass")
        self.box(x0, x1, clearance, body_top, z, z1, color, CAR)
        self.wheels(x0, x1, [z + 0.8, z1 - 0.8], 0.32, tyre)
        # cabin: a tapered box on the body; hatchbacks and vans have it reach the rear
        if shape == "van":
            near_b, near_t, far_b, far_t, roof = 0.1, 0.15, 0.85, 0.95, 1.95
        elif shape == "hatchback":
            near_b, near_t, far_b, far_t, roof = 0.08, 0.2, 0.62, 0.8, 1.5
        else:
            near_b, near_t, far_b, far_t, roof = 0.22, 0.35, 0.68, 0.8, 1.45
        if heading < 0:  # we look at the front: the windscreen is the near slope, bonnet in front
            near_b, near_t, far_b, far_t = 1 - far_b, 1 - far_t, 1 - near_b, 1 - near_t
        inset_b, inset_t = 0.06, 0.2
        zb0, zt0, zb1, zt1 = z + near_b * length, z + near_t * length, z + far_b * length, z + far_t * length
        xb0, xb1, xt0, xt1 = x0 + inset_b, x1 - inset_b, x0 + inset_t, x1 - inset_t
        cab = {  # name: (points, outward normal)
            "near": (
                [(xb0, body_top, zb0), (xb1, body_top, zb0), (xt1, roof, zt0), (xt0, roof, zt0)],
                (0, zt0 - zb0, -(roof - body_top)),
            ),
            "right": (
                [(xb1, body_top, zb0), (xb1, body_top, zb1), (xt1, roof, zt1), (xt1, roof, zt0)],
                (roof - body_top, inset_t - inset_b, 0),
            ),
            "left": (
                [(xb0, body_top, zb0), (xb0, body_top, zb1), (xt0, roof, zt1), (xt0, roof, zt0)],
                (-(roof - body_top), inset_t - inset_b, 0),
            ),
            "roof": ([(xt0, roof, zt0), (xt1, roof, zt0), (xt1, roof, zt1), (xt0, roof, zt1)], (0, 1, 0)),
        }
        for name, (corners, normal) in cab.items():
            pts = np.array(corners, np.float64)
            shade = {"near": "front", "roof": "top"}.get(name, name)
            if self.face(pts, normal, color, CAR, shade=shade) and name != "roof":
                centre = pts.mean(axis=0)
                window = centre + (pts - centre) * np.array([0.85, 0.78, 0.85])
                self.face(window, normal, glass, None, shade=shade)
        self.end_lights(x0, x1, z, body_top - 0.25, heading, CAR)

    def draw_truck(
        self, x: float, z: float, heading: int, length: float, cab: np.ndarray, cargo: np.ndarray
    ) -> None:
        width = 2.5
        x0, x1 = x - width / 2, x + width / 2
        cab_len, box_h = 2.3, 3.6
        tyre = np.array([0.07, 0.07, 0.08], np.float32)
        glass = self.color("glass")
        if heading > 0:  # cab is far, cargo box rear is near
            cab_z, box_z0, box_z1 = z + length - cab_len, z, z + length - cab_len - 0.2
        else:
            cab_z, box_z0, box_z1 = z, z + cab_len + 0.2, z + length
        self.box(x0 + 0.2, x1 - 0.2, 0.05, 0.8, z + 0.3, z + length - 0.3, tyre, TRUCK)
        parts = [(cab_z, "cab"), (box_z0, "box")]
        for _, part in sorted(parts, reverse=True):  # far part first
            if part == "cab":
                self.box(
                    x0 + 0.05, x1 - 0.05, 0.5, 2.9, cab_z, cab_z + cab_len, cab, TRUCK, top_color=cab * 0.9
                )
                if heading < 0:
                    pane = np.array(
                        [(x0 + 0.2, 1.7, z), (x1 - 0.2, 1.7, z), (x1 - 0.2, 2.7, z), (x0 + 0.2, 2.7, z)]
                    )
                    self.face(pane, (0, 0, -1), glass, None, shade="front")
                sx = self.side_face_x(x0 + 0.05, x1 - 0.05)
                if sx is not None:
                    pane = np.array(
                        [
                            (sx, 1.7, cab_z + 0.3),
                            (sx, 1.7, cab_z + 1.4),
                            (sx, 2.7, cab_z + 1.4),
                            (sx, 2.7, cab_z + 0.3),
                        ]
                    )
                    self.face(pane, (np.sign(-sx), 0, 0), glass, None, shade="right" if sx < 0 else "left")
            else:
                self.box(x0, x1, 0.8, box_h, box_z0, box_z1, cargo, TRUCK, top_color=cargo * 0.9)
                if heading > 0:  # rear doors seam
                    seam = np.array([(x, 0.9, z), (x, box_h - 0.1, z)])
                    self.canvas.lines([self.cam.project(seam)], cargo * 0.5, None, 1)
        self.wheels(x0, x1, [z + 1.2, z + length - 1.4, z + length - 2.5], 0.5, tyre)
        self.end_lights(x0, x1, z, 0.95, heading, TRUCK)

    def draw_bus(
        self,
        x: float,
        z: float,
        heading: int,
        length: float,
        color: np.ndarray,
        stripe: np.ndarray,
        articulated: bool,
    ) -> None:
        width, height = 2.55, 3.1
        x0, x1, z1 = x - width / 2, x + width / 2, z + length
        tyre = np.array([0.07, 0.07, 0.08], np.float32)
        glass = self.color("glass")
        self.box(x0, x1, 0.3, height, z, z1, color, BUS, top_color=color * 0.9)
        sx = self.side_face_x(x0, x1)
        if sx is not None:
            shade = "right" if sx < 0 else "left"
            n = (np.sign(-sx), 0, 0)
            band = np.array(
                [(sx, 1.15, z + 0.4), (sx, 1.15, z1 - 0.4), (sx, 2.7, z1 - 0.4), (sx, 2.7, z + 0.4)]
            )
            self.face(band, n, glass, None, shade=shade)
            skirt = np.array([(sx, 0.3, z), (sx, 0.3, z1), (sx, 0.75, z1), (sx, 0.75, z)])
            self.face(skirt, n, stripe, None, shade=shade)
            pillars = [
                self.cam.project(np.array([(sx, 1.15, zz), (sx, 2.7, zz)]))
                for zz in np.arange(z + 1.6, z1 - 0.5, 1.5)
            ]
            self.canvas.lines(
                pillars, color * self.light[shade], None, max(1.0, self.cam.f * 0.12 / max(z, 1))
            )
            if articulated:  # the black bellows of an articulated bus
                zj = z + length * 0.55
                joint = np.array(
                    [(sx, 0.4, zj), (sx, 0.4, zj + 0.7), (sx, height, zj + 0.7), (sx, height, zj)]
                )
                self.face(joint, n, tyre * 2, None, shade=shade)
        axles = [z + 2.2, z1 - 2.8] + ([z + length * 0.55 - 1.5] if articulated else [])
        self.wheels(x0, x1, axles, 0.5, tyre)
        if heading < 0:  # front: big windscreen and a destination display
            pane = np.array(
                [(x0 + 0.1, 1.0, z), (x1 - 0.1, 1.0, z), (x1 - 0.1, 2.55, z), (x0 + 0.1, 2.55, z)]
            )
            self.face(pane, (0, 0, -1), glass, None, shade="front")
            sign = np.array(
                [(x0 + 0.3, 2.65, z), (x1 - 0.3, 2.65, z), (x1 - 0.3, 2.95, z), (x0 + 0.3, 2.95, z)]
            )
            self.face(sign, (0, 0, -1), np.array([0.9, 0.6, 0.1], np.float32), None)
        else:
            pane = np.array([(x0 + 0.3, 1.9, z), (x1 - 0.3, 1.9, z), (x1 - 0.3, 2.7, z), (x0 + 0.3, 2.7, z)])
            self.face(pane, (0, 0, -1), glass, None, shade="front")
        self.end_lights(x0, x1, z, 0.7, heading, BUS)

    def draw_tram(
        self, x: float, z: float, length: float, heading: int, color: np.ndarray, second: np.ndarray
    ) -> None:
        width, height = 2.4, 3.4
        x0, x1, z1 = x - width / 2, x + width / 2, z + length
        glass = self.color("glass")
        two_tone = self.has("two_tone")
        # pantograph on the roof: thin struts, labelled train like the rest of the vehicle
        zp = z + length * 0.4
        struts = [
            np.array([(x - 0.6, height, zp), (x, height + 1.1, zp + 0.6)]),
            np.array([(x + 0.6, height, zp), (x, height + 1.1, zp + 0.6)]),
            np.array([(x - 0.8, height + 1.1, zp + 0.6), (x + 0.8, height + 1.1, zp + 0.6)]),
        ]
        self.canvas.lines(
            [self.cam.project(p) for p in struts], np.array([0.2, 0.2, 0.2], np.float32), TRAIN, 1
        )
        self.box(x0, x1, 0.25, height, z, z1, color, TRAIN, top_color=color * 0.9)
        sx = self.side_face_x(x0, x1)
        if sx is not None:
            shade = "right" if sx < 0 else "left"
            n = (np.sign(-sx), 0, 0)
            band = np.array(
                [(sx, 1.0, z + 1.5), (sx, 1.0, z1 - 0.5), (sx, 2.8, z1 - 0.5), (sx, 2.8, z + 1.5)]
            )
            self.face(band, n, glass, None, shade=shade)
            if two_tone:  # cream upper half with a coloured skirt: a livery the source never shows
                skirt = np.array([(sx, 0.25, z), (sx, 0.25, z1), (sx, 0.9, z1), (sx, 0.9, z)])
                self.face(skirt, n, second, None, shade=shade)
            else:
                line = np.array([(sx, 0.7, z), (sx, 0.7, z1), (sx, 0.9, z1), (sx, 0.9, z)])
                self.face(line, n, second, None, shade=shade)
            joints = [
                self.cam.project(np.array([(sx, 0.3, zz), (sx, height, zz)]))
                for zz in np.arange(z + 7.0, z1 - 1.0, 7.0)
            ]
            self.canvas.lines(joints, np.array([0.1, 0.1, 0.1], np.float32), None, 1)
        pane = np.array([(x0 + 0.15, 1.2, z), (x1 - 0.15, 1.2, z), (x1 - 0.25, 2.9, z), (x0 + 0.25, 2.9, z)])
        self.face(pane, (0, 0, -1), glass, None, shade="front")
        self.end_lights(x0, x1, z, 0.8, heading, TRAIN)

    # --- people and two-wheelers ---------------------------------------------------------------
    def plan_people(self) -> None:
        rng, st = self.rng, self.st
        for _ in range(self.poisson("person")):
            if self.crosswalk is not None and rng.random() < 0.25:
                x = rng.uniform(-self.sides[-1].road_edge, self.sides[1].road_edge)
                z = self.crosswalk + rng.uniform(0.3, 2.7)
            else:
                side = self.sides[-1 if rng.random() < st.people_side else 1]
                x = side.sign * rng.uniform(side.walk_in + 0.3, side.property_line - 0.3)
                z = rng.uniform(3, 50)
            self.add(z, self.person_drawer(x, z))
        for _ in range(self.poisson("rider")):
            bicycle = rng.random() < st.p_rider_bicycle
            side = self.sides[-1 if rng.random() < 0.5 else 1]
            if bicycle and side.cycle_path and rng.random() < 0.7:
                x = side.sign * (side.walk_in + 1.1)
            else:
                x = side.sign * (side.road_edge - (2.3 if side.parking else 0) - rng.uniform(0.6, 1.5))
            z = rng.uniform(4, 45)
            view = "side" if rng.random() < 0.3 else "rear"
            self.add(z, self.rider_drawer(x, z, bicycle, view))
        for key, bicycle in (("parked_bicycle", True), ("parked_motorbike", False)):
            n = self.poisson(key)
            if n == 0:
                continue
            side = self.sides[-1 if rng.random() < st.people_side else 1]
            x = side.sign * (side.property_line - rng.uniform(0.5, 1.0))
            z = rng.uniform(3, 35)
            for i in range(n):  # parked in a row (a bicycle rack)
                zi = z + i * (0.7 if bicycle else 1.1)
                color = self.color("bicycle" if bicycle else "motorbike")
                facing = 1 if rng.random() < 0.5 else -1
                self.add(zi, self.twowheeler_drawer(x, zi, bicycle, "side", color, facing))

    def person_colors(self) -> dict[str, np.ndarray]:
        return {
            "skin": self.color("skin", 0.04),
            "hair": self.color("hair"),
            "top": self.color("clothes"),
            "bottom": self.color("trousers"),
            "shoes": self.color("hair") * 0.6,
        }

    def person_drawer(self, x: float, z: float) -> _Draw:
        rng = self.rng
        height = rng.uniform(1.55, 1.95)
        if self.has("child") and rng.random() < 0.15:
            height = rng.uniform(1.0, 1.35)
        coat = self.has("coat") and rng.random() < 0.3
        view = "side" if rng.random() < 0.5 else "front"
        colors = self.person_colors()
        facing = 1 if rng.random() < 0.5 else -1
        stride = rng.uniform(0.1, 0.45)
        backpack = rng.random() < 0.2
        return lambda: self.draw_person(x, z, height, view, facing, stride, colors, coat, backpack)

    def to_screen(
        self, foot: np.ndarray, s: float, facing: int, pts: list[tuple[float, float]]
    ) -> np.ndarray:
        """Local metres (x forward when facing=+1, y up) -> pixels."""
        p = np.asarray(pts, np.float64)
        return np.stack([foot[0] + facing * p[:, 0] * s, foot[1] - p[:, 1] * s], -1)

    def limb(
        self,
        foot: np.ndarray,
        s: float,
        facing: int,
        a: tuple[float, float],
        b: tuple[float, float],
        width: float,
        color: np.ndarray,
        label: int,
    ) -> None:
        self.canvas.lines([self.to_screen(foot, s, facing, [a, b])], color, label, max(1.0, width * s))

    def draw_person(
        self,
        x: float,
        z: float,
        height: float,
        view: str,
        facing: int,
        stride: float,
        colors: dict[str, np.ndarray],
        coat: bool,
        backpack: bool,
    ) -> None:
        foot, s = self.billboard(x, z)
        s *= height / 1.75  # draw a 1.75 m reference figure, scaled
        light = self.light["front"]
        c = {k: np.clip(v * light, 0, 1) for k, v in colors.items()}
        self.draw_figure(foot, s, facing, view, stride, c, PERSON, coat=coat, backpack=backpack)

    def draw_figure(
        self,
        foot: np.ndarray,
        s: float,
        facing: int,
        view: str,
        stride: float,
        c: dict[str, np.ndarray],
        label: int,
        coat: bool = False,
        backpack: bool = False,
        seated: tuple[float, float] | None = None,
        hands: tuple[float, float] | None = None,
        feet: tuple[float, float] | None = None,
        helmet: np.ndarray | None = None,
    ) -> None:
        """A person from simple parts; `seated` = hip position for riders (local metres).

        In the front/back view, facing +1 shows the face and -1 the back of the head.
        """
        face_visible = view == "side" or facing > 0

        def scr(pts: list[tuple[float, float]]) -> np.ndarray:
            return self.to_screen(foot, s, facing, pts)

        hip = seated or (0.0, 0.92)
        lean = 0.25 if seated else 0.0
        shoulder = (hip[0] + lean, hip[1] + 0.53 - (0.05 if seated else 0))
        head = (shoulder[0] + 0.04 + lean * 0.3, shoulder[1] + 0.2)
        if view == "side":
            if seated:
                knee = (hip[0] + 0.35, hip[1] - 0.2)
                self.limb(foot, s, facing, hip, knee, 0.15, c["bottom"], label)
                self.limb(foot, s, facing, knee, feet or (0.0, 0.3), 0.12, c["bottom"], label)
            else:
                for sgn, shade in ((1, 0.8), (-1, 1.0)):
                    self.limb(foot, s, facing, hip, (sgn * stride, 0.08), 0.14, c["bottom"] * shade, label)
                    self.limb(
                        foot,
                        s,
                        facing,
                        (sgn * stride, 0.05),
                        (sgn * stride + 0.12, 0.03),
                        0.08,
                        c["shoes"],
                        label,
                    )
            torso = [
                (hip[0] - 0.12, hip[1]),
                (hip[0] + 0.12, hip[1]),
                (shoulder[0] + 0.11, shoulder[1]),
                (shoulder[0] - 0.12, shoulder[1]),
            ]
            if coat:
                torso = [(hip[0] - 0.2, 0.35), (hip[0] + 0.2, 0.35), *torso[2:]]
            self.canvas.fill([scr(torso)], c["top"], label)
            if backpack:
                self.canvas.fill(
                    [
                        scr(
                            [
                                (-0.12, hip[1] + 0.15),
                                (-0.3, hip[1] + 0.2),
                                (-0.28, shoulder[1] - 0.02),
                                (-0.1, shoulder[1]),
                            ]
                        )
                    ],
                    c["hair"] * 0.8 + 0.1,
                    label,
                )
            hand = hands or (shoulder[0] + stride * 0.8, hip[1] - 0.1)
            self.limb(foot, s, facing, (shoulder[0], shoulder[1] - 0.05), hand, 0.09, c["top"] * 0.85, label)
        else:
            for sgn in (-1, 1):
                if seated:
                    self.limb(
                        foot, s, 1, (sgn * 0.1, hip[1]), (sgn * 0.17, hip[1] - 0.35), 0.13, c["bottom"], label
                    )
                    self.limb(
                        foot, s, 1, (sgn * 0.17, hip[1] - 0.35), (sgn * 0.15, 0.3), 0.11, c["bottom"], label
                    )
                else:
                    self.limb(foot, s, 1, (sgn * 0.09, hip[1]), (sgn * 0.09, 0.08), 0.13, c["bottom"], label)
                    self.limb(foot, s, 1, (sgn * 0.09, 0.06), (sgn * 0.09, 0.0), 0.12, c["shoes"], label)
            w_sh, w_hip = 0.21, 0.16
            torso = [(-w_hip, hip[1]), (w_hip, hip[1]), (w_sh, shoulder[1]), (-w_sh, shoulder[1])]
            if coat:
                torso = [(-0.22, 0.35), (0.22, 0.35), (w_sh, shoulder[1]), (-w_sh, shoulder[1])]
            for sgn in (-1, 1):
                hand = (sgn * 0.3, hands[1]) if hands else (sgn * 0.26, hip[1] - 0.12)
                self.limb(
                    foot, s, 1, (sgn * (w_sh - 0.03), shoulder[1] - 0.04), hand, 0.09, c["top"] * 0.85, label
                )
            self.canvas.fill([self.to_screen(foot, s, 1, torso)], c["top"], label)
            if backpack and not face_visible:
                self.canvas.fill(
                    [
                        self.to_screen(
                            foot,
                            s,
                            1,
                            [
                                (-0.15, hip[1] + 0.12),
                                (0.15, hip[1] + 0.12),
                                (0.16, shoulder[1] - 0.05),
                                (-0.16, shoulder[1] - 0.05),
                            ],
                        )
                    ],
                    c["hair"] * 0.8 + 0.1,
                    None,
                )
            facing = 1
        neck = [
            (head[0] - 0.04, shoulder[1] - 0.02),
            (head[0] + 0.04, shoulder[1] - 0.02),
            (head[0] + 0.04, head[1] - 0.08),
            (head[0] - 0.04, head[1] - 0.08),
        ]
        self.canvas.fill(
            [scr(neck) if view == "side" else self.to_screen(foot, s, 1, neck)], c["skin"], label
        )
        hx, hy = self.to_screen(foot, s, facing, [head])[0]
        r = 0.105 * s
        if helmet is not None:
            self.canvas.fill([_ellipse(hx, hy - 0.01 * s, r * 1.25, r * 1.15)], helmet, label)
            return
        self.canvas.fill([_ellipse(hx, hy, r * 0.9, r * 1.1, 12)], c["skin"], label)
        hair = _ellipse(
            hx - (0.02 * s * facing if view == "side" else 0), hy - 0.03 * s, r * 0.95, r * 0.9, 12
        )
        if view == "side":  # keep the face visible: hair covers the back and top
            hair = hair[(hair[:, 0] - hx) * facing < 0.35 * r]
        elif face_visible:  # seen from the front: only the top of the head
            hair = hair[hair[:, 1] < hy - 0.3 * r]
        self.canvas.fill([hair], c["hair"], label)

    def rider_drawer(self, x: float, z: float, bicycle: bool, view: str) -> _Draw:
        color = self.color("bicycle" if bicycle else "motorbike")
        colors = self.person_colors()
        helmet = self.color("helmet") if (not bicycle or self.rng.random() < 0.3) else None
        facing = 1 if self.rng.random() < 0.5 else -1
        return lambda: self.draw_rider(x, z, bicycle, view, color, colors, helmet, facing)

    def draw_rider(
        self,
        x: float,
        z: float,
        bicycle: bool,
        view: str,
        color: np.ndarray,
        colors: dict[str, np.ndarray],
        helmet: np.ndarray | None,
        facing: int,
    ) -> None:
        foot, s = self.billboard(x, z)
        light = self.light["front"]
        c = {k: np.clip(v * light, 0, 1) for k, v in colors.items()}
        hcol = None if helmet is None else np.clip(helmet * light, 0, 1)
        self.draw_twowheeler(foot, s, bicycle, view, np.clip(color * light, 0, 1), facing)
        if view == "side":
            if bicycle:
                hip, hands, feet = (-0.2, 0.95), (0.36, 1.0), (-0.02, 0.25)
            else:
                hip, hands, feet = (-0.25, 0.9), (0.5, 1.05), (0.05, 0.35)
            self.draw_figure(
                foot, s, facing, "side", 0.0, c, RIDER, seated=hip, hands=hands, feet=feet, helmet=hcol
            )
        else:
            self.draw_figure(
                foot,
                s,
                -1,
                "front",
                0.0,
                c,
                RIDER,
                seated=(0.0, 0.95 if bicycle else 0.9),
                hands=(0.3, 1.0),
                helmet=hcol,
            )
        if view == "rear":  # the rear wheel and mudguard show below/through the rider's legs
            w = 0.05 if bicycle else 0.14
            wheel = self.to_screen(foot, s, 1, [(-w, 0.0), (w, 0.0), (w, 0.55), (-w, 0.55)])
            self.canvas.fill(
                [wheel], np.array([0.08, 0.08, 0.09], np.float32), BICYCLE if bicycle else MOTORCYCLE
            )

    def twowheeler_drawer(
        self, x: float, z: float, bicycle: bool, view: str, color: np.ndarray, facing: int
    ) -> _Draw:
        def draw() -> None:
            foot, s = self.billboard(x, z)
            self.draw_twowheeler(foot, s, bicycle, view, np.clip(color * self.light["front"], 0, 1), facing)

        return draw

    def draw_twowheeler(
        self, foot: np.ndarray, s: float, bicycle: bool, view: str, color: np.ndarray, facing: int
    ) -> None:
        label = BICYCLE if bicycle else MOTORCYCLE
        tyre = np.array([0.08, 0.08, 0.09], np.float32)

        def scr(pts: list[tuple[float, float]]) -> np.ndarray:
            return self.to_screen(foot, s, facing, pts)

        if view == "rear":
            w = 0.05 if bicycle else 0.16
            self.canvas.fill([scr([(-w, 0.0), (w, 0.0), (w, 0.7), (-w, 0.7)])], tyre, label)
            if not bicycle:
                self.canvas.fill([scr([(-0.22, 0.5), (0.22, 0.5), (0.2, 0.95), (-0.2, 0.95)])], color, label)
                self.canvas.fill(
                    [scr([(-0.1, 0.75), (0.1, 0.75), (0.1, 0.85), (-0.1, 0.85)])],
                    np.array([0.8, 0.1, 0.1], np.float32),
                    label,
                )
            bar = 0.28 if bicycle else 0.38
            self.limb(foot, s, 1, (-bar, 1.02), (bar, 1.02), 0.04, tyre * 2, label)
            return
        if bicycle:
            r, hubs = 0.34, ((-0.53, 0.34), (0.53, 0.34))
            for hx, hy in hubs:
                cx, cy = scr([(hx, hy)])[0]
                disc = _ellipse(cx, cy, r * s, r * s, 16)
                self.canvas.blend([disc], tyre, 0.3, label)  # spokes: mostly see-through
                self.canvas.lines([disc], tyre, label, max(1.0, 0.06 * s), closed=True)
            frame = [
                [(-0.53, 0.34), (-0.05, 0.3), (-0.2, 0.85), (-0.53, 0.34)],
                [(-0.05, 0.3), (0.42, 0.8), (-0.2, 0.85)],
                [(0.42, 0.8), (0.53, 0.34)],
                [(0.42, 0.8), (0.38, 1.0), (0.3, 1.02)],
                [(-0.28, 0.92), (-0.1, 0.92)],
            ]
            self.canvas.lines([scr(f) for f in frame], color, label, max(1.0, 0.045 * s))
            return
        r, hubs = 0.31, ((-0.7, 0.31), (0.7, 0.31))
        for hx, hy in hubs:
            cx, cy = scr([(hx, hy)])[0]
            self.canvas.fill([_ellipse(cx, cy, r * s, r * s, 16)], tyre, label)
            self.canvas.fill(
                [_ellipse(cx, cy, 0.55 * r * s, 0.55 * r * s, 12)], np.full(3, 0.5, np.float32), label
            )
        self.canvas.fill([scr([(-0.25, 0.25), (0.3, 0.25), (0.35, 0.55), (-0.25, 0.6)])], tyre * 2.5, label)
        body = [
            (-0.85, 0.62),
            (-0.35, 0.7),
            (-0.2, 0.88),
            (0.25, 0.92),
            (0.5, 0.8),
            (0.6, 0.6),
            (0.3, 0.45),
            (-0.4, 0.5),
        ]
        self.canvas.fill([scr(body)], color, label)
        self.limb(foot, s, facing, (0.7, 0.31), (0.5, 1.0), 0.06, np.full(3, 0.45, np.float32), label)
        self.limb(foot, s, facing, (0.45, 1.05), (0.6, 1.08), 0.04, tyre, label)

    # --- render -------------------------------------------------------------------------------
    def render(self) -> tuple[np.ndarray, np.ndarray]:
        self.plan_street()
        self.plan_roadside()
        self.plan_poles()
        self.plan_vehicles()
        self.plan_people()
        self.draw_sky()
        self.draw_skyline()
        self.draw_ground()
        # roadside layer: far to near; street layer: far to near by the nearest depth of each object
        for layer in (self.background, self.items):
            for _, _, draw in sorted(layer, key=lambda item: (-item[0], item[1])):
                draw()
        return self.canvas.img, self.canvas.lab


# ---------------------------------------------------------------------------------------------
# Camera pipelines: where most of the colour / noise gap lives
# ---------------------------------------------------------------------------------------------


def _texture(img: np.ndarray, lab: np.ndarray, style: _Style, rng: np.random.Generator) -> np.ndarray:
    """Per-class surface texture at three scales (multiplicative luminance noise)."""
    h, w = lab.shape
    total = np.zeros((h, w), np.float32)
    for amp, step in zip(style.texture, (12, 4, 1), strict=True):
        field = rng.standard_normal((h // step + 2, w // step + 2)).astype(np.float32)
        if step > 1:
            field = cv2.resize(field, (w + 2 * step, h + 2 * step), interpolation=cv2.INTER_LINEAR)[
                step : step + h, step : step + w
            ]
        else:
            field = field[:h, :w]
        total += amp[lab] * field
    return img * (1.0 + total)[..., None]


def _luma(img: np.ndarray) -> np.ndarray:
    return img @ np.array([0.299, 0.587, 0.114], np.float32)


def _game_camera(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Source look: saturated, warm, contrasty and bright; no noise, no blur."""
    lum = _luma(img)[..., None]
    img = lum + rng.uniform(1.25, 1.5) * (img - lum)
    img = img * np.array([rng.uniform(1.04, 1.12), 1.0, rng.uniform(0.82, 0.92)], np.float32)
    img = 0.5 + rng.uniform(1.1, 1.3) * (img - 0.5)
    return np.clip(img, 0, 1) ** rng.uniform(0.8, 0.92)


def _photo_camera(img: np.ndarray, rng: np.random.Generator, horizon: float) -> np.ndarray:
    """Target look: overcast exposure, cool white balance, grey, flat, vignetted, blurred, noisy."""
    h, w, _ = img.shape
    img = np.clip(img, 0, 1) ** rng.uniform(1.0, 1.3) * rng.uniform(0.8, 1.0)
    wb = np.array([rng.uniform(0.82, 0.96), rng.uniform(0.95, 1.03), rng.uniform(1.03, 1.2)], np.float32)
    img = img * wb
    lum = _luma(img)[..., None]
    img = lum + rng.uniform(0.5, 0.8) * (img - lum)
    img = img.mean() + rng.uniform(0.7, 0.9) * (img - img.mean())
    # haze: distant things (rows near the horizon) fade towards a grey-blue
    rows = np.arange(h, dtype=np.float32)[:, None, None]
    haze = np.exp(-np.abs(rows - horizon) / (0.12 * h)) * rng.uniform(0.1, 0.3)
    img = img * (1 - haze) + haze * np.array([0.55, 0.58, 0.62], np.float32)
    img = img + rng.uniform(0.02, 0.06)  # lifted blacks
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    img = img * (1 - rng.uniform(0.12, 0.3) * r2 / 2)[..., None]
    sigma = rng.uniform(0.5, 0.9) * w / 320
    img = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma)
    noise = rng.normal(0, rng.uniform(0.008, 0.018), (h, w, 1)) + rng.normal(0, 0.005, (h, w, 3))
    return img + noise.astype(np.float32)


def render_scene(
    rng: np.random.Generator, domain: str, size: tuple[int, int] = DEFAULT_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Render one street scene -> (image H x W x 3 uint8 RGB, trainIds H x W uint8 in 0..18 or 255).

    ``domain`` is ``"source"`` (game-like) or ``"target"`` (photo-like); ``size`` is (width, height).
    """
    if domain not in _STYLES:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    width, height = _check_size(size)
    style = _STYLES[domain]
    scene = _Scene(rng, style, width, height)
    img, lab = scene.render()
    img = _texture(img, lab, style, rng)
    img = _game_camera(img, rng) if domain == "source" else _photo_camera(img, rng, scene.cam.horizon)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), lab


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (width, height), got {size!r}") from None
    if width < MIN_SIZE[0] or height < MIN_SIZE[1]:
        raise ValueError(f"size must be at least {MIN_SIZE[0]}x{MIN_SIZE[1]}, got {width}x{height}")
    return width, height


# ---------------------------------------------------------------------------------------------
# Writing the two data sets
# ---------------------------------------------------------------------------------------------

_DOMAIN_CODE = {"source": 1, "target": 2}
_SPLIT_CODE = {"train": 1, "val": 2}


def scene_rng(seed: int, domain: str, split: str, index: int) -> np.random.Generator:
    """The generator for one image: depends only on (seed, domain, split, index)."""
    return np.random.default_rng(
        np.random.SeedSequence([int(seed), _DOMAIN_CODE[domain], _SPLIT_CODE[split], int(index)])
    )


def _label_id_palette() -> list[int]:
    """768-entry PNG palette: the official Cityscapes colour of every label id (like GTA5's labels)."""
    from cityscapesscripts.helpers.labels import labels

    palette = [0] * 768
    for lab in labels:
        if 0 <= lab.id < 256:
            palette[3 * lab.id : 3 * lab.id + 3] = list(lab.color)
    return palette


def train_ids_to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """trainIds -> Cityscapes label ids; ignore (and anything outside 0..18) -> 0 "unlabeled"."""
    lut = np.zeros(256, np.uint8)
    lut[:NUM_CLASSES] = TRAIN_ID_TO_LABEL_ID
    return lut[np.asarray(train_ids, np.uint8)]


def _save_png(image: Image.Image, path: Path) -> None:
    """Write next to the target and rename, so a killed run never leaves a truncated PNG behind."""
    tmp = path.with_name(path.name + ".tmp")
    image.save(tmp, format="PNG", compress_level=6)
    os.replace(tmp, path)


def cityscapes_stem(split: str, index: int) -> tuple[str, str]:
    """(city, file stem without suffix) of target image `index` in `split`."""
    cities = CITIES[split]
    city = cities[index % len(cities)]
    return city, f"{city}_{index // len(cities):06d}_{FRAME:06d}"


def _readme(out: Path, seed: int, counts: dict[str, int], size: tuple[int, int]) -> str:
    w, h = size
    return (
        f"{_README_MARKER}\n"
        "==================================\n\n"
        "Procedurally generated street scenes written by segdemo.synthetic. This is NOT GTA5 and NOT\n"
        "Cityscapes: both folders only use their file layouts (and Cityscapes label ids) so the real-data\n"
        "loaders read them unchanged.\n\n"
        "  gta5/        source domain (game-like look): images/NNNNN.png,\n"
        "               labels/NNNNN.png (palette PNG of label ids)\n"
        "  cityscapes/  target domain (photo-like look) leftImg8bit/{train,val}/<city>/...,\n"
        "               gtFine/{train,val}/<city>/..._gtFine_labelIds.png and _gtFine_labelTrainIds.png\n\n"
        f"seed: {seed}\n"
        f"size: {w}x{h}\n"
        f"source images: {counts['source']}\n"
        f"target train images: {counts['target_train']}\n"
        f"target val images: {counts['target_val']}\n\n"
        "Regenerate with:\n"
        f"  python -m segdemo.synthetic --out {out} --seed {seed} --n-source {counts['source']} "
        f"--n-target-train {counts['target_train']} --n-target-val {counts['target_val']} --size {w}x{h}\n"
    )


def _has_readme(folder: Path) -> bool:
    readme = folder / "README.txt"
    return readme.is_file() and readme.read_text(errors="replace").startswith(_README_MARKER)


def is_procedural(root: str | Path) -> bool:
    """True if `root` (a ``generate`` output folder or its gta5/ or cityscapes/ folder) holds our data."""
    root = Path(root)
    return _has_readme(root) or _has_readme(root.parent)


def _prepare(out: Path) -> None:
    """Refuse to write into folders that hold something other than our own earlier output."""
    ours = _has_readme(out)
    for sub in ("gta5", "cityscapes"):
        d = out / sub
        if d.exists() and any(d.iterdir()) and not ours:
            raise FileExistsError(
                f"{d} exists and was not written by segdemo.synthetic; choose another --out"
            )


def _prune(root: Path, keep: set[Path]) -> None:
    """Remove PNGs (and temp files) of an earlier, larger run that this run did not rewrite."""
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in (".png", ".tmp") and path not in keep:
            path.unlink()


def generate(
    out: str | Path,
    seed: int = 0,
    n_source: int = 500,
    n_target_train: int = 500,
    n_target_val: int = 100,
    size: tuple[int, int] = DEFAULT_SIZE,
    progress: bool = False,
) -> dict[str, Path]:
    """Write the source domain (GTA5 layout) and the target domain (Cityscapes layout) under `out`.

    Returns {"gta5": out/"gta5", "cityscapes": out/"cityscapes"}. The bytes are a function of
    (seed, size) and each image's index only, so re-running reproduces the files exactly.
    """
    size = _check_size(size)
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    for name, n in (
        ("n_source", n_source),
        ("n_target_train", n_target_train),
        ("n_target_val", n_target_val),
    ):
        if int(n) < 0:
            raise ValueError(f"{name} must be >= 0, got {n}")
    out = Path(out)
    _prepare(out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {"source": int(n_source), "target_train": int(n_target_train), "target_val": int(n_target_val)}
    (out / "README.txt").write_text(_readme(out, seed, counts, size))
    gta, cs = out / "gta5", out / "cityscapes"
    written: set[Path] = set()
    palette = _label_id_palette()
    total, done, start = sum(counts.values()), 0, time.perf_counter()

    def tick() -> None:
        nonlocal done
        done += 1
        if progress and (done % 50 == 0 or done == total):
            rate = done / max(time.perf_counter() - start, 1e-9) * 60
            print(f"  {done}/{total} images ({rate:.0f}/min)", file=sys.stderr, flush=True)

    (gta / "images").mkdir(parents=True, exist_ok=True)
    (gta / "labels").mkdir(parents=True, exist_ok=True)
    for i in range(counts["source"]):
        img, train_ids = render_scene(scene_rng(seed, "source", "train", i), "source", size)
        name = f"{i + 1:05d}.png"
        label = Image.fromarray(train_ids_to_label_ids(train_ids), mode="P")
        label.putpalette(palette)
        for path, image in (
            (gta / "images" / name, Image.fromarray(img, mode="RGB")),
            (gta / "labels" / name, label),
        ):
            _save_png(image, path)
            written.add(path)
        tick()
    for split, n in (("train", counts["target_train"]), ("val", counts["target_val"])):
        for i in range(n):
            img, train_ids = render_scene(scene_rng(seed, "target", split, i), "target", size)
            city, stem = cityscapes_stem(split, i)
            img_dir, gt_dir = cs / "leftImg8bit" / split / city, cs / "gtFine" / split / city
            img_dir.mkdir(parents=True, exist_ok=True)
            gt_dir.mkdir(parents=True, exist_ok=True)
            files = (
                (img_dir / f"{stem}_leftImg8bit.png", Image.fromarray(img, mode="RGB")),
                (
                    gt_dir / f"{stem}_gtFine_labelIds.png",
                    Image.fromarray(train_ids_to_label_ids(train_ids), mode="L"),
                ),
                (gt_dir / f"{stem}_gtFine_labelTrainIds.png", Image.fromarray(train_ids, mode="L")),
            )
            for path, image in files:
                _save_png(image, path)
                written.add(path)
            tick()
    for root in (gta, cs):
        _prune(root, written)
    return {"gta5": gta, "cityscapes": cs}


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 320x160, got {text!r}") from None
    if w < MIN_SIZE[0] or h < MIN_SIZE[1]:
        raise argparse.ArgumentTypeError(f"size must be at least {MIN_SIZE[0]}x{MIN_SIZE[1]}, got {text!r}")
    return w, h


def _non_negative_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return n


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: generate the embedded synthetic data set."""
    parser = argparse.ArgumentParser(
        prog="python -m segdemo.synthetic",
        description="Generate procedural street scenes: a game-like source domain in the GTA5 layout and a "
        "photo-like target domain in the Cityscapes layout.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (gets gta5/ and cityscapes/)")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="random seed, >= 0 (default 0)")
    parser.add_argument(
        "--n-source", type=_non_negative_int, default=500, help="source (GTA5-layout) images (default 500)"
    )
    parser.add_argument(
        "--n-target-train", type=_non_negative_int, default=500, help="target train images (default 500)"
    )
    parser.add_argument(
        "--n-target-val", type=_non_negative_int, default=100, help="target val images (default 100)"
    )
    parser.add_argument(
        "--size",
        type=_parse_size,
        default=DEFAULT_SIZE,
        help=f"WIDTHxHEIGHT (default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})",
    )
    parser.add_argument("--progress", action="store_true", help="report progress on stderr")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        paths = generate(
            args.out,
            seed=args.seed,
            n_source=args.n_source,
            n_target_train=args.n_target_train,
            n_target_val=args.n_target_val,
            size=args.size,
            progress=args.progress,
        )
    except (OSError, ValueError) as exc:  # existing foreign data, unwritable folder, ...
        parser.error(str(exc))
    elapsed = time.perf_counter() - start
    n = args.n_source + args.n_target_train + args.n_target_val
    print(f"wrote {args.n_source} source images to {paths['gta5']}")
    print(
        f"wrote {args.n_target_train} train + {args.n_target_val} val target images to {paths['cityscapes']}"
    )
    print(f"{n} images at {args.size[0]}x{args.size[1]}, seed {args.seed}, in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
