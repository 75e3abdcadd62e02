"""The roadside: buildings (facades, roofs, shop fronts), gaps between them, and the walls,
fences and hedges on the property line."""

from __future__ import annotations

import numpy as np

from segdemo.labels import (
    BUILDING,
    FENCE,
    VEGETATION,
    WALL,
)
from segdemo.synthetic import trees
from segdemo.synthetic.geometry import FAR, Z_MIN, ellipse
from segdemo.synthetic.plan import Side
from segdemo.synthetic.scene import Draw, Scene


def plan_roadside(scene: Scene) -> None:
    for side in scene.plan.sides.values():
        z = scene.rng.uniform(-8.0, 4.0)
        while z < FAR - 20:
            length = scene.rng.uniform(10, 35)
            if scene.plan.crosses(z, z + length):  # the block ends at the cross street
                near, far = scene.plan.cross
                if near - z > 3.0:
                    plan_building(scene, side, z, near)
                z = far
                continue
            if scene.rng.random() < scene.st.p_gap:  # a gap: side street or garden with trees behind
                gap = scene.rng.uniform(4, 14)
                plan_gap(scene, side, z, z + gap)
                z += gap
            plan_building(scene, side, z, z + length)
            z += length
        plan_property_line(scene, side)
        trees.plan_tree_row(scene, side)


def plan_building(scene: Scene, side: Side, z0: float, z1: float) -> None:
    h = scene.rng.uniform(*scene.st.building_height)
    if scene.has("glass_tower") and scene.rng.random() < 0.15:
        h = scene.rng.uniform(40, 80)
        style = "glass"
    elif scene.has("brick") and scene.rng.random() < 0.35:
        style = "brick"
    else:
        style = "plain"
    line = side.building_line + scene.rng.uniform(0, 0.8)
    scene.add(z0, lambda: draw_building(scene, side, line, z0, z1, h, style), background=True)


def draw_building(scene: Scene, side: Side, line: float, z0: float, z1: float, h: float, style: str) -> None:
    s, rng = side.sign, scene.rng
    depth = 14.0
    x0, x1 = (-line - depth, -line) if s < 0 else (line, line + depth)
    wall = scene.color("brick" if style == "brick" else "glass_facade" if style == "glass" else "building")
    facade = "right" if s < 0 else "left"  # the face looking at the street
    pitched = scene.has("pitched_roof") and style != "glass" and rng.random() < 0.5
    if pitched:
        draw_roof(scene, side, line, depth, z0, z1, h)
    drawn = scene.box(x0, x1, 0.0, h, z0, z1, wall, BUILDING)
    # a cornice band along the top and a darker plinth at street level
    band = wall * rng.uniform(0.75, 1.2)
    fx = line * s
    if facade in drawn:
        scene.face(
            np.array([(fx, h - 0.6, z0), (fx, h - 0.6, z1), (fx, h, z1), (fx, h, z0)]),
            (-s, 0, 0),
            band,
            None,
            shade=facade,
        )
        scene.face(
            np.array([(fx, 0, z0), (fx, 0, z1), (fx, 0.5, z1), (fx, 0.5, z0)]),
            (-s, 0, 0),
            wall * 0.7,
            None,
            shade=facade,
        )
        facade_details(scene, side, fx, z0, z1, h, wall, style, facade)
    if "front" in drawn and z0 > 2:
        front_windows(scene, x0, x1, z0, h, style)


def draw_roof(scene: Scene, side: Side, line: float, depth: float, z0: float, z1: float, h: float) -> None:
    s = side.sign
    rise = scene.rng.uniform(3.0, 5.5)
    eave, ridge = line * s, (line + depth / 2) * s
    roof = scene.color("roof")
    slope = np.array([(eave, h, z0), (eave, h, z1), (ridge, h + rise, z1), (ridge, h + rise, z0)])
    normal = (-s * rise, depth / 2, 0.0)
    scene.face(slope, normal, roof, BUILDING, shade="top")
    gable = np.array([(eave, h, z0), (ridge, h + rise, z0), ((line + depth) * s, h, z0)])
    scene.face(gable, (0, 0, -1), roof * 0.8, BUILDING, shade="front")


