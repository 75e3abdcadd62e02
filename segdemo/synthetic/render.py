"""One scene from a generator: plan the street and its objects, draw them far to near, apply the camera
look."""

from __future__ import annotations

import numpy as np

from segdemo.synthetic import ego, furniture, ground, people, roadside, vehicles
from segdemo.synthetic.look import apply_light, camera_look, compress, headlight_beam, surface_texture
from segdemo.synthetic.scene import Scene
from segdemo.synthetic.styles import STYLES

DEFAULT_SIZE: tuple[int, int] = (320, 160)
"""(width, height) of generated images; width = 2 * height like Cityscapes."""

DOMAINS: tuple[str, ...] = ("source", "target")

MIN_SIZE = (32, 16)


def draw(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Plan every object of ``scene`` and draw it: (float RGB image, trainIds). The order of the calls is the
    order the generator is drawn from, so it fixes the output of a seed."""
    roadside.plan_roadside(scene)
    furniture.plan_poles(scene)
    vehicles.plan_vehicles(scene)
    people.plan_people(scene)
    ground.draw_sky(scene)
    ground.draw_skyline(scene)
    ground.draw_ground(scene)
    # roadside layer: far to near; street layer: far to near by the nearest depth of each object
    for layer in (scene.background, scene.items):
        for _, _, draw_one in sorted(layer, key=lambda item: (-item[0], item[1])):
            draw_one()
    ego.draw_ego(scene)  # the camera's own bonnet, handlebars or player: nearest of all
    return scene.canvas.img, scene.canvas.lab


def render_scene(
    rng: np.random.Generator, domain: str, size: tuple[int, int] = DEFAULT_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Render one street scene -> (image H x W x 3 uint8 RGB, trainIds H x W uint8 in 0..18 or 255).

    ``domain`` is ``"source"`` (game-like) or ``"target"`` (photo-like); ``size`` is (width, height).
    """
    if domain not in STYLES:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    width, height = check_size(size)
    style = STYLES[domain]
    scene = Scene(rng, style, width, height)
    img, lab = draw(scene)
    img = surface_texture(img, lab, style, rng)
    beam = headlight_beam(scene.cam, lab.shape, scene.headlights) if scene.headlights else None
    img = apply_light(
        img, lab, scene.light_of_day, scene.canvas.emit, scene.lamp_pools, scene.cam.horizon, beam
    )
    img = camera_look(img, rng, style.camera, scene.cam.horizon)
    return compress((np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), rng, style.camera), lab


def check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (width, height), got {size!r}") from None
    if width < MIN_SIZE[0] or height < MIN_SIZE[1]:
        raise ValueError(f"size must be at least {MIN_SIZE[0]}x{MIN_SIZE[1]}, got {width}x{height}")
    return width, height
