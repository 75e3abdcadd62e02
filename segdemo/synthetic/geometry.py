"""The pinhole camera, the canvas that draws an image and its label map together, and small 2-D shapes."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from segdemo.labels import IGNORE_INDEX

SHIFT = 4  # cv2 sub-pixel bits: coordinates are passed as fixed point with 4 fractional bits
ONE = 1 << SHIFT
Z_MIN = 0.3  # metres; nothing is projected closer than this
FAR = 260.0  # metres; the ground ends here, hidden behind the skyline


def to_fixed_point(polys: list[np.ndarray]) -> list[np.ndarray]:
    """Pixel coordinates -> the fixed-point int32 points cv2 draws with ``shift=SHIFT``."""
    return [np.round(np.asarray(p) * ONE).astype(np.int32).reshape(-1, 2) for p in polys]


class Camera:
    """Pinhole camera at (0, height, 0) looking along +Z; X to the right, Y up."""

    def __init__(self, focal: float, cx: float, horizon: float, height: float) -> None:
        self.f, self.cx, self.horizon, self.height = focal, cx, horizon, height
        self.pos = np.array([0.0, height, 0.0])

    def project(self, pts: np.ndarray) -> np.ndarray:
        pts = np.asarray(pts, np.float64)
        z = np.maximum(pts[..., 2], Z_MIN)
        x = self.cx + self.f * pts[..., 0] / z
        y = self.horizon + self.f * (self.height - pts[..., 1]) / z
        return np.stack([x, y], axis=-1)

    def sees(self, normal: np.ndarray, point: np.ndarray) -> bool:
        """Back-face test: is the outward normal of a planar face at `point` towards the camera."""
        return float(np.dot(normal, self.pos - point)) > 0.0


EMISSIVE: dict[str, tuple[float, float, float]] = {
    "window": (0.8, 0.62, 0.36),  # warm tungsten behind curtains
    "shop": (0.9, 0.82, 0.66),
    "lamp": (1.0, 0.85, 0.6),  # sodium-ish street lamp
    "headlight": (1.0, 1.0, 0.92),
    "taillight": (1.0, 0.1, 0.06),
    "signal_red": (1.0, 0.15, 0.1),
    "signal_amber": (1.0, 0.7, 0.1),
    "signal_green": (0.25, 1.0, 0.5),
}
"""Colours of the things that glow after dark (lit windows, lamps, vehicle and traffic lights)."""
EMISSIVE_NAMES = tuple(EMISSIVE)


class Canvas:
    """An RGB float image and its label map, always drawn together.

    With ``glowing`` (dusk and night) it also keeps ``emit``: which pixels glow and in which of the
    :data:`EMISSIVE` colours (0 = none, k = the k-th colour), so that the light applied later keeps them
    bright; every ordinary drawing call clears it under what it draws (painter's algorithm).
    """

    def __init__(self, width: int, height: int, glowing: bool = False) -> None:
        self.img = np.zeros((height, width, 3), np.float32)
        self.lab = np.full((height, width), IGNORE_INDEX, np.uint8)
        self.emit = np.zeros((height, width), np.uint8) if glowing else None

    def fill(self, polys: list[np.ndarray], color: np.ndarray, label: int | None) -> None:
        """Fill 2-D polygons (pixel coordinates); label None keeps the labels underneath."""
        pts = to_fixed_point(polys)
        cv2.fillPoly(self.img, pts, cv_color(color), cv2.LINE_8, SHIFT)
        if label is not None:
            cv2.fillPoly(self.lab, pts, int(label), cv2.LINE_8, SHIFT)
        if self.emit is not None:
            cv2.fillPoly(self.emit, pts, 0, cv2.LINE_8, SHIFT)

    def glow(self, polys: list[np.ndarray], kind: str) -> None:
        """Mark already drawn polygons as glowing in the :data:`EMISSIVE` colour ``kind`` (no-op by day)."""
        if self.emit is not None and polys:
            cv2.fillPoly(self.emit, to_fixed_point(polys), EMISSIVE_NAMES.index(kind) + 1, cv2.LINE_8, SHIFT)

    def lines(
        self,
        polylines: list[np.ndarray],
        color: np.ndarray,
        label: int | None,
        thickness: float,
        closed: bool = False,
    ) -> None:
        pts = to_fixed_point(polylines)
        t = max(1, round(thickness))
        cv2.polylines(self.img, pts, closed, cv_color(color), t, cv2.LINE_8, SHIFT)
        if label is not None:
            cv2.polylines(self.lab, pts, closed, int(label), t, cv2.LINE_8, SHIFT)
        if self.emit is not None:
            cv2.polylines(self.emit, pts, closed, 0, t, cv2.LINE_8, SHIFT)

    def blend(self, polys: list[np.ndarray], color: np.ndarray, alpha: float, label: int | None) -> None:
        """See-through fill (fence mesh, spoked wheels): the image mixes, the label is replaced."""
        pts = to_fixed_point(polys)
        allp = np.concatenate(pts) // ONE
        h, w = self.lab.shape
        x0, y0 = max(int(allp[:, 0].min()) - 1, 0), max(int(allp[:, 1].min()) - 1, 0)
        x1, y1 = min(int(allp[:, 0].max()) + 2, w), min(int(allp[:, 1].max()) + 2, h)
        if x0 >= x1 or y0 >= y1:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        offset = np.array([x0 * ONE, y0 * ONE], np.int32)
        cv2.fillPoly(mask, [p - offset for p in pts], 1, cv2.LINE_8, SHIFT)
        sel = mask.astype(bool)
        region = self.img[y0:y1, x0:x1]
        region[sel] = region[sel] * (1.0 - alpha) + np.asarray(color, np.float32) * alpha
        if label is not None:
            self.lab[y0:y1, x0:x1][sel] = label
        if self.emit is not None:
            self.emit[y0:y1, x0:x1][sel] = 0


def cv_color(color: np.ndarray) -> tuple[float, float, float]:
    c = np.asarray(color, np.float64)
    return float(c[0]), float(c[1]), float(c[2])


@dataclass(frozen=True)
class Billboard:
    """Where a flat figure stands on screen: its foot (pixels), pixels per metre, which way it faces (+1 /
    -1)."""

    foot: np.ndarray
    scale: float
    facing: int

    def screen(self, pts: list[tuple[float, float]]) -> np.ndarray:
        """Local metres (x forward when facing +1, y up) -> pixels."""
        p = np.asarray(pts, np.float64)
        return np.stack(
            [self.foot[0] + self.facing * p[:, 0] * self.scale, self.foot[1] - p[:, 1] * self.scale], -1
        )


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 14) -> np.ndarray:
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=-1)


UNIT_CIRCLE = np.stack(
    [
        np.cos(np.linspace(0, 2 * np.pi, 16, endpoint=False)),
        np.sin(np.linspace(0, 2 * np.pi, 16, endpoint=False)),
    ],
    axis=-1,
)
