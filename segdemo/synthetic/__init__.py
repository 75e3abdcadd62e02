"""Procedural two-domain street scenes: the project's embedded stand-in for GTA5 -> Cityscapes.

Every image is a small 3-D street (pinhole camera over a flat ground plane) rendered with
numpy + OpenCV polygons, painter's algorithm far to near. The label map is drawn with the very
same polygons, so labels are exact; all 19 Cityscapes training classes occur, and ignore (255) is
only the camera's own vehicle (its bonnet or handlebars at the bottom), as in the real data sets.

Each domain is a spread of scenes rather than one look (domain randomisation): every scene draws
its time of day, what of the camera's own vehicle shows, its camera (exposure, tone curve, white
balance, saturation, contrast, haze, vignetting, blur, motion blur, noise, JPEG) and its surface
wear from its domain's ranges (``styles.CameraRanges``, ``look.sample_light``). Two domains
differ the way the real pair does:

* ``"source"`` (GTA5-like, written in the GTA5 layout): by day saturated, warm, bright, hard
  sunlight with strong face shading and cast shadows (of the buildings, and of poles and tree crowns
  out of view across the street), crisp aliased edges; a fifth of the scenes at dusk (low warm
  light, long shadows) and a quarter at night (dim blue ambient, lit windows, street lamps whose
  pools light the carriageway, the camera vehicle's low beams on the road ahead, head and tail
  lights, bloom, a dim city glow in the sky: the lit road is the brightest surface). Seen from a car
  with its bonnet in view, a motorbike's handlebars, on foot behind the player (GTA5's third-person
  view: a person cut by the bottom edge) or with nothing in view, from cameras of many heights. Wide
  multi-lane roads, often an intersection ahead where the roadside opens to the sky; low and high
  buildings set back from the street; parked cars, wide sidewalk and tree rows mostly on the right;
  many cars, trucks and buses, few pedestrians; riders mostly on motorcycles; palm trees and glass
  office towers.
* ``"target"`` (Cityscapes-like, written in the Cityscapes layout): daytime only, cooler, greyer,
  darker and flatter (overcast light, per-image white balance, lifted blacks, vignetting), slight
  blur, sensor noise and finer surface textures, the car's bonnet at the bottom of nearly every
  frame. A lower, narrower-angle camera, narrower roads and
  wider sidewalks on both sides with the parking and bicycles biased to the left (and many
  one-way streets driven in the left lane), many more pedestrians and cyclists, few trucks, more
  trams. Shape and texture variants the source never
  shows: hatchbacks and vans, articulated buses, children and long coats, conifers, brick
  facades, pitched roofs, shop awnings, lattice fences, rectangular signs, on-sidewalk cycle
  paths.

Speed (one core, 320x160; generator version 2 on a 2-core Intel Xeon with AMX, 2026-12-02)::

    OMP_NUM_THREADS=1 python -c "import time, numpy as np; from segdemo.synthetic import render_scene; \
t = time.perf_counter(); [render_scene(np.random.default_rng(i), d) for i in range(100) \
for d in ('source', 'target')]; print(200 * 60 / (time.perf_counter() - t), 'images/minute')"

gave about 1500 images/minute (rendering only, both domains alternating; version 1 gave about 2000 on an
earlier machine). Writing PNGs as well, ``OMP_NUM_THREADS=1 python -m segdemo.synthetic --out /tmp/gen
--n-source 100 --n-target-train 80 --n-target-val 20`` took 10.6 s for the 200 images, about 1130
images/minute (the demo writes its 1,300 with one process per core: 40 s on two cores).

API: :func:`render_scene` (one image + trainIds), :func:`generate` (both data sets on disk),
:func:`scene_rng` (the per-image generator ``generate`` uses), :func:`is_complete` (is a generation
(or one of its :data:`PARTS`) finished, by this :data:`GENERATOR_VERSION`?), :func:`generator_version`
(which version wrote a data root), :func:`is_procedural` (is a data root ours?). The package's
parts, each readable on its own:

* ``styles``: what differs between the domains (palettes, layout, frequencies, light, texture, and
  the ranges of time of day, ego view and camera that each scene draws from);
* ``plan``: the street plan (lanes, sides, tram line, cross street) as a data object;
* ``geometry`` and ``scene``: the camera, the canvas and the drawing primitives;
* one module per object family: ``ground``, ``roadside``, ``trees``, ``furniture``, ``vehicles``,
  ``people``, ``twowheelers``;
* ``ego`` (the camera's own bonnet or handlebars, or the game's player walking ahead);
* ``render`` (plan and draw one scene), ``look`` (each scene's light and camera look);
* ``writer`` (the two data sets on disk) and ``cli``.

Command line::

    python -m segdemo.synthetic --out data/synthetic --seed 0 [--n-source N --n-target-train N
        --n-target-val N --size 320x160 --progress]
"""

from segdemo.labels import (
    BICYCLE,
    BUILDING,
    CAR,
    PERSON,
    ROAD,
    SIDEWALK,
    SKY,
    TRUCK,
    VEGETATION,
)
from segdemo.synthetic.cli import main
from segdemo.synthetic.render import DEFAULT_SIZE, DOMAINS, MIN_SIZE, render_scene
from segdemo.synthetic.writer import (
    CITIES,
    FRAME,
    GENERATOR_VERSION,
    PARTS,
    cityscapes_stem,
    generate,
    generator_version,
    is_complete,
    is_procedural,
    scene_rng,
    train_ids_to_label_ids,
)

__all__ = [
    "BICYCLE",
    "BUILDING",
    "CAR",
    "CITIES",
    "DEFAULT_SIZE",
    "DOMAINS",
    "FRAME",
    "GENERATOR_VERSION",
    "MIN_SIZE",
    "PARTS",
    "PERSON",
    "ROAD",
    "SIDEWALK",
    "SKY",
    "TRUCK",
    "VEGETATION",
    "cityscapes_stem",
    "generate",
    "generator_version",
    "is_complete",
    "is_procedural",
    "main",
    "render_scene",
    "scene_rng",
    "train_ids_to_label_ids",
]
