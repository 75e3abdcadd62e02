"""The scene under construction and the drawing primitives every object family uses."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from segdemo.synthetic.geometry import Z_MIN, Billboard, Camera, Canvas
from segdemo.synthetic.look import sample_light
from segdemo.synthetic.plan import plan_street
from segdemo.synthetic.styles import DomainStyle, choose

Draw = Callable[[], None]

# A game's on-foot (third-person) camera follows the player at about head height, so the player stands tall
# in the frame with the head near the horizon (not a driver's camera looking down on a small figure).
PLAYER_CAMERA_HEIGHT = (1.6, 2.1)
"""Metres above the road of a third-person camera."""
PLAYER_DISTANCE = (1.7, 2.8)
"""Metres from a third-person camera to the player it follows."""


class Scene:
    """One scene being built: its generator, style, camera, canvas, street plan and the queue of objects to
    draw.

    Object families (ground, roadside, trees, furniture, vehicles, people, two-wheelers) plan by queuing
    draw calls with :meth:`add` and draw with the primitives below; :func:`segdemo.synthetic.render.draw`
    runs the queue far to near (painter's algorithm).
    """

    def __init__(self, rng: np.random.Generator, style: DomainStyle, width: int, height: int) -> None:
        self.rng, self.st, self.w, self.h = rng, style, width, height
        self.has = style.variants.__contains__
        u = rng.uniform
        self.cam = Camera(
            focal=u(*style.focal) * width,
            cx=width * (0.5 + u(-1, 1) * style.principal_jitter),
            horizon=u(*style.horizon) * height,
            height=u(*style.cam_height),
        )
        self.light_of_day = sample_light(rng, style)
        self.canvas = Canvas(width, height, glowing=self.light_of_day.glowing)
        self.lamp_pools: np.ndarray | None = None  # where street lamps light the ground (dusk, night)
        self.ego = choose(rng, style.ego)
        # the height drawn again, not the camera drawn after the ego: the seed's other draws keep their order
        if self.ego == "third_person":
            self.cam = Camera(self.cam.f, self.cam.cx, self.cam.horizon, u(*PLAYER_CAMERA_HEIGHT))
        # after dark a driven camera vehicle has its low beams on (walking in third person, nothing to light)
        self.headlights = 0.0
        if self.light_of_day.glowing and self.ego != "third_person":
            self.headlights = u(0.5, 1.0) if self.light_of_day.time == "night" else u(0.15, 0.4)
        self.sun_x = 1.0 if rng.random() < 0.5 else -1.0  # the sun is on the right (+1) or left side
        lit, shade, _ = self.light_of_day.sun
        # brightness of a face by the direction its outward normal points
        self.light = {
            "front": (lit + shade) / 2 + 0.05,
            "top": lit + 0.05,
            "bottom": shade * 0.6,
            "right": lit if self.sun_x > 0 else shade,
            "left": shade if self.sun_x > 0 else lit,
        }
        self.items: list[tuple[float, int, Draw]] = []  # street layer: (depth, tie-break, draw)
        self.background: list[tuple[float, int, Draw]] = []  # roadside layer
        self.plan = plan_street(rng, style)

    # --- small helpers ---------------------------------------------------------------------
    def color(self, material: str, spread: float = 0.06) -> np.ndarray:
        options = self.st.palette[material]
        base = options[self.rng.integers(len(options))]
        tint = 1.0 + self.rng.normal(0.0, spread, 3)
        gain = 1.0 + self.rng.normal(0.0, spread * 1.3)
        return np.clip(base * tint * gain, 0.0, 1.0).astype(np.float32)

    def poisson(self, key: str) -> int:
        return int(self.rng.poisson(self.st.counts[key]))

    def add(self, depth: float, draw: Draw, background: bool = False) -> None:
        layer = self.background if background else self.items
        layer.append((depth, len(layer), draw))

    def face(
        self,
        pts3d: np.ndarray,
        normal: tuple[float, float, float],
        color: np.ndarray,
        label: int | None,
        shade: str | None = None,
    ) -> bool:
        """Draw a planar 3-D polygon if it faces the camera; shade by its orientation."""
        pts3d = np.asarray(pts3d, np.float64)
        if not self.cam.sees(np.asarray(normal, np.float64), pts3d[0]):
            return False
        factor = self.light[shade] if shade else 1.0
        self.canvas.fill([self.cam.project(pts3d)], np.clip(color * factor, 0, 1), label)
        return True

    def box(
        self,
        x0: float,
        x1: float,
        y0: float,
        y1: float,
        z0: float,
        z1: float,
        color: np.ndarray,
        label: int,
        top_color: np.ndarray | None = None,
    ) -> list[str]:
        """Axis-aligned box; returns the names of the faces that were drawn."""
        behind = z0 < Z_MIN  # the box starts behind the camera: its front face is not in view
        z0 = max(z0, Z_MIN)
        drawn = []
        faces = {
            "front": ([(x0, y0, z0), (x1, y0, z0), (x1, y1, z0), (x0, y1, z0)], (0, 0, -1)),
            "right": ([(x1, y0, z0), (x1, y0, z1), (x1, y1, z1), (x1, y1, z0)], (1, 0, 0)),
            "left": ([(x0, y0, z0), (x0, y0, z1), (x0, y1, z1), (x0, y1, z0)], (-1, 0, 0)),
            "top": ([(x0, y1, z0), (x1, y1, z0), (x1, y1, z1), (x0, y1, z1)], (0, 1, 0)),
            "bottom": ([(x0, y0, z0), (x1, y0, z0), (x1, y0, z1), (x0, y0, z1)], (0, -1, 0)),
        }
        if behind:
            del faces["front"]
        for name, (pts, normal) in faces.items():
            c = top_color if (name == "top" and top_color is not None) else color
            if self.face(np.array(pts), normal, c, label, shade=name):
                drawn.append(name)
        return drawn

    def billboard(self, x: float, z: float) -> tuple[np.ndarray, float]:
        """Screen position of a ground point and pixels per metre there (for flat upright objects)."""
        foot = self.cam.project(np.array([x, 0.0, z]))
        return foot, self.cam.f / max(z, Z_MIN)

    def limb(
        self,
        at: Billboard,
        a: tuple[float, float],
        b: tuple[float, float],
        width: float,
        color: np.ndarray,
        label: int,
    ) -> None:
        """A straight stroke ``width`` metres thick between two points of a flat figure (local metres)."""
        self.canvas.lines([at.screen([a, b])], color, label, max(1.0, width * at.scale))