def facade_details(
    scene: Scene,
    side: Side,
    fx: float,
    z0: float,
    z1: float,
    h: float,
    wall: np.ndarray,
    style: str,
    shade: str,
) -> None:
    rng, cam = scene.rng, scene.cam
    s = side.sign
    normal = (-s, 0.0, 0.0)
    if not cam.sees(np.array(normal), np.array([fx, 0.0, z0])):
        return
    z_cut = min(z1, cam.f)  # beyond this depth a ~1.2 m window is about a pixel: skip them
    zs0 = max(z0, 1.0)
    if zs0 >= z_cut:
        return
    light = scene.light[shade]
    if style == "brick":  # mortar courses: the texture the source never shows
        ys = np.arange(0.35, h, 0.35)
        segs = [np.array([(fx, y, zs0), (fx, y, min(z1, 60.0))]) for y in ys]
        scene.canvas.lines([cam.project(p) for p in segs], wall * 0.6 * light, None, 1)
    if style == "glass":
        # curtain wall: mullion grid on a reflective facade
        segs = [np.array([(fx, 0, z), (fx, h, z)]) for z in np.arange(zs0, z_cut, 1.6)]
        segs += [np.array([(fx, y, zs0), (fx, y, z_cut)]) for y in np.arange(3.0, h, 3.2)]
        scene.canvas.lines([cam.project(p) for p in segs], wall * 0.55 * light, None, 1)
        return
    floor_h = rng.uniform(3.0, 3.6)
    win_w, win_h = rng.uniform(0.9, 1.5), rng.uniform(1.2, 1.8)
    spacing = rng.uniform(2.4, 3.6)
    glass = [scene.color("window") * light * k for k in (0.8, 1.0, 1.3)]
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
            scene.canvas.fill(polys, c, None)
    light_windows(scene, groups[0] + groups[1] + groups[2], "window")
    # ground floor: shop windows and doors, with awnings in the target
    shops = []
    awnings = []
    z = zs0 + rng.uniform(0.5, 3.0)
    while z < min(z_cut, 80.0):
        w = rng.uniform(1.5, 4.0)
        shops.append(np.array([(fx, 0.6, z), (fx, 0.6, z + w), (fx, 2.6, z + w), (fx, 2.6, z)]))
        if scene.has("awning") and rng.random() < 0.4:
            out = fx - s * 1.2
            awnings.append(
                (
                    np.array([(fx, 3.1, z), (fx, 3.1, z + w), (out, 2.5, z + w), (out, 2.5, z)]),
                    np.array([(out, 2.5, z), (out, 2.5, z + w), (out, 2.2, z + w), (out, 2.2, z)]),
                )
            )
        z += w + rng.uniform(1.0, 4.0)
    if shops:
        shop_windows = [cam.project(p) for p in shops]
        scene.canvas.fill(shop_windows, scene.color("window") * light * 0.8, None)
        light_windows(scene, shop_windows, "shop")
    if awnings:
        color = scene.color("awning")
        for slope, valance in awnings:
            scene.canvas.fill([cam.project(slope)], color * scene.light["top"], BUILDING)
            scene.canvas.fill([cam.project(valance)], color * scene.light["front"], BUILDING)


def front_windows(scene: Scene, x0: float, x1: float, z: float, h: float, style: str) -> None:
    """Windows on a building's end wall (seen where the row is interrupted)."""
    if style == "glass" or z > scene.cam.f:
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
    windows = list(scene.cam.project(quads))
    scene.canvas.fill(windows, scene.color("window") * scene.light["front"], None)
    light_windows(scene, windows, "window")


def light_windows(scene: Scene, windows: list[np.ndarray], kind: str) -> None:
    """After dark, some of the windows are lit (shop windows more often than homes)."""
    if scene.canvas.emit is None or not windows:
        return
    share = scene.rng.uniform(0.5, 0.9) if kind == "shop" else scene.rng.uniform(0.1, 0.45)
    chosen = scene.rng.random(len(windows)) < share
    scene.canvas.glow([w for w, on in zip(windows, chosen, strict=True) if on], kind)


