"""Street trees: round crowns (with leaf clusters where the domain draws them), palms (source only) and
conifers (target only)."""

from __future__ import annotations

import numpy as np

from segdemo.labels import (
    VEGETATION,
)
from segdemo.synthetic.geometry import UNIT_CIRCLE
from segdemo.synthetic.plan import Side
from segdemo.synthetic.scene import Draw, Scene


def plan_tree_row(scene: Scene, side: Side) -> None:
    k = 0 if side.sign < 0 else 1
    if scene.rng.random() >= scene.st.tree_row[k]:
        return
    x = side.sign * (side.road_edge + (side.verge / 2 if side.verge else 0.7))
    z = scene.rng.uniform(3, 12)
    spacing = scene.rng.uniform(7, 15)
    while z < 150:
        if not scene.plan.crosses(z - 1.0, z + 1.0):
            scene.add(z, tree_drawer(scene, x + scene.rng.normal(0, 0.1), z))
        z += spacing * scene.rng.uniform(0.8, 1.2)


def tree_drawer(scene: Scene, x: float, z: float) -> Draw:
    rng = scene.rng
    kind = "round"
    if scene.has("palm") and rng.random() < 0.4:
        kind = "palm"
    elif scene.has("conifer") and rng.random() < 0.3:
        kind = "conifer"
    height = rng.uniform(5, 11) if kind != "palm" else rng.uniform(8, 14)
    color = scene.color("conifer" if kind == "conifer" else "palm" if kind == "palm" else "vegetation")
    trunk = scene.color("trunk")
    seed = int(rng.integers(1 << 31))
    return lambda: draw_tree(scene, x, z, kind, height, color, trunk, np.random.default_rng(seed))


def draw_tree(
    scene: Scene,
    x: float,
    z: float,
    kind: str,
    height: float,
    color: np.ndarray,
    trunk: np.ndarray,
    rng: np.random.Generator,
) -> None:
    foot, s = scene.billboard(x, z)
    fx, fy = foot
    tw = max(0.14 * s, 0.6)  # half the trunk width, at least about a pixel wide
    if kind == "palm":
        top = fy - height * s
        bend = rng.uniform(-0.6, 0.6) * s
        scene.canvas.fill(
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
            fronds.append(np.array([(fx + bend, top), (mx, my - 0.15 * s), (ex, ey), (mx, my + 0.15 * s)]))
        scene.canvas.fill(fronds, color, VEGETATION)
        return
    crown_base = height * rng.uniform(0.3, 0.45)
    scene.canvas.fill(
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
                np.array([(fx - w, y_bot), (fx + w, y_bot), (fx, y_bot - (height - crown_base) * 0.45 * s)])
            )
        scene.canvas.fill(tiers, color, VEGETATION)
        return
    radius = (height - crown_base) / 2
    cy = fy - (crown_base + radius) * s
    lumps = []
    for i in range(int(rng.integers(3, 6))):
        r = radius * rng.uniform(0.55, 0.85) * s
        ox, oy = rng.uniform(-0.6, 0.6) * radius * s, rng.uniform(-0.5, 0.4) * radius * s
        shape = lumpy_circle((fx + ox, cy + oy), r, 0.15, rng)
        lumps.append((shape, 0.85 + 0.1 * i + (0.15 if ox * scene.sun_x > 0 else 0)))
    for shape, k in lumps:
        scene.canvas.fill([shape], np.clip(color * k, 0, 1), VEGETATION)
    if scene.st.leaf_clusters > 0:
        draw_leaf_clusters(scene, (fx, cy), radius * s, color, rng)


def draw_leaf_clusters(
    scene: Scene, centre: tuple[float, float], radius: float, color: np.ndarray, rng: np.random.Generator
) -> None:
    """Clusters of leaves inside a round crown of ``radius`` pixels: lit on top and towards the sun, shaded
    underneath, so that a crown reads as foliage and not as a flat blob of one green."""
    if radius < 3:  # too far away for single clusters to show
        return
    cx, cy = centre
    for _ in range(int(rng.poisson(scene.st.leaf_clusters))):
        ox, oy = rng.uniform(-0.8, 0.8) * radius, rng.uniform(-0.8, 0.7) * radius
        shade = rng.uniform(0.5, 1.2) - 0.4 * oy / radius + (0.1 if ox * scene.sun_x > 0 else -0.05)
        size = radius * rng.uniform(0.12, 0.28)
        shape = lumpy_circle((cx + ox, cy + oy), size, 0.3, rng)
        scene.canvas.fill([shape], np.clip(color * shade, 0, 1), VEGETATION)


def lumpy_circle(
    centre: tuple[float, float], radius: float, jitter: float, rng: np.random.Generator
) -> np.ndarray:
    """A circle's outline whose every point lies ``radius * (1 ± jitter)`` from ``centre`` (pixels): a crown's
    lump or a leaf cluster."""
    return UNIT_CIRCLE * radius * rng.uniform(1 - jitter, 1 + jitter, (len(UNIT_CIRCLE), 1)) + centre
