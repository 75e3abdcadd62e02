"""Cars, trucks, buses and trams in the lanes, and cars parked along the curb."""

from __future__ import annotations

import numpy as np

from segdemo.labels import (
    BUS,
    CAR,
    TRAIN,
    TRUCK,
)
from segdemo.synthetic.geometry import UNIT_CIRCLE
from segdemo.synthetic.scene import Draw, Scene


def plan_vehicles(scene: Scene) -> None:
    rng = scene.rng
    occupied: dict[float, list[tuple[float, float]]] = {}

    def place(x: float, length: float, z_lo: float, z_hi: float) -> float | None:
        spans = occupied.setdefault(round(x, 2), [])
        for _ in range(12):
            z = rng.uniform(z_lo, z_hi)
            if all(z + length + 1.5 < a or z > b + 1.5 for a, b in spans):
                spans.append((z, z + length))
                return z
        return None

    if scene.plan.tram_x is not None:
        length = rng.uniform(20, 32)
        z = place(scene.plan.tram_x, length, 8, 45)
        if z is not None:
            heading = 1 if rng.random() < 0.5 else -1
            color, second = scene.color("tram"), scene.color("tram")
            scene.add(z, lambda z=z: draw_tram(scene, scene.plan.tram_x, z, length, heading, color, second))
    kinds = (
        ["car"] * scene.poisson("car") + ["truck"] * scene.poisson("truck") + ["bus"] * scene.poisson("bus")
    )
    rng.shuffle(kinds)
    for kind in kinds:
        x_lane, heading = scene.plan.lanes[int(rng.integers(len(scene.plan.lanes)))]
        x = x_lane + rng.normal(0, 0.2)
        length = {"car": 4.5, "truck": 9.0, "bus": 12.0}[kind]
        articulated = kind == "bus" and scene.has("articulated") and rng.random() < 0.5
        if articulated:
            length = 18.0
        own_lane = abs(x_lane) < scene.plan.lane_w / 2
        z = place(round(x_lane, 2), length, 7.0 if own_lane else 3.5, 80.0)
        if z is not None:
            scene.add(z, vehicle_drawer(scene, "articulated" if articulated else kind, x, z, heading))
    # parked cars along the curb, nose to tail
    for sign, side in scene.plan.sides.items():
        if not side.parking:
            continue
        x = sign * (side.road_edge - 1.15)
        z = rng.uniform(-3, 4)
        while z < 90:
            length = rng.uniform(4.0, 4.9)
            if rng.random() < scene.st.parked_fill and not scene.plan.crosses(z - 1.0, z + length + 1.0):
                heading = 1 if sign > 0 or rng.random() < 0.5 else -1
                scene.add(z, vehicle_drawer(scene, "car", x + rng.normal(0, 0.1), z, heading, parked=True))
            z += length + rng.uniform(0.6, 2.5)


def vehicle_drawer(scene: Scene, kind: str, x: float, z: float, heading: int, parked: bool = False) -> Draw:
    rng = scene.rng
    if kind == "car":
        shapes = ["sedan"]
        if scene.has("hatchback"):
            shapes += ["hatchback", "hatchback"]
        if scene.has("van"):
            shapes.append("van")
        shape = shapes[int(rng.integers(len(shapes)))]
        color = scene.color("car")
        dims = (
            rng.uniform(1.7, 1.9),
            rng.uniform(4.0, 4.8) if shape == "sedan" else rng.uniform(3.7, 4.6),
        )
        return with_shadow(
            scene, x, z, dims[0], dims[1], lambda: draw_car(scene, x, z, heading, shape, dims, color)
        )
    if kind == "truck":
        cab, cargo = scene.color("truck"), scene.color("truck")
        length = rng.uniform(7, 10)
        return with_shadow(
            scene, x, z, 2.5, length, lambda: draw_truck(scene, x, z, heading, length, cab, cargo)
        )
    color, stripe = scene.color("bus"), scene.color("bus")
    length = 18.0 if kind == "articulated" else rng.uniform(10.5, 12.5)
    return with_shadow(
        scene,
        x,
        z,
        2.55,
        length,
        lambda: draw_bus(scene, x, z, heading, length, color, stripe, kind == "articulated"),
    )


