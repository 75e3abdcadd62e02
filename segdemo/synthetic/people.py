"""Pedestrians and riders: simple articulated figures drawn as flat billboards."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from segdemo.labels import (
    BICYCLE,
    MOTORCYCLE,
    PERSON,
    RIDER,
)
from segdemo.synthetic import twowheelers
from segdemo.synthetic.geometry import Billboard, ellipse
from segdemo.synthetic.scene import Draw, Scene


def plan_people(scene: Scene) -> None:
    rng, st = scene.rng, scene.st
    for _ in range(scene.poisson("person")):
        if scene.plan.crosswalk is not None and rng.random() < 0.25:
            x = rng.uniform(-scene.plan.sides[-1].road_edge, scene.plan.sides[1].road_edge)
            z = scene.plan.crosswalk + rng.uniform(0.3, 2.7)
        else:
            side = scene.plan.sides[-1 if rng.random() < st.people_side else 1]
            x = side.sign * rng.uniform(side.walk_in + 0.3, side.property_line - 0.3)
            z = rng.uniform(3, 50)
        scene.add(z, person_drawer(scene, x, z))
    for _ in range(scene.poisson("rider")):
        bicycle = rng.random() < st.p_rider_bicycle
        side = scene.plan.sides[-1 if rng.random() < 0.5 else 1]
        if bicycle and side.cycle_path and rng.random() < 0.7:
            x = side.sign * (side.walk_in + 1.1)
        else:
            x = side.sign * (side.road_edge - (2.3 if side.parking else 0) - rng.uniform(0.6, 1.5))
        z = rng.uniform(4, 45)
        view = "side" if rng.random() < 0.3 else "rear"
        scene.add(z, rider_drawer(scene, x, z, bicycle, view))
    for key, bicycle in (("parked_bicycle", True), ("parked_motorbike", False)):
        n = scene.poisson(key)
        if n == 0:
            continue
        side = scene.plan.sides[-1 if rng.random() < st.people_side else 1]
        x = side.sign * (side.property_line - rng.uniform(0.5, 1.0))
        z = rng.uniform(3, 35)
        for i in range(n):  # parked in a row (a bicycle rack)
            zi = z + i * (0.7 if bicycle else 1.1)
            color = scene.color("bicycle" if bicycle else "motorbike")
            facing = 1 if rng.random() < 0.5 else -1
            scene.add(zi, twowheelers.twowheeler_drawer(scene, x, zi, bicycle, "side", color, facing))


def person_colors(scene: Scene) -> dict[str, np.ndarray]:
    return {
        "skin": scene.color("skin", 0.04),
        "hair": scene.color("hair"),
        "top": scene.color("clothes"),
        "bottom": scene.color("trousers"),
        "shoes": scene.color("hair") * 0.6,
    }


def person_drawer(scene: Scene, x: float, z: float) -> Draw:
    rng = scene.rng
    height = rng.uniform(1.55, 1.95)
    if scene.has("child") and rng.random() < 0.15:
        height = rng.uniform(1.0, 1.35)
    coat = scene.has("coat") and rng.random() < 0.3
    view = "side" if rng.random() < 0.5 else "front"
    colors = person_colors(scene)
    facing = 1 if rng.random() < 0.5 else -1
    stride = rng.uniform(0.1, 0.45)
    backpack = rng.random() < 0.2

    def draw() -> None:
        foot, s = scene.billboard(x, z)
        s *= height / 1.75  # draw a 1.75 m reference figure, scaled
        outfit = Outfit(lit(scene, colors), PERSON, coat=coat, backpack=backpack)
        draw_figure(scene, Billboard(foot, s, facing), Pose(view, stride), outfit)

    return draw


def lit(scene: Scene, colors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Colours as lit on a face towards the camera (figures are flat billboards)."""
    light = scene.light["front"]
    return {k: np.clip(v * light, 0, 1) for k, v in colors.items()}


@dataclass(frozen=True)
class Pose:
    """``view`` "side" or "front" (front or back: see :func:`draw_figure`); the rest in local metres."""

    view: str
    stride: float = 0.0  # half the distance between the feet of a walker
    seated: tuple[float, float] | None = None  # hip position of a rider
    hands: tuple[float, float] | None = None  # where a rider holds the handlebar
    feet: tuple[float, float] | None = None  # a rider's foot on the pedal


