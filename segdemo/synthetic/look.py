"""The camera look of each domain, applied to a rendered image: where most of the colour and noise gap lives.

The source is a game engine's output (saturated, warm, crisp, noiseless); the target a car camera's
(overcast, cool, grey, hazy, vignetted, slightly blurred, noisy). Both get per-class surface texture first.
"""

from __future__ import annotations

import cv2
import numpy as np

from segdemo.synthetic.styles import DomainStyle


def surface_texture(
    img: np.ndarray, lab: np.ndarray, style: DomainStyle, rng: np.random.Generator
) -> np.ndarray:
    """Per-class surface texture at three scales (multiplicative luminance noise)."""
    h, w = lab.shape
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
    return img * (1.0 + total)[..., None]


def luma(img: np.ndarray) -> np.ndarray:
    return img @ np.array([0.299, 0.587, 0.114], np.float32)


def game_camera(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Source look: saturated, warm, contrasty and bright; no noise, no blur."""
    lum = luma(img)[..., None]
    img = lum + rng.uniform(1.25, 1.5) * (img - lum)
    img = img * np.array([rng.uniform(1.04, 1.12), 1.0, rng.uniform(0.82, 0.92)], np.float32)
    img = 0.5 + rng.uniform(1.1, 1.3) * (img - 0.5)
    return np.clip(img, 0, 1) ** rng.uniform(0.8, 0.92)


def photo_camera(img: np.ndarray, rng: np.random.Generator, horizon: float) -> np.ndarray:
    """Target look: overcast exposure, cool white balance, grey, flat, vignetted, blurred, noisy."""
    h, w, _ = img.shape
    img = np.clip(img, 0, 1) ** rng.uniform(1.0, 1.3) * rng.uniform(0.8, 1.0)
    wb = np.array([rng.uniform(0.82, 0.96), rng.uniform(0.95, 1.03), rng.uniform(1.03, 1.2)], np.float32)
    img = img * wb
    lum = luma(img)[..., None]
    img = lum + rng.uniform(0.5, 0.8) * (img - lum)
    img = img.mean() + rng.uniform(0.7, 0.9) * (img - img.mean())
    # haze: distant things (rows near the horizon) fade towards a grey-blue
    rows = np.arange(h, dtype=np.float32)[:, None, None]
    haze = np.exp(-np.abs(rows - horizon) / (0.12 * h)) * rng.uniform(0.1, 0.3)
    img = img * (1 - haze) + haze * np.array([0.55, 0.58, 0.62], np.float32)
    img = img + rng.uniform(0.02, 0.06)  # lifted blacks
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    img = img * (1 - rng.uniform(0.12, 0.3) * r2 / 2)[..., None]
    sigma = rng.uniform(0.5, 0.9) * w / 320
    img = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma)
    noise = rng.normal(0, rng.uniform(0.008, 0.018), (h, w, 1)) + rng.normal(0, 0.005, (h, w, 3))
    return img + noise.astype(np.float32)