def plan_gap(scene: Scene, side: Side, z0: float, z1: float) -> None:
    """Between buildings: a set-back building and/or trees, so the gap is not empty."""
    line = side.building_line + scene.rng.uniform(8, 20)
    h = scene.rng.uniform(*scene.st.building_height)
    scene.add(
        z0 + 0.01, lambda: draw_building(scene, side, line, z0 - 5, z1 + 5, h, "plain"), background=True
    )
    for _ in range(int(scene.rng.integers(1, 4))):
        z = scene.rng.uniform(z0, z1)
        x = side.sign * (side.building_line + scene.rng.uniform(1, 5))
        scene.add(z0 + 0.005, trees.tree_drawer(scene, x, z), background=True)  # after the building behind


def plan_property_line(scene: Scene, side: Side) -> None:
    """Walls, fences and hedges between the sidewalk and the front yards."""
    rng = scene.rng
    z = rng.uniform(0.0, 10.0)
    probs = np.array(scene.st.yard)
    x = side.sign * (side.property_line + 0.15)
    while z < 120.0:
        length = rng.uniform(6, 30)
        kind = ("wall", "fence", "hedge", "none")[int(rng.choice(4, p=probs / probs.sum()))]
        if kind != "none" and not scene.plan.crosses(z, z + length):
            # the roadside layer is painted largest key first: the property line is in front of every
            # building and gap, so it comes after all of them (generator 3 and older hid it behind them)
            scene.add(-1000.0 + z * 1e-3, structure_drawer(scene, kind, x, z, z + length), background=True)
        z += length + rng.uniform(0, 8)
    # a railing between sidewalk and road now and then
    if rng.random() < 0.2:
        z0 = rng.uniform(2, 30)
        z1 = z0 + rng.uniform(5, 20)
        rx = side.sign * (side.road_edge + 0.3)
        h, color = rng.uniform(0.9, 1.3), scene.color("fence")
        # short pieces, each depth-sorted on its own, so parked cars and people occlude it correctly
        for a in np.arange(z0, z1, 3.0):
            b = min(a + 3.0, z1)
            scene.add(a, lambda a=a, b=b: draw_fence(scene, rx, a, b, h, color, "bars"))


def structure_drawer(scene: Scene, kind: str, x: float, z0: float, z1: float) -> Draw:
    rng = scene.rng
    if kind == "wall":
        h, color = rng.uniform(0.7, 2.6), scene.color("wall")
        return lambda: scene.box(x - 0.15, x + 0.15, 0, h, z0, z1, color, WALL, top_color=color * 1.1)
    if kind == "hedge":
        h, color = rng.uniform(0.8, 2.0), scene.color("vegetation")
        return lambda: draw_hedge(scene, x, z0, z1, h, color)
    h = rng.uniform(1.0, 2.2)
    color = scene.color("fence")
    variant = (
        "lattice"
        if scene.has("lattice") and rng.random() < 0.5
        else ("mesh" if rng.random() < 0.5 else "bars")
    )
    return lambda: draw_fence(scene, x, z0, z1, h, color, variant)


def draw_hedge(scene: Scene, x: float, z0: float, z1: float, h: float, color: np.ndarray) -> None:
    scene.box(x - 0.4, x + 0.4, 0, h, z0, z1, color, VEGETATION, top_color=color * 1.15)
    # a bumpy top so hedges do not look like walls
    n = max(2, int((z1 - z0) / 1.2))
    zs = np.linspace(z0, z1, n)
    bumps = [
        ellipse(*scene.cam.project(np.array([x, h, z])), *(scene.cam.f / max(z, 1) * np.array([0.5, 0.3])))
        for z in zs
    ]
    scene.canvas.fill(bumps, color * scene.light["top"], VEGETATION)


def draw_fence(
    scene: Scene, x: float, z0: float, z1: float, h: float, color: np.ndarray, variant: str
) -> None:
    cam = scene.cam
    plane = np.array([(x, 0.05, max(z0, Z_MIN)), (x, 0.05, z1), (x, h, z1), (x, h, max(z0, Z_MIN))])
    poly = cam.project(plane)
    scene.canvas.blend([poly], color, 0.35 if variant != "bars" else 0.2, FENCE)
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
    scene.canvas.lines(posts + rails, color * 0.9, FENCE, min(thick, 3))