@dataclass(frozen=True)
class Outfit:
    """Colours (skin, hair, top, bottom, shoes; already lit), the label drawn, and what the figure wears."""

    colors: dict[str, np.ndarray]
    label: int
    coat: bool = False
    backpack: bool = False
    helmet: np.ndarray | None = None


class Joints(NamedTuple):
    """Where a figure's hip, shoulder and head are (local metres), and whether its face shows."""

    hip: tuple[float, float]
    shoulder: tuple[float, float]
    head: tuple[float, float]
    face_visible: bool


def draw_figure(scene: Scene, at: Billboard, pose: Pose, outfit: Outfit) -> None:
    """A person from simple parts: legs, torso, arms, neck and head (or helmet).

    In the front/back view, facing +1 shows the face and -1 the back of the head.
    """
    face_visible = pose.view == "side" or at.facing > 0
    hip = pose.seated or (0.0, 0.92)
    lean = 0.25 if pose.seated else 0.0
    shoulder = (hip[0] + lean, hip[1] + 0.53 - (0.05 if pose.seated else 0))
    head = (shoulder[0] + 0.04 + lean * 0.3, shoulder[1] + 0.2)
    joints = Joints(hip, shoulder, head, face_visible)
    if pose.view == "side":
        _side_body(scene, at, pose, outfit, joints)
    else:
        at = replace(at, facing=1)  # from here on, front and back are drawn alike
        _front_body(scene, at, pose, outfit, joints)
    _neck_and_head(scene, at, pose.view, outfit, joints)


def _side_body(scene: Scene, at: Billboard, pose: Pose, outfit: Outfit, joints: Joints) -> None:
    hip, shoulder = joints.hip, joints.shoulder
    c, label, stride = outfit.colors, outfit.label, pose.stride
    if pose.seated:
        knee = (hip[0] + 0.35, hip[1] - 0.2)
        scene.limb(at, hip, knee, 0.15, c["bottom"], label)
        scene.limb(at, knee, pose.feet or (0.0, 0.3), 0.12, c["bottom"], label)
    else:
        for sgn, shade in ((1, 0.8), (-1, 1.0)):
            scene.limb(at, hip, (sgn * stride, 0.08), 0.14, c["bottom"] * shade, label)
            scene.limb(at, (sgn * stride, 0.05), (sgn * stride + 0.12, 0.03), 0.08, c["shoes"], label)
    torso = [
        (hip[0] - 0.12, hip[1]),
        (hip[0] + 0.12, hip[1]),
        (shoulder[0] + 0.11, shoulder[1]),
        (shoulder[0] - 0.12, shoulder[1]),
    ]
    if outfit.coat:
        torso = [(hip[0] - 0.2, 0.35), (hip[0] + 0.2, 0.35), *torso[2:]]
    scene.canvas.fill([at.screen(torso)], c["top"], label)
    if outfit.backpack:
        pack = [
            (-0.12, hip[1] + 0.15),
            (-0.3, hip[1] + 0.2),
            (-0.28, shoulder[1] - 0.02),
            (-0.1, shoulder[1]),
        ]
        scene.canvas.fill([at.screen(pack)], c["hair"] * 0.8 + 0.1, label)
    hand = pose.hands or (shoulder[0] + stride * 0.8, hip[1] - 0.1)
    scene.limb(at, (shoulder[0], shoulder[1] - 0.05), hand, 0.09, c["top"] * 0.85, label)


def _front_body(scene: Scene, at: Billboard, pose: Pose, outfit: Outfit, joints: Joints) -> None:
    hip, shoulder, face_visible = joints.hip, joints.shoulder, joints.face_visible
    c, label = outfit.colors, outfit.label
    for sgn in (-1, 1):
        if pose.seated:
            scene.limb(at, (sgn * 0.1, hip[1]), (sgn * 0.17, hip[1] - 0.35), 0.13, c["bottom"], label)
            scene.limb(at, (sgn * 0.17, hip[1] - 0.35), (sgn * 0.15, 0.3), 0.11, c["bottom"], label)
        else:
            scene.limb(at, (sgn * 0.09, hip[1]), (sgn * 0.09, 0.08), 0.13, c["bottom"], label)
            scene.limb(at, (sgn * 0.09, 0.06), (sgn * 0.09, 0.0), 0.12, c["shoes"], label)
    w_sh, w_hip = 0.21, 0.16
    torso = [(-w_hip, hip[1]), (w_hip, hip[1]), (w_sh, shoulder[1]), (-w_sh, shoulder[1])]
    if outfit.coat:
        torso = [(-0.22, 0.35), (0.22, 0.35), (w_sh, shoulder[1]), (-w_sh, shoulder[1])]
    for sgn in (-1, 1):
        hand = (sgn * 0.3, pose.hands[1]) if pose.hands else (sgn * 0.26, hip[1] - 0.12)
        scene.limb(at, (sgn * (w_sh - 0.03), shoulder[1] - 0.04), hand, 0.09, c["top"] * 0.85, label)
    scene.canvas.fill([at.screen(torso)], c["top"], label)
    if outfit.backpack and not face_visible:
        pack = [
            (-0.15, hip[1] + 0.12),
            (0.15, hip[1] + 0.12),
            (0.16, shoulder[1] - 0.05),
            (-0.16, shoulder[1] - 0.05),
        ]
        scene.canvas.fill([at.screen(pack)], c["hair"] * 0.8 + 0.1, None)


