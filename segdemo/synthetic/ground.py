"""Sky, skyline, the ground (road, sidewalks, verges, yards), road markings, tram rails, cast shadows."""

from __future__ import annotations

import cv2
import numpy as np

from segdemo.labels import (
    BUILDING,
    ROAD,
    SIDEWALK,
    SKY,
    TERRAIN,
    VEGETATION,
)
from segdemo.synthetic.geometry import FAR, SHIFT, UNIT_CIRCLE, Z_MIN, ellipse, to_fixed_point
from segdemo.synthetic.scene import Scene


def draw_sky(scene: Scene) -> None:
    c, hz = scene.canvas, scene.cam.horizon
    top, low = scene.color("sky_top", 0.04), scene.color("sky_low", 0.03)
    # drawn only where the style pales skies at all, so that the target's images stay byte-identical
    if scene.st.pale_sky > 0 and scene.rng.random() < scene.st.pale_sky:
        pale, amount = scene.color("sky_pale", 0.02), scene.rng.uniform(0.5, 0.95)
        top, low = top + (pale - top) * amount, low + (pale - low) * amount
    rows = np.clip(np.arange(scene.h, dtype=np.float32) / max(hz, 1.0), 0.0, 1.0) ** 1.4
    c.img[:] = (top[None, :] * (1 - rows[:, None]) + low[None, :] * rows[:, None])[:, None, :]
    c.lab[:] = SKY
    n_clouds = int(scene.rng.integers(0, 6))
    for _ in range(n_clouds):
        cx, cy = scene.rng.uniform(0, scene.w), scene.rng.uniform(-0.1, 0.8) * hz
        cloud = scene.color("cloud", 0.02)
        alpha = scene.rng.uniform(0.3, 0.8)
        for _ in range(int(scene.rng.integers(3, 7))):
            r = scene.rng.uniform(0.03, 0.09) * scene.w
            blob = ellipse(
                cx + scene.rng.uniform(-2, 2) * r,
                cy + scene.rng.uniform(-0.4, 0.4) * r,
                r,
                r * scene.rng.uniform(0.4, 0.7),
            )
            c.blend([blob], cloud, alpha, None)


def draw_skyline(scene: Scene) -> None:
    """Distant buildings and trees at the end of the street, hazy (they cover the horizon)."""
    z, x = FAR - 10.0, -700.0
    haze = scene.st.palette["sky_low"][0]
    while x < 700.0:
        wdt = scene.rng.uniform(15, 50)
        if scene.rng.random() < 0.3:
            hgt = scene.rng.uniform(6, 16)
            pts = np.array(
                [
                    (x, 0, z),
                    (x + wdt, 0, z),
                    (x + wdt, hgt, z),
                    (x + wdt * 0.5, hgt * 1.3, z),
                    (x, hgt, z),
                ]
            )
            color, label = scene.color("vegetation") * 0.5 + haze * 0.5, VEGETATION
        else:
            hgt = scene.rng.uniform(8, 45)
            pts = np.array([(x, 0, z), (x + wdt, 0, z), (x + wdt, hgt, z), (x, hgt, z)])
            color, label = scene.color("building") * 0.55 + haze * 0.45, BUILDING
        scene.canvas.fill([scene.cam.project(pts)], color, label)
        x += wdt


def ground_strip(
    scene: Scene, x0: float, x1: float, color: np.ndarray, label: int, z0: float = Z_MIN, z1: float = FAR
) -> None:
    pts = np.array([(x0, 0, z0), (x1, 0, z0), (x1, 0, z1), (x0, 0, z1)])
    scene.canvas.fill([scene.cam.project(pts)], color, label)