def with_shadow(scene: Scene, x: float, z: float, width: float, length: float, draw: Draw) -> Draw:
    """A vehicle drawn over its contact shadow: the dark patch of road under its body (image only)."""

    def draw_both() -> None:
        pad = 0.25
        pts = np.array(
            [
                (x - width / 2 - pad, 0.0, max(z - pad, 0.5)),
                (x + width / 2 + pad, 0.0, max(z - pad, 0.5)),
                (x + width / 2 + pad, 0.0, z + length + pad),
                (x - width / 2 - pad, 0.0, z + length + pad),
            ]
        )
        scene.canvas.blend([scene.cam.project(pts)], np.zeros(3, np.float32), 0.45, None)
        draw()

    return draw_both


def side_face_x(scene: Scene, x0: float, x1: float) -> float | None:
    """X of the long side of a vehicle that the camera sees, if any."""
    if x1 < 0:
        return x1
    if x0 > 0:
        return x0
    return None


def wheels(scene: Scene, x0: float, x1: float, centres: list[float], r: float, tyre: np.ndarray) -> None:
    sx = side_face_x(scene, x0, x1)
    if sx is None:
        return
    polys, hubs = [], []
    for zc in centres:
        ring = np.stack([np.full(16, sx), r + r * UNIT_CIRCLE[:, 1], zc + r * UNIT_CIRCLE[:, 0]], -1)
        hub = np.stack(
            [np.full(16, sx), r + 0.5 * r * UNIT_CIRCLE[:, 1], zc + 0.5 * r * UNIT_CIRCLE[:, 0]], -1
        )
        polys.append(scene.cam.project(ring))
        hubs.append(scene.cam.project(hub))
    scene.canvas.fill(polys, tyre, None)
    scene.canvas.fill(hubs, np.array([0.55, 0.55, 0.57], np.float32) * scene.light["front"], None)


