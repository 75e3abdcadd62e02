"""What differs between the two domains: colour palettes, street layout, object frequencies, light, texture.

``SOURCE`` is the game-like domain (GTA5's stand-in), ``TARGET`` the photo-like one (Cityscapes').
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segdemo.labels import BUILDING, ROAD, SIDEWALK, SKY, TERRAIN, VEGETATION


def hex_colors(*codes: str) -> np.ndarray:
    """Colours given as '#rrggbb' strings -> N x 3 float32 in 0..1."""
    return np.array([[int(c[i : i + 2], 16) / 255.0 for i in (1, 3, 5)] for c in codes], np.float32)


# Colour *distributions* per material: a sample picks one base colour and jitters it. The lists
# deliberately overlap across classes (grey walls, grey buildings, grey cars, grey sidewalks; red
# cars, red buses, red trams, red clothes ...) so that shape and context have to be learned.
SOURCE_PALETTE: dict[str, np.ndarray] = {
    "sky_top": hex_colors("#2f6fd8", "#4a82d0", "#6d9ccf", "#5b8fd0"),
    "sky_low": hex_colors("#a6d2f7", "#bfe0fb", "#f2d9b0", "#c8d8e4"),
    "cloud": hex_colors("#ffffff", "#f4f1ea"),
    # GTA5's overcast, hazy and smoggy weathers: a pale grey-white sky instead of the clear blue one
    "sky_pale": hex_colors("#dfe3e6", "#c9d3dc", "#e8e2d6", "#b8bec4"),
    "road": hex_colors("#5f5c5a", "#6b6660", "#545456", "#74706a", "#8a8884"),
    "marking": hex_colors("#f2f0e6", "#f0c832"),
    "sidewalk": hex_colors("#b4aa9b", "#c8beae", "#b98a76", "#a9a39a"),
    "curb": hex_colors("#d2ccc0", "#bdb6aa"),
    "building": hex_colors(
        "#d9be96",
        "#c8784f",
        "#e6e0d4",
        "#969499",
        "#a2b4c8",
        "#8c6446",
        "#dca096",
        "#e8c878",
        "#b0a89a",
        "#c9c2b2",
        "#7c7670",
    ),
    "glass_facade": hex_colors("#4a8ccc", "#5aa0b4", "#3c6e9c"),
    "window": hex_colors("#3c6ea8", "#283c50", "#78aad2", "#5a82a0"),
    "roof": hex_colors("#7a4a3a", "#5c5c60"),
    "wall": hex_colors("#b9b4aa", "#a09687", "#c8aa82", "#828282", "#d2c3a5"),
    "fence": hex_colors("#5a5a5a", "#967850", "#e6e6e6", "#3c503c"),
    "pole": hex_colors("#6e6e73", "#465046", "#969696"),
    "light_box": hex_colors("#282828", "#3c4628", "#c8aa28"),
    "sign": hex_colors("#d22828", "#2c5ac8", "#f0c828", "#f5f5f5", "#28a046"),
    # bright spring greens as well as the dark and dusty olive foliage of GTA5's Los Angeles: one fixed
    # bright green taught the networks that anything darker up high is a building
    "vegetation": hex_colors(
        "#3c8c32", "#5aa03c", "#287028", "#78963c", "#2e5a2c", "#41683a", "#56703f", "#6b7a45"
    ),
    "palm": hex_colors("#4c9a3a", "#6aa83c", "#3f7036", "#5b7340"),
    "trunk": hex_colors("#6e5032", "#8a6a46"),
    "terrain": hex_colors("#6ea03c", "#96aa50", "#a08c5a", "#82b446"),
    "skin": hex_colors("#f0c8a0", "#c89664", "#8c5a3c", "#e6b48c"),
    "hair": hex_colors("#281e14", "#5a3c1e", "#c8aa64", "#1e1e1e"),
    "clothes": hex_colors(
        "#d23232", "#2846b4", "#f0f0f0", "#1e1e23", "#e6b428", "#3c963c", "#f08228", "#8c8c96", "#a03ca0"
    ),
    "trousers": hex_colors("#2c3c6e", "#1e1e23", "#a08c6e", "#5a5a5a", "#d2d2d2"),
    "car": hex_colors("#c81e1e", "#1e3cb4", "#e6e6e6", "#1e1e23", "#aaafb4", "#e6be28", "#287840", "#f07820"),
    "truck": hex_colors("#f0f0f0", "#c82828", "#2846a0", "#8c8c8c", "#e6b428"),
    "bus": hex_colors("#f0f0f0", "#e6be28", "#c82828", "#2850b4", "#32a046"),
    "tram": hex_colors("#c82828", "#f0f0f0", "#e6c828", "#2850b4", "#969696"),
    "motorbike": hex_colors("#1e1e1e", "#c81e1e", "#1e46c8", "#b4b4be", "#f07814"),
    "bicycle": hex_colors("#1e1e1e", "#c81e1e", "#1e46c8", "#b4b4be", "#28963c"),
    "helmet": hex_colors("#1e1e1e", "#f0f0f0", "#c81e1e", "#1e46c8"),
    "glass": hex_colors("#1e2837", "#324b64", "#3c4650"),
}

TARGET_PALETTE: dict[str, np.ndarray] = {
    "sky_top": hex_colors("#b4bec8", "#8ca5be", "#c8cdd2"),
    "sky_low": hex_colors("#d7dce1", "#e1e4e6", "#c3cdd7"),
    "cloud": hex_colors("#e6e8ea", "#aab0b8"),
    "road": hex_colors("#4e5256", "#5a5e62", "#46494c", "#63666a"),
    "marking": hex_colors("#d2d4d2", "#c8c8be"),
    "sidewalk": hex_colors("#8c8c8a", "#9b9690", "#7d7873", "#a0a09b", "#8a7c78"),
    "curb": hex_colors("#a5a5a0", "#969691"),
    "building": hex_colors(
        "#a09b91", "#b4aa96", "#8c8782", "#c3bead", "#968c7d", "#aaa5a0", "#b9a58c", "#7d7873"
    ),
    "brick": hex_colors("#8c4b3c", "#a05a46", "#784137"),
    "window": hex_colors("#28323c", "#3c4650", "#1e2328", "#505a64"),
    "roof": hex_colors("#5a3c32", "#46464b", "#6e4637"),
    "awning": hex_colors("#8c2828", "#285a3c", "#c8b48c", "#3c3c50"),
    "wall": hex_colors("#96938c", "#a59b8c", "#827d78", "#b4aa9b", "#6e6e6e"),
    "fence": hex_colors("#3c3c3c", "#6e5a41", "#969691", "#2d3c32"),
    "pole": hex_colors("#5a5a5f", "#3c413c", "#7d7d7d"),
    "light_box": hex_colors("#232323", "#2d322d", "#3c3c32"),
    "sign": hex_colors("#a52323", "#234b96", "#d2aa28", "#dcdcdc", "#237846"),
    "vegetation": hex_colors("#507846", "#466e3c", "#64783c", "#3c5f37"),
    "conifer": hex_colors("#2d4632", "#283c2d"),
    "trunk": hex_colors("#4b3c2d", "#5a4b3c"),
    "terrain": hex_colors("#6e7846", "#827d55", "#5f6e41", "#8c8264"),
    "skin": hex_colors("#dcb496", "#b48c6e", "#785037", "#c8a082"),
    "hair": hex_colors("#231e19", "#4b3723", "#a08c64", "#a0a0a0"),
    "clothes": hex_colors(
        "#1e1e23", "#3c3c46", "#6e2828", "#28375a", "#8c8273", "#c8c8c3", "#4b5a3c", "#a07837", "#5a5a64"
    ),
    "trousers": hex_colors("#232837", "#19191e", "#5a5046", "#46464b", "#8c8278"),
    "car": hex_colors("#aaaaaf", "#1e1e23", "#e1e1e1", "#3c4655", "#5a5f64", "#8c1e1e", "#283c64", "#c8c3b4"),
    "truck": hex_colors("#e1e1e1", "#8c8c8c", "#3c4664", "#a03228"),
    "bus": hex_colors("#e6e6e1", "#d2aa28", "#a03228", "#2d4b8c", "#3c7850"),
    "tram": hex_colors("#dcd2b9", "#a52d2d", "#e6e6e1", "#2d4b8c", "#c8aa28"),
    "motorbike": hex_colors("#1e1e1e", "#8c1e1e", "#283c78", "#a0a0a5"),
    "bicycle": hex_colors("#1e1e1e", "#8c1e1e", "#283c78", "#a0a0a5", "#3c643c", "#dcdcd7"),
    "helmet": hex_colors("#1e1e1e", "#e6e6e6", "#a01e1e"),
    "glass": hex_colors("#191e23", "#2d3741", "#283037"),
}


def choose(rng: np.random.Generator, probabilities: dict[str, float]) -> str:
    """One key of a ``{key: probability}`` table of a style (time of day, ego view), drawn with those odds."""
    keys = list(probabilities)
    return keys[int(rng.choice(len(keys), p=np.array([probabilities[k] for k in keys])))]


def class_amplitudes(values: dict[int, float], default: float) -> np.ndarray:
    amp = np.full(256, default, np.float32)
    for cls, value in values.items():
        amp[cls] = value
    return amp


@dataclass(frozen=True)
class CameraRanges:
    """The camera of one domain as ranges that every scene draws its own values from (domain
    randomisation): one domain is a spread of looks, not one fixed look. ``(lo, hi)`` are uniform ranges."""

    exposure: tuple[float, float]  # gain before the tone curve
    gamma: tuple[float, float]  # tone curve exponent (> 1 darkens the mid-tones)
    white_balance: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]  # R, G, B gains
    saturation: tuple[float, float]  # 1 = as rendered
    contrast: tuple[float, float]  # around the image mean
    haze: tuple[float, float]  # strength of the grey-blue fade near the horizon
    lifted_blacks: tuple[float, float]
    vignette: tuple[float, float]
    blur: tuple[float, float]  # Gaussian sigma in pixels at 320 pixels of width
    noise: tuple[float, float]  # sensor noise standard deviation (0..1 scale)
    p_motion_blur: float  # probability of a horizontal motion blur (panning, speed)
    p_jpeg: float  # probability of JPEG compression
    jpeg_quality: tuple[int, int]


@dataclass(frozen=True)
class DomainStyle:
    """Everything that differs between the two domains (layout, frequencies, look)."""

    palette: dict[str, np.ndarray]
    horizon: tuple[float, float]  # horizon row as a fraction of the image height
    cam_height: tuple[float, float]  # metres above the road
    focal: tuple[float, float]  # focal length in image widths (larger = narrower field of view)
    principal_jitter: float  # horizontal shift of the vanishing point, in image widths
    lanes: tuple[int, int]
    one_way: float  # probability of a one-way street
    left_lane: float  # on a one-way street, probability that the camera drives in the left-most lane
    lane_width: tuple[float, float]
    sidewalk: tuple[tuple[float, float], tuple[float, float]]  # width range, (left, right)
    parking: tuple[float, float]  # probability of a parking lane, (left, right)
    parked_fill: float  # fraction of parking slots that hold a car
    tree_row: tuple[float, float]  # probability of a street tree row, (left, right)
    verge: float  # probability of a grass strip between curb and sidewalk, per side
    building_height: tuple[float, float]
    building_setback: tuple[float, float]
    p_gap: float  # probability of a gap (garden, lot, side street) before each building
    yard: tuple[float, float, float, float]  # property line: P(wall), P(fence), P(hedge), P(nothing)
    counts: dict[str, float]  # Poisson means of object counts per image
    p_tram: float
    p_cross: float  # probability of a cross street (an intersection ahead)
    cross_width: tuple[float, float]  # its width in metres
    p_rider_bicycle: float  # the rest ride motorcycles
    people_side: float  # probability that a pedestrian is on the left sidewalk
    variants: frozenset[str]  # shape/texture variants this domain shows
    sun: tuple[float, float, float]  # (lit face, shaded face, cast shadow) brightness factors
    paint: tuple[float, float]  # freshness of the road markings, 1 = new
    texture: tuple[np.ndarray, np.ndarray, np.ndarray]  # coarse, medium, fine amplitude per class
    texture_gain: tuple[float, float]  # per-scene factor on all of them (worn or clean surfaces)
    leaf_clusters: float  # Poisson mean of lit and shaded leaf clusters drawn into a round crown
    pale_sky: float  # share of scenes whose sky is paled towards the palette's "sky_pale" (weather)
    time_of_day: dict[str, float]  # probability of "day", "dusk", "night"
    ego: dict[str, float]  # what of the camera's own vehicle or character shows: probability of each
    camera: CameraRanges


SOURCE = DomainStyle(
    palette=SOURCE_PALETTE,
    horizon=(0.28, 0.50),
    cam_height=(1.4, 2.8),
    focal=(0.72, 0.88),
    principal_jitter=0.05,
    lanes=(3, 5),
    one_way=0.1,
    left_lane=0.0,
    lane_width=(3.4, 3.9),
    sidewalk=((1.0, 2.5), (3.5, 6.5)),
    parking=(0.15, 0.8),
    parked_fill=0.5,
    tree_row=(0.2, 0.6),
    verge=0.35,
    building_height=(5.0, 26.0),
    building_setback=(0.5, 12.0),
    p_gap=0.3,
    yard=(0.30, 0.25, 0.15, 0.30),
    counts={
        "car": 2.5,
        "truck": 1.0,
        "bus": 0.5,
        "person": 3.0,
        "rider": 0.9,
        "parked_bicycle": 0.4,
        "parked_motorbike": 0.7,
        "pole": 5.0,
        "sign": 2.0,
        "traffic_light": 3.0,
        "offscreen_shadow": 3.0,  # shadows of poles and crowns out of view across the sunny street
    },
    p_tram=0.25,
    p_cross=0.5,
    cross_width=(12.0, 24.0),
    p_rider_bicycle=0.3,
    people_side=0.25,
    variants=frozenset({"palm", "glass_tower", "sedan_only"}),
    sun=(1.18, 0.60, 0.55),
    paint=(0.95, 1.0),
    texture=(
        class_amplitudes({VEGETATION: 0.10, TERRAIN: 0.06, SKY: 0.0}, 0.03),
        class_amplitudes({VEGETATION: 0.08, TERRAIN: 0.04, ROAD: 0.015}, 0.0),
        class_amplitudes({ROAD: 0.03, SIDEWALK: 0.02, VEGETATION: 0.10}, 0.01),
    ),
    texture_gain=(0.7, 2.5),
    leaf_clusters=14.0,
    pale_sky=0.35,
    # GTA5 is driven, walked and ridden at every hour: a third of its frames are dusk or night, and the
    # player's car bonnet, motorbike or character is often in view (the three real GTA5 frames show all three)
    time_of_day={"day": 0.55, "dusk": 0.2, "night": 0.25},
    ego={"none": 0.25, "hood": 0.35, "handlebars": 0.15, "third_person": 0.25},
    camera=CameraRanges(
        exposure=(0.85, 1.15),
        gamma=(0.8, 1.1),
        white_balance=((1.0, 1.12), (0.97, 1.03), (0.82, 1.0)),
        saturation=(0.8, 1.4),
        contrast=(0.95, 1.3),
        haze=(0.0, 0.12),
        lifted_blacks=(0.0, 0.02),
        vignette=(0.0, 0.15),
        blur=(0.0, 0.45),
        noise=(0.0, 0.01),
        p_motion_blur=0.15,
        p_jpeg=0.4,
        jpeg_quality=(55, 95),
    ),
)

TARGET = DomainStyle(
    palette=TARGET_PALETTE,
    horizon=(0.34, 0.42),
    cam_height=(1.2, 1.5),
    focal=(0.9, 1.05),
    principal_jitter=0.04,
    lanes=(2, 3),
    one_way=0.6,
    left_lane=0.9,
    lane_width=(2.9, 3.3),
    sidewalk=((3.0, 6.0), (2.0, 4.0)),
    parking=(0.75, 0.35),
    parked_fill=0.65,
    tree_row=(0.7, 0.5),
    verge=0.45,
    building_height=(11.0, 22.0),
    building_setback=(0.0, 3.0),
    p_gap=0.18,
    yard=(0.30, 0.30, 0.20, 0.20),
    counts={
        "car": 2.5,
        "truck": 0.3,
        "bus": 0.35,
        "person": 10.0,
        "rider": 2.5,
        "parked_bicycle": 3.5,
        "parked_motorbike": 0.4,
        "pole": 7.0,
        "sign": 3.0,
        "traffic_light": 3.0,
        "offscreen_shadow": 0.0,  # overcast: no sharp shadows
    },
    p_tram=0.45,
    p_cross=0.4,
    cross_width=(9.0, 16.0),
    p_rider_bicycle=0.85,
    people_side=0.6,
    variants=frozenset(
        {
            "hatchback",
            "van",
            "articulated",
            "child",
            "coat",
            "conifer",
            "brick",
            "pitched_roof",
            "awning",
            "lattice",
            "rect_sign",
            "cycle_path",
            "two_tone",
        }
    ),
    sun=(1.0, 0.84, 0.85),
    paint=(0.55, 1.0),
    texture=(
        class_amplitudes({VEGETATION: 0.10, TERRAIN: 0.08, SKY: 0.02, ROAD: 0.05, SIDEWALK: 0.06}, 0.05),
        class_amplitudes({VEGETATION: 0.12, TERRAIN: 0.08, ROAD: 0.03, SIDEWALK: 0.04, BUILDING: 0.03}, 0.02),
        class_amplitudes({VEGETATION: 0.14, TERRAIN: 0.12, ROAD: 0.06, SIDEWALK: 0.05, SKY: 0.01}, 0.03),
    ),
    texture_gain=(0.8, 1.25),
    leaf_clusters=0.0,  # the target's crowns get their leaves from the fine texture alone
    pale_sky=0.0,  # its sky colours are overcast already
    # Cityscapes: daytime only, from a car whose bonnet is in the bottom of nearly every frame
    time_of_day={"day": 1.0},
    ego={"none": 0.1, "hood": 0.9},
    camera=CameraRanges(
        exposure=(0.8, 1.0),
        gamma=(1.0, 1.3),
        white_balance=((0.82, 0.96), (0.95, 1.03), (1.03, 1.2)),
        saturation=(0.5, 0.8),
        contrast=(0.7, 0.9),
        haze=(0.1, 0.3),
        lifted_blacks=(0.02, 0.06),
        vignette=(0.12, 0.3),
        blur=(0.5, 0.9),
        noise=(0.008, 0.018),
        p_motion_blur=0.05,
        p_jpeg=0.2,
        jpeg_quality=(70, 95),
    ),
)

STYLES: dict[str, DomainStyle] = {"source": SOURCE, "target": TARGET}