def _neck_and_head(scene: Scene, at: Billboard, view: str, outfit: Outfit, joints: Joints) -> None:
    shoulder, head, face_visible = joints.shoulder, joints.head, joints.face_visible
    c, label, s, facing = outfit.colors, outfit.label, at.scale, at.facing
    neck = [
        (head[0] - 0.04, shoulder[1] - 0.02),
        (head[0] + 0.04, shoulder[1] - 0.02),
        (head[0] + 0.04, head[1] - 0.08),
        (head[0] - 0.04, head[1] - 0.08),
    ]
    scene.canvas.fill([at.screen(neck)], c["skin"], label)
    hx, hy = at.screen([head])[0]
    r = 0.105 * s
    if outfit.helmet is not None:
        scene.canvas.fill([ellipse(hx, hy - 0.01 * s, r * 1.25, r * 1.15)], outfit.helmet, label)
        return
    scene.canvas.fill([ellipse(hx, hy, r * 0.9, r * 1.1, 12)], c["skin"], label)
    hair = ellipse(hx - (0.02 * s * facing if view == "side" else 0), hy - 0.03 * s, r * 0.95, r * 0.9, 12)
    if view == "side":  # keep the face visible: hair covers the back and top
        hair = hair[(hair[:, 0] - hx) * facing < 0.35 * r]
    elif face_visible:  # seen from the front: only the top of the head
        hair = hair[hair[:, 1] < hy - 0.3 * r]
    scene.canvas.fill([hair], c["hair"], label)


def rider_drawer(scene: Scene, x: float, z: float, bicycle: bool, view: str) -> Draw:
    color = scene.color("bicycle" if bicycle else "motorbike")
    colors = person_colors(scene)
    helmet = scene.color("helmet") if (not bicycle or scene.rng.random() < 0.3) else None
    facing = 1 if scene.rng.random() < 0.5 else -1
    return lambda: draw_rider(scene, x, z, bicycle, view, color, colors, helmet, facing)


def draw_rider(
    scene: Scene,
    x: float,
    z: float,
    bicycle: bool,
    view: str,
    color: np.ndarray,
    colors: dict[str, np.ndarray],
    helmet: np.ndarray | None,
    facing: int,
) -> None:
    foot, s = scene.billboard(x, z)
    light = scene.light["front"]
    outfit = Outfit(
        lit(scene, colors), RIDER, helmet=None if helmet is None else np.clip(helmet * light, 0, 1)
    )
    twowheelers.draw_twowheeler(scene, foot, s, bicycle, view, np.clip(color * light, 0, 1), facing)
    if view == "side":
        if bicycle:
            pose = Pose("side", seated=(-0.2, 0.95), hands=(0.36, 1.0), feet=(-0.02, 0.25))
        else:
            pose = Pose("side", seated=(-0.25, 0.9), hands=(0.5, 1.05), feet=(0.05, 0.35))
        draw_figure(scene, Billboard(foot, s, facing), pose, outfit)
    else:  # seen from behind
        pose = Pose("front", seated=(0.0, 0.95 if bicycle else 0.9), hands=(0.3, 1.0))
        draw_figure(scene, Billboard(foot, s, -1), pose, outfit)
    if view == "rear":  # the rear wheel and mudguard show below/through the rider's legs
        w = 0.05 if bicycle else 0.14
        wheel = Billboard(foot, s, 1).screen([(-w, 0.0), (w, 0.0), (w, 0.55), (-w, 0.55)])
        scene.canvas.fill(
            [wheel], np.array([0.08, 0.08, 0.09], np.float32), BICYCLE if bicycle else MOTORCYCLE
        )