def end_lights(scene: Scene, x0: float, x1: float, z: float, y: float, heading: int, label: int) -> None:
    """Tail lights (red) on a rear face or headlights (white) on a front face, plus a plate."""
    lamp = (
        np.array([0.85, 0.08, 0.06], np.float32) if heading > 0 else np.array([0.95, 0.95, 0.85], np.float32)
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
    lamps = [scene.cam.project(q) for q in quads]
    scene.canvas.fill(lamps, lamp, label)
    scene.canvas.glow(lamps, "taillight" if heading > 0 else "headlight")
    xc = (x0 + x1) / 2
    plate = np.array(
        [
            (xc - 0.26, y - 0.3, z),
            (xc + 0.26, y - 0.3, z),
            (xc + 0.26, y - 0.18, z),
            (xc - 0.26, y - 0.18, z),
        ]
    )
    scene.canvas.fill(
        [scene.cam.project(plate)], np.array([0.9, 0.9, 0.88], np.float32) * scene.light["front"], label
    )


def draw_car(
    scene: Scene, x: float, z: float, heading: int, shape: str, dims: tuple[float, float], color: np.ndarray
) -> None:
    width, length = dims
    x0, x1, z1 = x - width / 2, x + width / 2, z + length
    clearance = 0.25
    tyre = np.array([0.08, 0.08, 0.09], np.float32)
    # dark underbody and the two near tyres: seen below the bumper
    scene.box(x0 + 0.1, x1 - 0.1, 0.02, clearance + 0.05, z + 0.5, z1 - 0.5, tyre, CAR)
    for tx in (x0 + 0.12, x1 - 0.37):
        scene.box(tx, tx + 0.25, 0.0, 0.62, z + 0.55, z + 1.2, tyre, CAR)
    body_top = 0.95 if shape != "van" else 1.05
    glass = scene.color("glass")
    scene.box(x0, x1, clearance, body_top, z, z1, color, CAR)
    wheels(scene, x0, x1, [z + 0.8, z1 - 0.8], 0.32, tyre)
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
        if scene.face(pts, normal, color, CAR, shade=shade) and name != "roof":
            centre = pts.mean(axis=0)
            window = centre + (pts - centre) * np.array([0.85, 0.78, 0.85])
            scene.face(window, normal, glass, None, shade=shade)
    end_lights(scene, x0, x1, z, body_top - 0.25, heading, CAR)


def draw_truck(
    scene: Scene, x: float, z: float, heading: int, length: float, cab: np.ndarray, cargo: np.ndarray
) -> None:
    width = 2.5
    x0, x1 = x - width / 2, x + width / 2
    cab_len, box_h = 2.3, 3.6
    tyre = np.array([0.07, 0.07, 0.08], np.float32)
    glass = scene.color("glass")
    if heading > 0:  # cab is far, cargo box rear is near
        cab_z, box_z0, box_z1 = z + length - cab_len, z, z + length - cab_len - 0.2
    else:
        cab_z, box_z0, box_z1 = z, z + cab_len + 0.2, z + length
    scene.box(x0 + 0.2, x1 - 0.2, 0.05, 0.8, z + 0.3, z + length - 0.3, tyre, TRUCK)
    parts = [(cab_z, "cab"), (box_z0, "box")]
    for _, part in sorted(parts, reverse=True):  # far part first
        if part == "cab":
            scene.box(x0 + 0.05, x1 - 0.05, 0.5, 2.9, cab_z, cab_z + cab_len, cab, TRUCK, top_color=cab * 0.9)
            if heading < 0:
                pane = np.array(
                    [(x0 + 0.2, 1.7, z), (x1 - 0.2, 1.7, z), (x1 - 0.2, 2.7, z), (x0 + 0.2, 2.7, z)]
                )
                scene.face(pane, (0, 0, -1), glass, None, shade="front")
            sx = side_face_x(scene, x0 + 0.05, x1 - 0.05)
            if sx is not None:
                pane = np.array(
                    [
                        (sx, 1.7, cab_z + 0.3),
                        (sx, 1.7, cab_z + 1.4),
                        (sx, 2.7, cab_z + 1.4),
                        (sx, 2.7, cab_z + 0.3),
                    ]
                )
                scene.face(pane, (np.sign(-sx), 0, 0), glass, None, shade="right" if sx < 0 else "left")
        else:
            scene.box(x0, x1, 0.8, box_h, box_z0, box_z1, cargo, TRUCK, top_color=cargo * 0.9)
            if heading > 0:  # rear doors seam
                seam = np.array([(x, 0.9, z), (x, box_h - 0.1, z)])
                scene.canvas.lines([scene.cam.project(seam)], cargo * 0.5, None, 1)
    wheels(scene, x0, x1, [z + 1.2, z + length - 1.4, z + length - 2.5], 0.5, tyre)
    end_lights(scene, x0, x1, z, 0.95, heading, TRUCK)


def draw_bus(
    scene: Scene,
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
    glass = scene.color("glass")
    scene.box(x0, x1, 0.3, height, z, z1, color, BUS, top_color=color * 0.9)
    sx = side_face_x(scene, x0, x1)
    if sx is not None:
        shade = "right" if sx < 0 else "left"
        n = (np.sign(-sx), 0, 0)
        band = np.array([(sx, 1.15, z + 0.4), (sx, 1.15, z1 - 0.4), (sx, 2.7, z1 - 0.4), (sx, 2.7, z + 0.4)])
        scene.face(band, n, glass, None, shade=shade)
        skirt = np.array([(sx, 0.3, z), (sx, 0.3, z1), (sx, 0.75, z1), (sx, 0.75, z)])
        scene.face(skirt, n, stripe, None, shade=shade)
        pillars = [
            scene.cam.project(np.array([(sx, 1.15, zz), (sx, 2.7, zz)]))
            for zz in np.arange(z + 1.6, z1 - 0.5, 1.5)
        ]
        scene.canvas.lines(
            pillars, color * scene.light[shade], None, max(1.0, scene.cam.f * 0.12 / max(z, 1))
        )
        if articulated:  # the black bellows of an articulated bus
            zj = z + length * 0.55
            joint = np.array([(sx, 0.4, zj), (sx, 0.4, zj + 0.7), (sx, height, zj + 0.7), (sx, height, zj)])
            scene.face(joint, n, tyre * 2, None, shade=shade)
    axles = [z + 2.2, z1 - 2.8] + ([z + length * 0.55 - 1.5] if articulated else [])
    wheels(scene, x0, x1, axles, 0.5, tyre)
    if heading < 0:  # front: big windscreen and a destination display
        pane = np.array([(x0 + 0.1, 1.0, z), (x1 - 0.1, 1.0, z), (x1 - 0.1, 2.55, z), (x0 + 0.1, 2.55, z)])
        scene.face(pane, (0, 0, -1), glass, None, shade="front")
        sign = np.array([(x0 + 0.3, 2.65, z), (x1 - 0.3, 2.65, z), (x1 - 0.3, 2.95, z), (x0 + 0.3, 2.95, z)])
        scene.face(sign, (0, 0, -1), np.array([0.9, 0.6, 0.1], np.float32), None)
    else:
        pane = np.array([(x0 + 0.3, 1.9, z), (x1 - 0.3, 1.9, z), (x1 - 0.3, 2.7, z), (x0 + 0.3, 2.7, z)])
        scene.face(pane, (0, 0, -1), glass, None, shade="front")
    end_lights(scene, x0, x1, z, 0.7, heading, BUS)


def draw_tram(
    scene: Scene, x: float, z: float, length: float, heading: int, color: np.ndarray, second: np.ndarray
) -> None:
    width, height = 2.4, 3.4
    x0, x1, z1 = x - width / 2, x + width / 2, z + length
    glass = scene.color("glass")
    two_tone = scene.has("two_tone")
    # pantograph on the roof: thin struts, labelled train like the rest of the vehicle
    zp = z + length * 0.4
    struts = [
        np.array([(x - 0.6, height, zp), (x, height + 1.1, zp + 0.6)]),
        np.array([(x + 0.6, height, zp), (x, height + 1.1, zp + 0.6)]),
        np.array([(x - 0.8, height + 1.1, zp + 0.6), (x + 0.8, height + 1.1, zp + 0.6)]),
    ]
    scene.canvas.lines(
        [scene.cam.project(p) for p in struts], np.array([0.2, 0.2, 0.2], np.float32), TRAIN, 1
    )
    scene.box(x0, x1, 0.25, height, z, z1, color, TRAIN, top_color=color * 0.9)
    sx = side_face_x(scene, x0, x1)
    if sx is not None:
        shade = "right" if sx < 0 else "left"
        n = (np.sign(-sx), 0, 0)
        band = np.array([(sx, 1.0, z + 1.5), (sx, 1.0, z1 - 0.5), (sx, 2.8, z1 - 0.5), (sx, 2.8, z + 1.5)])
        scene.face(band, n, glass, None, shade=shade)
        if two_tone:  # cream upper half with a coloured skirt: a livery the source never shows
            skirt = np.array([(sx, 0.25, z), (sx, 0.25, z1), (sx, 0.9, z1), (sx, 0.9, z)])
            scene.face(skirt, n, second, None, shade=shade)
        else:
            line = np.array([(sx, 0.7, z), (sx, 0.7, z1), (sx, 0.9, z1), (sx, 0.9, z)])
            scene.face(line, n, second, None, shade=shade)
        joints = [
            scene.cam.project(np.array([(sx, 0.3, zz), (sx, height, zz)]))
            for zz in np.arange(z + 7.0, z1 - 1.0, 7.0)
        ]
        scene.canvas.lines(joints, np.array([0.1, 0.1, 0.1], np.float32), None, 1)
    pane = np.array([(x0 + 0.15, 1.2, z), (x1 - 0.15, 1.2, z), (x1 - 0.25, 2.9, z), (x0 + 0.25, 2.9, z)])
    scene.face(pane, (0, 0, -1), glass, None, shade="front")
    end_lights(scene, x0, x1, z, 0.8, heading, TRAIN)
