"""Bicycles and motorcycles, ridden (drawn under their rider) or parked in a row."""

from __future__ import annotations

import numpy as np

from segdemo.labels import (
    BICYCLE,
    MOTORCYCLE,
)
from segdemo.synthetic.geometry import Billboard, ellipse
from segdemo.synthetic.scene import Draw, Scene


def twowheeler_drawer(
    scene: Scene, x: float, z: float, bicycle: bool, view: str, color: np.ndarray, facing: int
) -> Draw:
    def draw() -> None:
        foot, s = scene.billboard(x, z)
        draw_twowheeler(scene, foot, s, bicycle, view, np.clip(color * scene.light["front"], 0, 1), facing)

    return draw


def draw_twowheeler(
    scene: Scene, foot: np.ndarray, s: float, bicycle: bool, view: str, color: np.ndarray, facing: int
) -> None:
    label = BICYCLE if bicycle else MOTORCYCLE
    tyre = np.array([0.08, 0.08, 0.09], np.float32)

    at = Billboard(foot, s, facing)
    scr = at.screen

    if view == "rear":
        w = 0.05 if bicycle else 0.16
        scene.canvas.fill([scr([(-w, 0.0), (w, 0.0), (w, 0.7), (-w, 0.7)])], tyre, label)
        if not bicycle:
            scene.canvas.fill([scr([(-0.22, 0.5), (0.22, 0.5), (0.2, 0.95), (-0.2, 0.95)])], color, label)
            scene.canvas.fill(
                [scr([(-0.1, 0.75), (0.1, 0.75), (0.1, 0.85), (-0.1, 0.85)])],
                np.array([0.8, 0.1, 0.1], np.float32),
                label,
            )
        bar = 0.28 if bicycle else 0.38
        scene.limb(Billboard(foot, s, 1), (-bar, 1.02), (bar, 1.02), 0.04, tyre * 2, label)
        return
    if bicycle:
        r, hubs = 0.34, ((-0.53, 0.34), (0.53, 0.34))
        for hx, hy in hubs:
            cx, cy = scr([(hx, hy)])[0]
            disc = ellipse(cx, cy, r * s, r * s, 16)
            scene.canvas.blend([disc], tyre, 0.3, label)  # spokes: mostly see-through
            scene.canvas.lines([disc], tyre, label, max(1.0, 0.06 * s), closed=True)
        frame = [
            [(-0.53, 0.34), (-0.05, 0.3), (-0.2, 0.85), (-0.53, 0.34)],
            [(-0.05, 0.3), (0.42, 0.8), (-0.2, 0.85)],
            [(0.42, 0.8), (0.53, 0.34)],
            [(0.42, 0.8), (0.38, 1.0), (0.3, 1.02)],
            [(-0.28, 0.92), (-0.1, 0.92)],
        ]
        scene.canvas.lines([scr(f) for f in frame], color, label, max(1.0, 0.045 * s))
        return
    r, hubs = 0.31, ((-0.7, 0.31), (0.7, 0.31))
    for hx, hy in hubs:
        cx, cy = scr([(hx, hy)])[0]
        scene.canvas.fill([ellipse(cx, cy, r * s, r * s, 16)], tyre, label)
        scene.canvas.fill(
            [ellipse(cx, cy, 0.55 * r * s, 0.55 * r * s, 12)], np.full(3, 0.5, np.float32), label
        )
    scene.canvas.fill([scr([(-0.25, 0.25), (0.3, 0.25), (0.35, 0.55), (-0.25, 0.6)])], tyre * 2.5, label)
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
    scene.canvas.fill([scr(body)], color, label)
    scene.limb(at, (0.7, 0.31), (0.5, 1.0), 0.06, np.full(3, 0.45, np.float32), label)
    scene.limb(at, (0.45, 1.05), (0.6, 1.08), 0.04, tyre, label)
