"""Street furniture: lamp posts, traffic signs and traffic lights.

Traffic lights stand in pairs at a junction's crossing, alternately beyond and before it, half of them
with a contrast backplate (a dark plate with a white or yellow rim, labelled traffic light as in
Cityscapes): at 256x128 a bare signal head is a 2x4-pixel blob that the target-trained networks never
learnt (generator version 2: 0.00 IoU, docs/results.md).
"""

from __future__ import annotations

import cv2
import numpy as np

from segdemo.labels import (
    POLE,
    TRAFFIC_LIGHT,
    TRAFFIC_SIGN,
)
from segdemo.synthetic.geometry import SHIFT, UNIT_CIRCLE, ellipse, to_fixed_point
from segdemo.synthetic.scene import Draw, Scene

SIGNALS = ("signal_red", "signal_amber", "signal_green")  # the glow of each lamp of a traffic light


def plan_poles(scene: Scene) -> None:
    rng = scene.rng
    lamps: list[tuple[float, float, float]] = []
    for _ in range(scene.poisson("pole")):
        side = scene.plan.sides[-1 if rng.random() < 0.5 else 1]
        x = side.sign * (side.road_edge + rng.uniform(0.3, 0.6))
        z = rng.uniform(4, 90)
        if scene.plan.crosses(z - 0.5, z + 0.5):  # no lamp post in the middle of the cross street
            continue
        color = scene.color("pole")
        arm = rng.random() < 0.6
        h = rng.uniform(6, 9)
        lamps.append((x, z, h))
        scene.add(z, lambda x=x, z=z, color=color, arm=arm, h=h: draw_lamp(scene, x, z, h, color, arm))
    scene.lamp_pools = light_pools(scene, lamps)
    for _ in range(scene.poisson("sign")):
        side = scene.plan.sides[-1 if rng.random() < 0.4 else 1]
        x = side.sign * (side.road_edge + rng.uniform(0.3, 0.8))
        z = rng.uniform(4, 70)
        scene.add(z, sign_drawer(scene, x, z))
    n_lights = scene.poisson("traffic_light")
    z_cross = scene.plan.crosswalk if scene.plan.crosswalk is not None else rng.uniform(15, 60)
    for i in range(n_lights):
        overhead = i == 0 and rng.random() < 0.5
        side = scene.plan.sides[1 if i % 2 == 0 else -1]
        x = side.sign * (side.road_edge + 0.4)
        # a junction's signal heads: the first pair beyond the crossing, the next pair before it, ...
        beyond = (i // 2) % 2 == 0
        z = max(5.0, z_cross + rng.uniform(-1.5, 1.5) + (3.5 if beyond else -3.5))
        scene.add(z, light_drawer(scene, x, z, overhead))


def draw_pole(scene: Scene, x: float, z: float, h: float, color: np.ndarray, radius: float = 0.08) -> None:
    scene.box(x - radius, x + radius, 0, h, z - radius, z + radius, color, POLE)


def draw_lamp(scene: Scene, x: float, z: float, h: float, color: np.ndarray, arm: bool) -> None:
    draw_pole(scene, x, z, h, color)
    if arm:  # arm reaching over the road with the lamp head at its end
        inward = -np.sign(x) * 1.8
        scene.box(min(x, x + inward), max(x, x + inward), h - 0.12, h, z - 0.05, z + 0.05, color, POLE)
        hx, hy = x + inward, h - 0.28
        scene.box(hx - 0.3, hx + 0.3, hy, h - 0.05, z - 0.15, z + 0.15, color * 0.8, POLE)
    else:
        hx, hy = x, h
        scene.box(x - 0.2, x + 0.2, h, h + 0.4, z - 0.2, z + 0.2, color * 0.8, POLE)
    if scene.canvas.emit is not None:  # after dark the lamp shines: its bulb glows under the head
        (bx, by), s = scene.billboard(hx, z)
        by -= hy * s
        scene.canvas.glow([ellipse(bx, by, max(0.25 * s, 0.8), max(0.1 * s, 0.6), 10)], "lamp")


def light_pools(scene: Scene, lamps: list[tuple[float, float, float]]) -> np.ndarray | None:
    """Where the street lamps (x, z, height) light the ground: a soft ellipse under each, 0..1."""
    if not lamps or scene.light_of_day.lamp_density == 0:
        return None
    pools = np.zeros((scene.h, scene.w), np.float32)
    for x, z, h in lamps:
        # the heads hang over the road and light the carriageway more than the kerb behind the post
        centre, radius = x - np.sign(x) * 2.5, 0.75 * h
        if z - radius < 0.5:  # the pool reaches behind the camera
            continue
        ring = np.stack(
            [centre + radius * UNIT_CIRCLE[:, 0], np.zeros(16), z + radius * UNIT_CIRCLE[:, 1]], -1
        )
        pts = to_fixed_point([scene.cam.project(ring)])
        cv2.fillPoly(pools, pts, scene.light_of_day.lamp_density, cv2.LINE_8, SHIFT)
    sigma = max(1.0, scene.w / 100)
    return np.clip(cv2.GaussianBlur(pools, (0, 0), sigmaX=sigma), 0, 1)


def sign_drawer(scene: Scene, x: float, z: float) -> Draw:
    rng = scene.rng
    shapes = ["circle", "triangle", "diamond", "octagon", "square"]
    if scene.has("rect_sign"):
        shapes += ["rect", "rect"]
    shape = shapes[int(rng.integers(len(shapes)))]
    face, rim = scene.color("sign"), scene.color("sign")
    size = rng.uniform(0.55, 0.8)
    h = rng.uniform(2.0, 3.0)
    pole = scene.color("pole")
    back = x < 0 and rng.random() < 0.5  # signs for oncoming traffic show their grey backs
    two = rng.random() < 0.3
    return lambda: draw_sign(scene, x, z, h, shape, size, face, rim, pole, back, two)


def sign_plate(scene: Scene, shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    if shape == "circle":
        return ellipse(cx, cy, r, r, 16)
    if shape == "triangle":
        return np.array([(cx - r, cy + 0.7 * r), (cx + r, cy + 0.7 * r), (cx, cy - r)])
    if shape == "diamond":
        return np.array([(cx - r, cy), (cx, cy - r), (cx + r, cy), (cx, cy + r)])
    if shape == "octagon":
        return ellipse(cx, cy, r, r, 8)
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
    scene: Scene,
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
    draw_pole(scene, x, z, h + size / 2, pole, radius=0.05)
    (fx, fy), s = scene.billboard(x, z)
    plates = [(h, shape)] + ([(h - size * 1.1, "rect" if shape != "rect" else "square")] if two else [])
    for y, shp in plates:
        r = size / 2 * s
        cy = fy - y * s
        outer = sign_plate(scene, shp, fx, cy, r)
        if back:
            scene.canvas.fill([outer], np.clip(pole * 1.1, 0, 1) * scene.light["front"], TRAFFIC_SIGN)
            continue
        scene.canvas.fill([outer], rim * scene.light["front"], TRAFFIC_SIGN)
        scene.canvas.fill([sign_plate(scene, shp, fx, cy, r * 0.7)], face * scene.light["front"], None)


def light_drawer(scene: Scene, x: float, z: float, overhead: bool) -> Draw:
    housing, pole = scene.color("light_box"), scene.color("pole")
    lit = int(scene.rng.integers(3))
    h = scene.rng.uniform(2.4, 3.2)
    reach = scene.rng.uniform(3, 6)
    # half of them with a contrast backplate, black with a white or yellow rim, as at many real junctions
    rim = None
    if scene.rng.random() < 0.5:
        rim = np.array([0.92, 0.92, 0.9] if scene.rng.random() < 0.5 else [0.95, 0.8, 0.15], np.float32)
    return lambda: draw_traffic_light(scene, x, z, h, housing, pole, lit, overhead, reach, rim)


def draw_traffic_light(
    scene: Scene,
    x: float,
    z: float,
    h: float,
    housing: np.ndarray,
    pole: np.ndarray,
    lit: int,
    overhead: bool,
    reach: float,
    rim: np.ndarray | None = None,
) -> None:
    bw, bh = 0.32, 0.95
    lamps = np.array([[0.95, 0.15, 0.1], [0.95, 0.7, 0.1], [0.2, 0.9, 0.4]], np.float32)
    if overhead:
        top = 5.6
        draw_pole(scene, x, z, top + 0.2, pole, radius=0.11)
        ax = x - np.sign(x) * reach
        scene.box(min(x, ax), max(x, ax), top, top + 0.15, z - 0.06, z + 0.06, pole, POLE)
        bx, by = ax + np.sign(x) * 0.5, top - bh
    else:
        draw_pole(scene, x, z, h + bh, pole)
        bx, by = x - np.sign(x) * 0.2, h
    if rim is not None:  # the backplate behind the housing: its rim first, the dark plate inside it
        pw, ph, edge = 0.62, 1.25, 0.08
        cy = by + bh / 2
        scene.box(bx - pw / 2, bx + pw / 2, cy - ph / 2, cy + ph / 2, z - 0.05, z, rim, TRAFFIC_LIGHT)
        scene.box(
            bx - pw / 2 + edge,
            bx + pw / 2 - edge,
            cy - ph / 2 + edge,
            cy + ph / 2 - edge,
            z - 0.06,
            z - 0.01,
            housing * 0.5,
            TRAFFIC_LIGHT,
        )
    scene.box(bx - bw / 2, bx + bw / 2, by, by + bh, z - 0.25, z + 0.1, housing, TRAFFIC_LIGHT)
    (fx, fy), s = scene.billboard(bx, z - 0.25)
    for i in range(3):
        cy = fy - (by + bh * (0.8 - 0.3 * i)) * s
        c = lamps[i] if i == lit else lamps[i] * 0.25
        scene.canvas.fill([ellipse(fx, cy, 0.1 * s, 0.1 * s, 10)], c, None)
        if i == lit:
            scene.canvas.glow([ellipse(fx, cy, 0.1 * s, 0.1 * s, 10)], SIGNALS[i])