def ground_quads(
    scene: Scene, quads: list[tuple[float, float, float, float]], color: np.ndarray, label: int | None
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
    scene.canvas.fill(list(scene.cam.project(pts)), color, label)


def draw_ground(scene: Scene) -> None:
    rng = scene.rng
    road = scene.color("road", 0.03)
    left, right = scene.plan.sides[-1], scene.plan.sides[+1]
    ground_strip(scene, -left.road_edge, right.road_edge, road, ROAD)
    # asphalt patches: darker/lighter repairs so the road is not one flat colour
    patches = []
    for _ in range(int(rng.integers(0, 5))):
        x = rng.uniform(-left.road_edge, right.road_edge - 1)
        z = rng.uniform(3, 60)
        patches.append((x, x + rng.uniform(0.8, 4), z, z + rng.uniform(1, 10)))
    ground_quads(scene, patches, road * rng.uniform(0.8, 1.15), None)
    for side in (left, right):
        s = side.sign
        sidewalk, curb = scene.color("sidewalk", 0.04), scene.color("curb", 0.03)
        yard_color = scene.color("terrain") if side.yard_terrain else sidewalk * 0.95
        yard_label = TERRAIN if side.yard_terrain else SIDEWALK
        ground_strip(scene, s * side.property_line, s * 400.0, yard_color, yard_label)
        ground_strip(scene, s * side.walk_in, s * side.property_line, sidewalk, SIDEWALK)
        if side.cycle_path:  # red cycle path on the road half of the sidewalk (still sidewalk)
            a = side.walk_in + 0.4
            ground_strip(scene, s * a, s * (a + 1.5), np.clip(sidewalk * (1.25, 0.8, 0.75), 0, 1), SIDEWALK)
        if side.verge > 0:
            ground_strip(scene, s * side.road_edge, s * side.walk_in, scene.color("terrain"), TERRAIN)
        ground_strip(scene, s * side.road_edge, s * (side.road_edge + 0.25), curb, SIDEWALK)
        # paving joints: a few transverse lines on the sidewalk
        joints = [(side.walk_in, side.property_line, z, z + 0.06) for z in np.arange(2.0, 60.0, 2.5)]
        ground_quads(
            scene,
            [(s * a, s * b, z0, z1) if s > 0 else (-b, -a, z0, z1) for a, b, z0, z1 in joints],
            sidewalk * 0.85,
            None,
        )
    if scene.plan.cross is not None:  # the cross street's asphalt runs out to both sides
        near, far = scene.plan.cross
        ground_strip(scene, -400.0, 400.0, road, ROAD, near, far)
    draw_markings(scene)
    if scene.plan.tram_x is not None:
        draw_rails(scene, scene.plan.tram_x)
    cast_shadows(scene)


def draw_markings(scene: Scene) -> None:
    rng = scene.rng
    white = scene.color("marking", 0.02)
    fade = rng.uniform(*scene.st.paint)  # how fresh the road paint is (1 = new)
    road = scene.st.palette["road"][0]
    white = white * fade + road * (1 - fade)
    quads = []
    period, dash = rng.uniform(8, 12), rng.uniform(2.5, 4.0)
    phase = rng.uniform(0, period)
    right_edge = scene.plan.sides[1].road_edge - (2.3 if scene.plan.sides[1].parking else 0)
    for i in range(1, scene.plan.n_lanes):
        x = right_edge - scene.plan.lane_w * i
        for z in np.arange(phase, 120.0, period):
            quads.append((x - 0.07, x + 0.07, z, z + dash))
    spans = [(Z_MIN, FAR)]
    if scene.plan.cross is not None:  # edge lines stop at the intersection
        spans = [(Z_MIN, scene.plan.cross[0]), (scene.plan.cross[1], FAR)]
    for side in scene.plan.sides.values():  # solid edge lines
        x = side.sign * (side.road_edge - (2.3 if side.parking else 0.0) - 0.3)
        quads += [(x - 0.07, x + 0.07, z0, z1) for z0, z1 in spans]
    if scene.plan.crosswalk is not None:
        z = scene.plan.crosswalk
        xs = np.arange(-scene.plan.sides[-1].road_edge + 0.3, scene.plan.sides[1].road_edge - 0.5, 1.0)
        quads += [(x, x + 0.5, z, z + 3.0) for x in xs]
    ground_quads(scene, quads, white, ROAD)


def draw_rails(scene: Scene, x: float) -> None:
    rails = []
    for dx in (-0.72, 0.72):
        rails.append((x + dx - 0.05, x + dx + 0.05, Z_MIN, 200.0))
    ground_quads(scene, rails, np.array([0.30, 0.29, 0.28], np.float32), ROAD)
    shine = [(a + 0.03, b - 0.03, z0, z1) for a, b, z0, z1 in rails]
    ground_quads(scene, shine, np.array([0.62, 0.60, 0.58], np.float32), ROAD)


def cast_shadows(scene: Scene) -> None:
    """Hard shadows of the buildings on the sunny side and of things out of view fall across the street
    (ground only)."""
    strength = scene.light_of_day.sun[2]
    if strength > 0.99:  # no sun, no shadows (night)
        return
    side = scene.plan.sides[int(scene.sun_x)]  # the buildings on the sun's side shade the street
    reach = scene.rng.uniform(0.15, 0.6) * scene.st.building_height[1] * 0.3
    x_far, x_near = side.building_line, side.building_line - reach
    pts = np.array([(x_far, 0, Z_MIN), (x_near, 0, Z_MIN), (x_near, 0, FAR), (x_far, 0, FAR)])
    pts[:, 0] *= side.sign
    polys = [pts] + offscreen_shadows(scene)
    mask = np.zeros(scene.canvas.lab.shape, np.uint8)
    cv2.fillPoly(mask, to_fixed_point([scene.cam.project(p) for p in polys]), 1, cv2.LINE_8, SHIFT)
    scene.canvas.img[mask.astype(bool)] *= strength


def offscreen_shadows(scene: Scene) -> list[np.ndarray]:
    """Ground polygons (x, 0, z) shaded by things the camera does not see: the long thin shadows of poles
    and the ragged ones of tree crowns and building corners, falling across the street away from the sun.
    On real sunny streets many of the dark shapes on the road are such shadows, not objects."""
    rng = scene.rng
    away = -scene.sun_x  # shadows point away from the sun's side
    polys = []
    for _ in range(scene.poisson("offscreen_shadow")):
        x = rng.uniform(-scene.plan.sides[-1].walk_in, scene.plan.sides[1].walk_in)
        z = rng.uniform(2.0, 35.0)
        if rng.random() < 0.5:  # a pole's shadow: a thin strip slanting across the road
            length, width = rng.uniform(5.0, 16.0), rng.uniform(0.12, 0.35)
            angle = rng.uniform(-0.6, 0.6)  # radians from straight across
            dx, dz = away * np.cos(angle), np.sin(angle)
            nx, nz = -dz * width / 2, dx * width / 2
            polys.append(
                np.array(
                    [
                        (x - nx, 0, z - nz),
                        (x + nx, 0, z + nz),
                        (x + nx + dx * length, 0, z + nz + dz * length),
                        (x - nx + dx * length, 0, z - nz + dz * length),
                    ]
                )
            )
        else:  # a crown's or a corner's shadow: a ragged blob metres across
            radius = rng.uniform(1.5, 5.0) * (1.0 + 0.35 * rng.standard_normal(16)).clip(0.5, 1.6)
            ring = UNIT_CIRCLE * radius[:, None] * (1.0, rng.uniform(0.4, 1.0))
            polys.append(np.stack([x + ring[:, 0], np.zeros(16), z + ring[:, 1]], -1))
    return [p for p in polys if p[:, 2].min() > Z_MIN]
