"""What of the camera's own vehicle or character is in view: a car bonnet, a motorbike's handlebars, or (in a
game's third-person view) the player walking ahead of the camera.

The bonnet and handlebars are labelled ignore (255), as the ego vehicle is in Cityscapes and GTA5; the
player is a person.
"""

from __future__ import annotations

import numpy as np

from segdemo.labels import IGNORE_INDEX, PERSON
from segdemo.synthetic import people
from segdemo.synthetic.geometry import Billboard, ellipse
from segdemo.synthetic.scene import PLAYER_DISTANCE, Scene

EGO_VIEWS = ("none", "hood", "handlebars", "third_person")


def draw_ego(scene: Scene) -> None:
    """Draw the scene's ego view (``scene.ego``) over everything else."""
    if scene.ego == "hood":
        draw_hood(scene)
    elif scene.ego == "handlebars":
        draw_handlebars(scene)
    elif scene.ego == "third_person":
        draw_player(scene)


def draw_hood(scene: Scene) -> None:
    """The bonnet: a paint-coloured bulge across the bottom, lower at the sides, with the sky's reflection
    along its edge."""
    rng, w, h = scene.rng, scene.w, scene.h
    top = h * (1.0 - rng.uniform(0.07, 0.17))
    droop = rng.uniform(0.04, 0.12) * h  # how much lower the edge is at the image sides
    xs = np.linspace(-0.05 * w, 1.05 * w, 24)
    centre = w * rng.uniform(0.45, 0.55)
    edge = top + droop * ((xs - centre) / (0.55 * w)) ** 2
    paint = scene.color("car") * scene.light["top"]
    body = np.concatenate([np.stack([xs, edge], -1), [(1.05 * w, h + 2), (-0.05 * w, h + 2)]])
    scene.canvas.fill([body], paint * 0.8, IGNORE_INDEX)
    # a glossy band: the sky mirrored near the edge of the bonnet
    band = max(1.5, 0.02 * h)
    sheen = np.concatenate([np.stack([xs, edge], -1), np.stack([xs[::-1], edge[::-1] + band], -1)])
    sky = scene.st.palette["sky_low"][0]
    scene.canvas.fill([sheen], np.clip(paint * 0.5 + sky * 0.5, 0, 1), None)


def draw_handlebars(scene: Scene) -> None:
    """First person on a motorbike: the dashboard in the middle, bars and grips reaching to the sides."""
    rng, w, h = scene.rng, scene.w, scene.h
    dark = np.array([0.06, 0.06, 0.07], np.float32) * scene.light["front"]
    trim = scene.color("motorbike") * scene.light["top"]
    dash_top = h * rng.uniform(0.78, 0.86)
    dash_w = w * rng.uniform(0.2, 0.3)
    cx = w * rng.uniform(0.45, 0.55)
    dash = np.array(
        [
            (cx - dash_w / 2, dash_top),
            (cx + dash_w / 2, dash_top),
            (cx + dash_w * 0.8, h + 2),
            (cx - dash_w * 0.8, h + 2),
        ]
    )
    scene.canvas.fill([dash], trim * 0.6, IGNORE_INDEX)
    bar_y = h * rng.uniform(0.9, 0.96)
    thickness = max(2.0, 0.03 * h)
    bars = np.array([(-0.02 * w, bar_y + 0.03 * h), (cx - dash_w * 0.6, bar_y), (cx + dash_w * 0.6, bar_y)])
    bars = np.concatenate([bars, [(1.02 * w, bar_y + 0.03 * h)]])
    scene.canvas.lines([bars], dark, IGNORE_INDEX, thickness)
    for gx in (0.0, w):  # the rider's gloved hands on the grips
        scene.canvas.fill([ellipse(gx, bar_y + 0.03 * h, 0.05 * w, 0.05 * h)], dark * 1.5, IGNORE_INDEX)


def draw_player(scene: Scene) -> None:
    """Third person: the player walks a few metres ahead of the camera, seen from behind, cut by the
    bottom of the image."""
    rng = scene.rng
    z = rng.uniform(*PLAYER_DISTANCE)
    x = rng.uniform(-0.7, 0.7)
    height = rng.uniform(1.7, 1.9)
    colors = people.lit(scene, people.person_colors(scene))
    foot, s = scene.billboard(x, z)
    at = Billboard(foot, s * height / 1.75, facing=-1)  # facing away: the back of the head
    pose = people.Pose("front", stride=rng.uniform(0.05, 0.25))
    people.draw_figure(scene, at, pose, people.Outfit(colors, PERSON, backpack=rng.random() < 0.15))
