"""Light and camera: each scene's time of day and camera look, drawn from its domain's ranges (domain
randomisation), and applied to the rendered image.

Both domains are spreads of looks rather than one fixed look each: the source (a game) is seen by day, at
dusk and at night, crisp or blurred, saturated or muted, sometimes JPEG-compressed; the target (a car
camera) by overcast day only, always grey, hazy, vignetted, soft and noisy. Per-class surface texture comes
first, then the light (ambient colour, lamp pools, head-light beams, glowing lights), then the camera.

After dark the street is lit from below the skyline, not from the sky: the lamps' pools and the camera
vehicle's low beams fall on the carriageway, so the road is the brightest surface in view and the sky a dim
glow above the roofs (as in GTA5's night frames and in night driving footage).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from segdemo.labels import IGNORE_INDEX, SKY
from segdemo.synthetic.geometry import EMISSIVE, Camera
from segdemo.synthetic.styles import CameraRanges, DomainStyle, choose

TIMES_OF_DAY = ("day", "dusk", "night")

_EMISSIVE_RGB = np.array([(0.0, 0.0, 0.0), *EMISSIVE.values()], np.float32)  # row 0: not glowing


@dataclass(frozen=True)
class Light:
    """The light of one scene: the sun's face factors, the ambient colour and whether lamps glow."""

    time: str  # one of TIMES_OF_DAY
    sun: tuple[float, float, float]  # (lit face, shaded face, cast shadow) brightness factors
    ambient: np.ndarray  # RGB gain on everything lit by the sky
    glowing: bool  # windows, street lamps, vehicle and traffic lights shine
    sky_glow: float = 0.0  # how much city light the sky scatters back after dark

    @property
    def lamp_density(self) -> float:
        """How much of the light the street lamps give (0 by day)."""
        return {"day": 0.0, "dusk": 0.35, "night": 1.0}[self.time]


def sample_light(rng: np.random.Generator, style: DomainStyle) -> Light:
    """The time of day of one scene and what its light looks like."""
    time = choose(rng, style.time_of_day)
    u = rng.uniform
    if time == "day":
        return Light(time, style.sun, np.ones(3, np.float32), glowing=False)
    if time == "dusk":  # low warm sun: softer faces, long shadows, orange cast
        level = u(0.4, 0.7)
        ambient = np.array([1.0, u(0.78, 0.88), u(0.6, 0.75)], np.float32) * level
        return Light(time, (1.1, 0.7, 0.62), ambient, glowing=True, sky_glow=u(0.8, 1.6))
    level = u(0.07, 0.18)  # night: no sun, a dim blue sky light, the lamps do the rest
    ambient = np.array([u(0.75, 0.9), u(0.85, 1.0), u(1.1, 1.35)], np.float32) * level
    return Light(time, (1.0, 0.92, 1.0), ambient, glowing=True, sky_glow=u(0.25, 1.1))


def headlight_beam(cam: Camera, shape: tuple[int, int], strength: float) -> np.ndarray:
    """How much the camera vehicle's low beams light each pixel (H x W, 0..``strength``): a cone on the ground
    ahead that widens and fades with distance, taken at the ground point behind each pixel."""
    h, w = shape
    rows = np.arange(h, dtype=np.float32)[:, None] - cam.horizon
    cols = np.arange(w, dtype=np.float32)[None, :] - cam.cx
    z = cam.f * cam.height / np.maximum(rows, 0.5)  # depth of the ground seen by each row
    x = cols * z / cam.f
    spread = 0.9 + 0.22 * z
    reach = np.clip((z - 1.5) / 3.0, 0, 1) * np.minimum(1.0, (10.0 / z) ** 1.5)
    return np.where(rows > 0.5, strength * reach * np.exp(-((x / spread) ** 2)), 0.0).astype(np.float32)


def surface_texture(
    img: np.ndarray, lab: np.ndarray, style: DomainStyle, rng: np.random.Generator
) -> np.ndarray:
    """Per-class surface texture at three scales (multiplicative luminance noise), as strong as the scene's
    draw from the domain's ``texture_gain``."""
    h, w = lab.shape
    gain = rng.uniform(*style.texture_gain)
    total = np.zeros((h, w), np.float32)
    for amp, step in zip(style.texture, (12, 4, 1), strict=True):
        field = rng.standard_normal((h // step + 2, w // step + 2)).astype(np.float32)
        if step > 1:
            field = cv2.resize(field, (w + 2 * step, h + 2 * step), interpolation=cv2.INTER_LINEAR)[
                step : step + h, step : step + w
            ]
        else:
            field = field[:h, :w]
        total += amp[lab] * field
    return img * (1.0 + gain * total)[..., None]


def apply_light(
    img: np.ndarray,
    lab: np.ndarray,
    light: Light,
    emit: np.ndarray | None,
    lamp_pools: np.ndarray | None,
    horizon: float,
    beam: np.ndarray | None = None,
) -> np.ndarray:
    """Light the rendered albedo: ambient colour, lamp pools and head-light beams on the ground (and on
    whatever stands there; not on the camera's own vehicle), glowing pixels with bloom."""
    if light.time == "day":
        return img
    h, w = lab.shape
    gain = np.broadcast_to(light.ambient, img.shape).copy()
    if lamp_pools is not None:  # warm light under the street lamps
        gain += lamp_pools[..., None] * np.array(EMISSIVE["lamp"], np.float32) * 0.8
    if beam is not None:
        gain += (beam * (lab != IGNORE_INDEX))[..., None] * np.array(EMISSIVE["headlight"], np.float32)
    out = img * gain
    # after dark the sky keeps a glow, the city's light on the haze (blue-grey overhead, warmer towards the
    # horizon), dimmer than the lit road
    rows = np.arange(h, dtype=np.float32)[:, None]
    low = np.exp(-np.clip(horizon - rows, 0, None) / (0.2 * h))[..., None]
    overhead = np.array([0.09, 0.11, 0.17], np.float32) * light.sky_glow
    sky = overhead * (1 - low) + np.array([0.2, 0.15, 0.12], np.float32) * light.sky_glow * low
    out += (lab == SKY)[..., None] * sky
    if emit is not None and emit.any():
        glowing = emit > 0
        colours = _EMISSIVE_RGB[emit]
        out[glowing] = np.maximum(out[glowing], colours[glowing] * 0.9)
        sigma = max(1.0, w / 160)
        bloom = cv2.GaussianBlur(colours, (0, 0), sigmaX=sigma * 2.5)
        out += bloom * (0.8 if light.time == "night" else 0.4)
    return out


def luma(img: np.ndarray) -> np.ndarray:
    return img @ np.array([0.299, 0.587, 0.114], np.float32)


def camera_look(img: np.ndarray, rng: np.random.Generator, cam: CameraRanges, horizon: float) -> np.ndarray:
    """One camera drawn from the domain's ranges: exposure, tone curve, white balance, saturation,
    contrast, haze, lifted blacks, vignetting, optical and motion blur, sensor noise (float RGB in 0..1)."""
    h, w, _ = img.shape
    u = rng.uniform
    img = np.clip(img * u(*cam.exposure), 0, 1) ** u(*cam.gamma)
    img = img * np.array([u(*band) for band in cam.white_balance], np.float32)
    lum = luma(img)[..., None]
    img = lum + u(*cam.saturation) * (img - lum)
    img = img.mean() + u(*cam.contrast) * (img - img.mean())
    # haze: distant things (rows near the horizon) fade towards a grey-blue
    rows = np.arange(h, dtype=np.float32)[:, None, None]
    haze = np.exp(-np.abs(rows - horizon) / (0.12 * h)) * u(*cam.haze)
    img = img * (1 - haze) + haze * np.array([0.55, 0.58, 0.62], np.float32) * min(1.0, float(img.mean()) * 2)
    img = img + u(*cam.lifted_blacks)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    img = img * (1 - u(*cam.vignette) * r2 / 2)[..., None]
    sigma = u(*cam.blur) * w / 320
    if sigma > 0.2:
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma)
    if rng.random() < cam.p_motion_blur:
        length = max(2, round(u(1.5, 4.0) * w / 320))
        img = cv2.blur(img, (length, 1))
    sd = u(*cam.noise)
    noise = rng.normal(0, sd, (h, w, 1)) + rng.normal(0, sd * 0.35, (h, w, 3))
    return img + noise.astype(np.float32)


def compress(img: np.ndarray, rng: np.random.Generator, cam: CameraRanges) -> np.ndarray:
    """JPEG artefacts on some images (uint8 RGB in, uint8 RGB out)."""
    if rng.random() >= cam.p_jpeg:
        return img
    quality = int(rng.integers(cam.jpeg_quality[0], cam.jpeg_quality[1] + 1))
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # cannot happen for a valid uint8 image; keep the image rather than fail a generation
        return img
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()
