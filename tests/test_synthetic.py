"""Tests for the procedural two-domain street-scene generator (segdemo.synthetic)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from cityscapesscripts.helpers.labels import labels as cs_labels
from PIL import Image

from segdemo.labels import FENCE, IGNORE_INDEX, NUM_CLASSES, TRAIN_ID_TO_LABEL_ID, WALL, id_to_train_id
from segdemo.synthetic import (
    BICYCLE,
    BUILDING,
    CAR,
    DEFAULT_SIZE,
    PERSON,
    ROAD,
    SIDEWALK,
    SKY,
    TRUCK,
    VEGETATION,
    generate,
    render_scene,
)
from segdemo.synthetic.ego import EGO_VIEWS, draw_player
from segdemo.synthetic.geometry import EMISSIVE_NAMES, Z_MIN, Camera
from segdemo.synthetic.ground import draw_sky, offscreen_shadows
from segdemo.synthetic.look import (
    TIMES_OF_DAY,
    Light,
    apply_light,
    compress,
    headlight_beam,
    luma,
    sample_light,
)
from segdemo.synthetic.scene import Scene
from segdemo.synthetic.styles import STYLES
from segdemo.synthetic.trees import draw_tree

REPO = Path(__file__).resolve().parents[1]
SMALL = (64, 32)


def _scenes(
    domain: str, seeds: range, size: tuple[int, int] = DEFAULT_SIZE
) -> list[tuple[np.ndarray, np.ndarray]]:
    return [render_scene(np.random.default_rng(s), domain, size) for s in seeds]


@pytest.fixture(scope="module")
def scenes() -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """A modest sample of default-size scenes per domain, shared by the statistics tests."""
    return {d: _scenes(d, range(100, 140)) for d in ("source", "target")}


# --- render_scene --------------------------------------------------------------------------------


@pytest.mark.parametrize("domain", ["source", "target"])
@pytest.mark.parametrize("size", [DEFAULT_SIZE, (96, 40)])
def test_shapes_dtypes_and_ranges(domain: str, size: tuple[int, int]) -> None:
    img, lab = render_scene(np.random.default_rng(0), domain, size)
    w, h = size
    assert img.shape == (h, w, 3) and img.dtype == np.uint8
    assert lab.shape == (h, w) and lab.dtype == np.uint8
    assert np.all((lab < NUM_CLASSES) | (lab == IGNORE_INDEX))
    assert img.std() > 10  # an actual picture, not a blank canvas


def test_default_size_is_cityscapes_shaped() -> None:
    w, h = DEFAULT_SIZE
    assert w == 2 * h


@pytest.mark.parametrize("domain", ["gta5", "Source", "", None])
def test_invalid_domain_raises(domain: object) -> None:
    with pytest.raises(ValueError, match="domain"):
        render_scene(np.random.default_rng(0), domain, SMALL)  # type: ignore[arg-type]


def test_invalid_size_raises() -> None:
    with pytest.raises(ValueError):
        render_scene(np.random.default_rng(0), "source", (8, 4))


@pytest.mark.parametrize("domain", ["source", "target"])
def test_same_seed_same_scene_different_seed_different(domain: str) -> None:
    a_img, a_lab = render_scene(np.random.default_rng(7), domain)
    b_img, b_lab = render_scene(np.random.default_rng(7), domain)
    c_img, c_lab = render_scene(np.random.default_rng(8), domain)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, c_img)
    assert not np.array_equal(a_lab, c_lab)


@pytest.mark.parametrize("domain", ["source", "target"])
def test_all_19_classes_appear_and_ignore_is_only_the_ego_vehicle(scenes, domain: str) -> None:
    counts = np.zeros(256, np.int64)
    for _, lab in scenes[domain]:
        counts += np.bincount(lab.ravel(), minlength=256)
    missing = [c for c in range(NUM_CLASSES) if counts[c] == 0]
    assert missing == []
    # ignore is the camera's own bonnet or handlebars: in the bottom quarter, never a large share
    assert counts[IGNORE_INDEX] / counts.sum() < 0.15
    for _, lab in scenes[domain]:
        rows = np.flatnonzero((lab == IGNORE_INDEX).any(axis=1))
        assert rows.size == 0 or rows.min() >= 0.7 * lab.shape[0]


def test_labels_follow_the_drawn_geometry(scenes) -> None:
    """Sky is at the top and road at the bottom centre: the label map is a street, not noise."""
    for domain in ("source", "target"):
        labs = np.stack([lab for _, lab in scenes[domain]])
        h, w = labs.shape[1:]
        assert np.isin(labs[:, 0, :], (SKY, BUILDING, VEGETATION)).mean() > 0.8  # the top row
        bottom = labs[:, int(0.75 * h) :, w // 3 : 2 * w // 3]  # the bottom middle, ego vehicle left out
        assert (bottom == ROAD).sum() / (bottom != IGNORE_INDEX).sum() > 0.6


def test_ego_views_by_domain(scenes) -> None:
    """Cityscapes-like frames show the car's bonnet (ignore) nearly always; game frames vary: a bonnet,
    handlebars, the player walking ahead (a person cut by the bottom edge) or nothing."""

    def bottom_share(domain: str, cls: int) -> float:
        w = scenes[domain][0][1].shape[1]
        return float(
            np.mean([(lab[-1, w // 3 : 2 * w // 3] == cls).mean() > 0.3 for _, lab in scenes[domain]])
        )

    assert bottom_share("target", IGNORE_INDEX) > 0.7
    assert 0.15 < bottom_share("source", IGNORE_INDEX) < 0.8
    assert bottom_share("source", PERSON) > 0.05 and bottom_share("target", PERSON) == 0.0


# --- the domain gap -----------------------------------------------------------------------------


def _per_image_stats(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    imgs = np.stack([img for img, _ in pairs]).astype(np.float32)
    hsv = np.stack([cv2.cvtColor(img, cv2.COLOR_RGB2HSV) for img, _ in pairs]).astype(np.float32)
    return {
        "brightness": luma(imgs).mean(axis=(1, 2)),
        "saturation": hsv[..., 1].mean(axis=(1, 2)),
        "warmth": imgs[..., 0].mean(axis=(1, 2)) - imgs[..., 2].mean(axis=(1, 2)),
    }


def _fine_noise(pairs: list[tuple[np.ndarray, np.ndarray]], cls: int) -> float:
    """Median |pixel - 3x3 median| inside (eroded) regions of one class: sensor noise and grain."""
    values = []
    for img, lab in pairs:
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        resid = np.abs(grey.astype(np.float32) - cv2.medianBlur(grey, 3).astype(np.float32))
        inside = cv2.erode((lab == cls).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        values.append(resid[inside])
    return float(np.mean(np.concatenate(values)))


def test_domains_differ_in_light_and_colour(scenes) -> None:
    """The source is seen by day, at dusk and at night (a wide spread of brightness, dark frames among
    them), colourful and warm; the target by grey daylight only: cool, muted, all of a similar exposure."""
    src, tgt = _per_image_stats(scenes["source"]), _per_image_stats(scenes["target"])
    assert np.mean(src["brightness"] < 45) > 0.1 and np.all(tgt["brightness"] > 45)
    assert src["brightness"].std() > 2.5 * tgt["brightness"].std()
    by_day = src["brightness"] > 80
    assert np.median(src["saturation"][by_day]) > 1.8 * np.median(tgt["saturation"])
    assert src["warmth"].mean() > 8 and tgt["warmth"].mean() < 0  # warm game light vs cool white balance


def test_night_scenes_glow() -> None:
    """After dark the lamps, lit windows and vehicle lights stay bright while the rest of the scene is dim."""
    night = Light("night", (1.0, 1.0, 1.0), np.full(3, 0.1, np.float32), glowing=True)
    img = np.full((40, 80, 3), 0.6, np.float32)
    lab = np.full((40, 80), BUILDING, np.uint8)
    emit = np.zeros((40, 80), np.uint8)
    emit[10:14, 20:26] = EMISSIVE_NAMES.index("window") + 1
    out = apply_light(img, lab, night, emit, None, horizon=15.0)
    assert out[10:14, 20:26].mean() > 0.45  # the lit window
    assert out[30:, 60:].mean() < 0.1  # the dim facade far from it
    day = Light("day", (1.2, 0.6, 0.55), np.ones(3, np.float32), glowing=False)
    np.testing.assert_array_equal(apply_light(img, lab, day, None, None, horizon=15.0), img)


def test_headlights_light_the_lane_ahead_and_fade_with_distance() -> None:
    cam = Camera(focal=256.0, cx=320.0, horizon=60.0, height=1.5)
    beam = headlight_beam(cam, (160, 640), 1.0)

    def on_ground(x: float, z: float) -> float:
        u, v = cam.project(np.array([x, 0.0, z]))
        return float(beam[int(v), int(u)])

    assert beam[:60].max() == 0  # nothing above the horizon
    assert on_ground(0, 6) > 0.8 and on_ground(0, 6) > 20 * on_ground(6, 6)  # the lane, not the kerb
    assert on_ground(0, 6) > 3 * on_ground(0, 30)


def test_only_a_driven_camera_after_dark_has_its_headlights_on() -> None:
    for time in ("day", "night"):
        style = replace(STYLES["source"], time_of_day={time: 1.0})
        for seed in range(30):
            scene = Scene(np.random.default_rng(seed), style, 160, 80)
            assert (scene.headlights > 0) == (time == "night" and scene.ego != "third_person")


def test_at_night_the_road_is_lit_brighter_than_the_buildings(monkeypatch) -> None:
    """After dark the street lamps and low beams light the carriageway (as in GTA5's night frames), while
    the facades get only the dim sky light and their own windows."""
    monkeypatch.setitem(STYLES, "source", replace(STYLES["source"], time_of_day={"night": 1.0}))
    road, building = [], []
    for img, lab in _scenes("source", range(30), (160, 80)):
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        road.append(np.median(grey[lab == ROAD]))
        building.append(np.median(grey[lab == BUILDING]) if (lab == BUILDING).any() else np.inf)
    road, building = np.array(road), np.array(building)
    assert np.mean(road > building) > 0.5 and np.median(road) > 1.3 * np.median(building)


def test_sunny_source_streets_carry_shadows_of_things_out_of_view() -> None:
    counts: dict[str, list[int]] = {}
    for domain, style in STYLES.items():
        day = replace(style, time_of_day={"day": 1.0})
        for seed in range(30):
            polys = offscreen_shadows(Scene(np.random.default_rng(seed), day, 160, 80))
            assert all((p[:, 1] == 0).all() and (p[:, 2] > Z_MIN).all() for p in polys)  # on the ground
            counts.setdefault(domain, []).append(len(polys))
    assert np.mean(counts["source"]) > 1.5 and max(counts["target"]) == 0  # the target is overcast


def test_a_third_person_camera_follows_the_player_at_head_height() -> None:
    """As in a game's on-foot view (GTA5's frames): the player stands tall in the frame, head near the
    horizon, rather than a small figure seen from a driver's height."""
    style = replace(STYLES["source"], ego={"third_person": 1.0})
    shares, head_offsets = [], []
    for seed in range(30):
        scene = Scene(np.random.default_rng(seed), style, 320, 160)  # an empty canvas: nothing drawn yet
        draw_player(scene)
        player = scene.canvas.lab == PERSON
        shares.append(player.mean())
        head_offsets.append((np.flatnonzero(player.any(axis=1))[0] - scene.cam.horizon) / scene.h)
        assert player[-1].any()  # cut by the bottom of the image
    assert np.median(shares) > 0.055 and np.median(np.abs(head_offsets)) < 0.13


def _near_crown(domain: str, seed: int) -> np.ndarray:
    """The crown of a 6 m round tree 30 m ahead, drawn alone on an empty canvas: its rows (top first) of
    luminance, NaN where no foliage is."""
    scene = Scene(np.random.default_rng(seed), replace(STYLES[domain], time_of_day={"day": 1.0}), 640, 320)
    green = np.array([0.3, 0.55, 0.25], np.float32)
    draw_tree(scene, 1.0, 30.0, "round", 6.0, green, green * 0.5, np.random.default_rng(seed))
    grey = scene.canvas.img.mean(axis=2)
    crown = (scene.canvas.lab == VEGETATION) & (grey > green.mean() * 0.55)  # not the trunk
    return np.where(crown, grey, np.nan)


def test_source_crowns_have_lit_and_shaded_leaf_clusters() -> None:
    """A near source crown is many shades of its green and on the whole darker underneath (GTA5's foliage);
    the target's crowns get their leaves from the surface texture instead."""
    darkening = []
    for seed in range(12):
        crown = _near_crown("source", seed)
        assert len(np.unique(np.round(crown[~np.isnan(crown)], 3))) >= 8, seed
        rows = np.flatnonzero(~np.isnan(crown).all(axis=1))
        third = len(rows) // 3
        darkening.append(np.nanmean(crown[rows[:third]]) - np.nanmean(crown[rows[-third:]]))
        target = _near_crown("target", seed)
        assert len(np.unique(np.round(target[~np.isnan(target)], 3))) <= 6  # its lumps only
    assert np.mean(darkening) > 0.01 and np.mean(np.array(darkening) > 0) > 0.6


def test_source_foliage_ranges_from_bright_to_dark_greens() -> None:
    scene = Scene(np.random.default_rng(0), STYLES["source"], 160, 80)
    luminance = np.array([luma(scene.color("vegetation")) for _ in range(400)])
    assert (luminance < 0.36).mean() > 0.3 and (luminance > 0.45).mean() > 0.2


def _sky_saturation(domain: str, seed: int) -> float:
    """How coloured a scene's sky is at the top of the image, before light and camera: (max - min) / max of
    the top row's median RGB (0: grey)."""
    scene = Scene(np.random.default_rng(seed), STYLES[domain], 160, 80)
    draw_sky(scene)
    top = np.median(scene.canvas.img[0], axis=0)
    return float((top.max() - top.min()) / top.max())


def test_a_third_of_source_skies_are_pale_as_in_gta5s_overcast_and_hazy_weathers() -> None:
    source = np.array([_sky_saturation("source", seed) for seed in range(200)])
    assert 0.2 < (source < 0.25).mean() < 0.5  # paled towards grey-white
    assert (source > 0.4).mean() > 0.5  # the clear blue skies stay the most common
    target = np.array([_sky_saturation("target", seed) for seed in range(50)])
    assert (target < 0.25).mean() > 0.7  # the target's overcast skies, drawn without the paling


def test_light_and_ego_view_frequencies_follow_the_style() -> None:
    for domain, style in STYLES.items():
        times = [sample_light(np.random.default_rng(i), style).time for i in range(400)]
        for time, p in style.time_of_day.items():
            assert abs(times.count(time) / 400 - p) < 0.07, (domain, time)
    assert set(STYLES["target"].time_of_day) == {"day"}  # Cityscapes is daytime only
    for style in STYLES.values():  # every key is one the renderer draws, and the odds add up
        assert set(style.time_of_day) <= set(TIMES_OF_DAY) and set(style.ego) <= set(EGO_VIEWS)
        assert sum(style.time_of_day.values()) == pytest.approx(1.0) == sum(style.ego.values())


def test_jpeg_compression_is_drawn_per_image() -> None:
    img = render_scene(np.random.default_rng(0), "source", SMALL)[0]
    never = replace(STYLES["source"].camera, p_jpeg=0.0)
    always = replace(STYLES["source"].camera, p_jpeg=1.0, jpeg_quality=(20, 20))
    np.testing.assert_array_equal(compress(img, np.random.default_rng(0), never), img)
    out = compress(img, np.random.default_rng(0), always)
    assert out.shape == img.shape and out.dtype == np.uint8 and not np.array_equal(out, img)
    assert np.abs(out.astype(int) - img.astype(int)).mean() < 12  # artefacts, not another picture


def test_target_has_more_sensor_noise(scenes) -> None:
    # the sky has no surface texture: its fine detail is the camera's noise (the road has grain in both)
    assert _fine_noise(scenes["target"], SKY) > 1.3 * _fine_noise(scenes["source"], SKY) + 0.2


def test_domains_differ_in_layout_and_class_frequencies(scenes) -> None:
    def share(domain: str, cls: int) -> float:
        return float(np.mean([(lab == cls).mean() for _, lab in scenes[domain]]))

    def right_fraction(domain: str, cls: int) -> float:
        labs = np.stack([lab for _, lab in scenes[domain]]) == cls
        w = labs.shape[2]
        return float(labs[:, :, w // 2 :].sum() / max(labs.sum(), 1))

    def presence(domain: str, cls: int) -> float:
        return float(np.mean([(lab == cls).any() for _, lab in scenes[domain]]))

    def pedestrians(domain: str) -> float:  # people counted one by one (the source's player is one)
        return float(
            np.mean(
                [
                    cv2.connectedComponents((lab == PERSON).astype(np.uint8))[0] - 1
                    for _, lab in scenes[domain]
                ]
            )
        )

    assert pedestrians("target") > 1.8 * pedestrians("source")
    assert share("target", BICYCLE) > 2 * share("source", BICYCLE)
    assert presence("source", TRUCK) > 1.8 * presence("target", TRUCK)
    # source: wide sidewalk and parked cars on the right; target: sidewalks on both sides, parking on the left
    assert right_fraction("source", SIDEWALK) > 0.75
    assert right_fraction("target", SIDEWALK) < 0.7
    assert right_fraction("source", CAR) > 0.55
    assert right_fraction("target", CAR) < 0.45


def test_property_line_walls_and_fences_stand_in_front_of_the_buildings(scenes) -> None:
    """The front yards' walls and fences are nearer than the facades behind them, so they are painted after
    them and seen: each is several tenths of a percent of the pixels (painted before the buildings, as up to
    generator version 3, the facades hid most of them: the target's walls were 0.08%)."""
    for domain in ("source", "target"):
        for cls in (WALL, FENCE):
            assert np.mean([(lab == cls).mean() for _, lab in scenes[domain]]) > 0.003, (domain, cls)
        assert np.mean([(lab == WALL).any() for _, lab in scenes[domain]]) > 0.6


# --- generate(): files on disk ------------------------------------------------------------------


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "data"
    paths = generate(out, seed=3, n_source=3, n_target_train=3, n_target_val=2, size=SMALL)
    assert paths == {"gta5": out / "gta5", "cityscapes": out / "cityscapes"}
    return out


def test_written_layout_exactly(dataset: Path) -> None:
    expected = {"README.txt"}
    expected |= {f"gta5/{kind}/{i:05d}.png" for kind in ("images", "labels") for i in (1, 2, 3)}
    stems = {
        "train": ["synthaven_000000_000019", "polyburg_000000_000019", "synthaven_000001_000019"],
        "val": ["procville_000000_000019", "procville_000001_000019"],
    }
    for split, names in stems.items():
        for stem in names:
            city = stem.split("_")[0]
            expected.add(f"cityscapes/leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png")
            expected.add(f"cityscapes/gtFine/{split}/{city}/{stem}_gtFine_labelIds.png")
            expected.add(f"cityscapes/gtFine/{split}/{city}/{stem}_gtFine_labelTrainIds.png")
    assert set(_files(dataset)) == expected


def test_png_modes_and_gta5_palette(dataset: Path) -> None:
    w, h = SMALL
    for path in sorted(dataset.rglob("*.png")):
        with Image.open(path) as im:
            assert im.size == (w, h)
            if "leftImg8bit" in path.name or path.parent.name == "images":
                assert im.mode == "RGB"
            elif path.parent.name == "labels":
                assert im.mode == "P"
                palette = np.array(im.getpalette()[: 3 * 34]).reshape(-1, 3)
                for lab in cs_labels:
                    if 0 <= lab.id < 34:
                        assert tuple(palette[lab.id]) == lab.color, lab.name
            else:
                assert im.mode == "L"


def test_gta5_labels_are_label_ids(dataset: Path) -> None:
    for i in (1, 2, 3):
        ids = np.array(Image.open(dataset / "gta5" / "labels" / f"{i:05d}.png"))
        assert set(np.unique(ids)) <= set(TRAIN_ID_TO_LABEL_ID.tolist()) | {0}
        train_ids = id_to_train_id(ids)
        ignored = np.flatnonzero((train_ids == IGNORE_INDEX).any(axis=1))  # the ego vehicle, 0 "unlabeled"
        assert ignored.size == 0 or ignored.min() >= 0.7 * ids.shape[0]


def test_label_ids_consistent_with_train_ids(dataset: Path) -> None:
    files = sorted((dataset / "cityscapes" / "gtFine").rglob("*_gtFine_labelIds.png"))
    assert len(files) == 5
    for ids_path in files:
        ids = np.array(Image.open(ids_path))
        train = np.array(Image.open(str(ids_path).replace("_labelIds", "_labelTrainIds")))
        np.testing.assert_array_equal(id_to_train_id(ids), train)
        assert np.all((train < NUM_CLASSES) | (train == IGNORE_INDEX))


def test_written_files_match_render_scene(dataset: Path) -> None:
    """The data on disk is exactly the renderer's output (no lossy step in between)."""
    from segdemo.synthetic import scene_rng

    img, lab = render_scene(scene_rng(3, "target", "val", 1), "target", SMALL)
    stem = dataset / "cityscapes" / "leftImg8bit" / "val" / "procville" / "procville_000001_000019"
    np.testing.assert_array_equal(np.array(Image.open(f"{stem}_leftImg8bit.png")), img)
    gt = (
        dataset
        / "cityscapes"
        / "gtFine"
        / "val"
        / "procville"
        / "procville_000001_000019_gtFine_labelTrainIds.png"
    )
    np.testing.assert_array_equal(np.array(Image.open(gt)), lab)


def test_readme(dataset: Path) -> None:
    text = (dataset / "README.txt").read_text()
    assert "NOT GTA5 and NOT\nCityscapes" in text
    assert "seed: 3" in text and "64x32" in text
    assert f"python -m segdemo.synthetic --out {dataset} --seed 3 --n-source 3" in text


def test_generate_is_byte_deterministic_and_independent_of_counts(dataset: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate(again, seed=3, n_source=3, n_target_train=3, n_target_val=2, size=SMALL)
    first = _files(dataset)
    again_files = _files(again)
    # identical except the README, which names the output folder in its regenerate command
    again_files.pop("README.txt")
    assert again_files == {k: v for k, v in first.items() if k != "README.txt"}
    # fewer images: each one is still the same bytes (its rng depends only on seed, domain, split, index)
    fewer = tmp_path / "fewer"
    generate(fewer, seed=3, n_source=2, n_target_train=1, n_target_val=2, size=SMALL)
    fewer_files = _files(fewer)
    for name, data in fewer_files.items():
        if name != "README.txt":
            assert first[name] == data, name
    assert "gta5/images/00003.png" not in fewer_files
    # a different seed gives different images
    other = tmp_path / "other"
    generate(other, seed=4, n_source=1, n_target_train=0, n_target_val=0, size=SMALL)
    assert _files(other)["gta5/images/00001.png"] != first["gta5/images/00001.png"]


def test_worker_processes_write_the_same_bytes(dataset: Path, tmp_path: Path) -> None:
    parallel = tmp_path / "parallel"
    generate(parallel, seed=3, n_source=3, n_target_train=3, n_target_val=2, size=SMALL, workers=2)
    files = _files(parallel)
    files.pop("README.txt")
    assert files == {k: v for k, v in _files(dataset).items() if k != "README.txt"}
    with pytest.raises(ValueError, match="workers"):
        generate(tmp_path / "none", n_source=1, size=SMALL, workers=0)


def test_is_complete_tells_an_interrupted_generation_apart(dataset: Path, tmp_path: Path) -> None:
    from segdemo.synthetic import is_complete

    assert is_complete(dataset)
    out = tmp_path / "data"
    generate(out, seed=3, n_source=3, n_target_train=3, n_target_val=2, size=SMALL)
    label = next((out / "cityscapes" / "gtFine" / "val").rglob("*_labelTrainIds.png"))
    label.unlink()  # killed between an image's files
    assert not is_complete(out)
    generate(out, seed=3, n_source=3, n_target_train=3, n_target_val=2, size=SMALL)
    assert is_complete(out) and label.is_file()
    assert not is_complete(tmp_path / "nothing here")


def test_parts_are_written_on_their_own_and_add_up_to_the_whole(dataset: Path, tmp_path: Path) -> None:
    from segdemo.synthetic import is_complete

    out = tmp_path / "data"
    counts = {"seed": 3, "n_source": 3, "n_target_train": 3, "n_target_val": 2, "size": SMALL}
    generate(out, parts=["target_val", "source"], **counts)
    assert not (out / "cityscapes" / "leftImg8bit" / "train").exists()
    assert is_complete(out, ["source", "target_val"]) and not is_complete(out)
    assert not is_complete(out, ["target_train"])
    # The rest later: the same bytes as one generation of everything, and what was there is kept.
    generate(out, parts=["target_train"], **counts)
    assert is_complete(out)
    parts, whole = _files(out), _files(dataset)
    assert parts.pop("README.txt").replace(bytes(out), bytes(dataset)) == whole.pop("README.txt")
    assert parts == whole
    with pytest.raises(ValueError, match="unknown parts"):
        generate(out, parts=["target_test"], **counts)
    with pytest.raises(ValueError, match="unknown parts"):
        is_complete(out, ["val"])


def test_data_of_an_older_generator_is_written_again(tmp_path: Path) -> None:
    from segdemo.synthetic import GENERATOR_VERSION, generator_version, is_complete

    out = tmp_path / "data"
    counts = {"seed": 3, "n_source": 2, "n_target_train": 2, "n_target_val": 1, "size": SMALL}
    generate(out, **counts)
    assert generator_version(out) == generator_version(out / "gta5") == GENERATOR_VERSION
    assert is_complete(out)
    readme = out / "README.txt"  # as the first generator wrote it: no version line
    lines = readme.read_text().splitlines(keepends=True)
    readme.write_text("".join(line for line in lines if not line.startswith("generator:")))
    assert generator_version(out) == 1 and not is_complete(out, ["source"])
    generate(out, parts=["source"], **counts)
    assert generator_version(out) == GENERATOR_VERSION and is_complete(out, ["source"])
    # The other parts were drawn by the old generator: removed, so that they are written again rather than
    # taken for the new one's.
    assert not is_complete(out, ["target_train"]) and not is_complete(out, ["target_val"])
    assert not list((out / "cityscapes").rglob("*.png"))
    generate(out, parts=["target_train", "target_val"], **counts)
    assert is_complete(out)
    assert generator_version(tmp_path / "nothing here") is None


def test_rerun_into_same_folder_prunes_stale_files(tmp_path: Path) -> None:
    out = tmp_path / "data"
    generate(out, seed=0, n_source=3, n_target_train=2, n_target_val=1, size=SMALL)
    before = _files(out)
    generate(out, seed=0, n_source=3, n_target_train=2, n_target_val=1, size=SMALL)
    assert _files(out) == before  # a re-run reproduces every byte, README included
    generate(out, seed=0, n_source=1, n_target_train=1, n_target_val=1, size=SMALL)
    names = set(_files(out))
    assert "gta5/images/00001.png" in names and "gta5/images/00002.png" not in names
    assert not any(n.endswith(".tmp") for n in names)
    assert len([n for n in names if n.endswith("_leftImg8bit.png")]) == 2


def test_refuses_to_overwrite_foreign_data(tmp_path: Path) -> None:
    out = tmp_path / "real"
    (out / "gta5" / "images").mkdir(parents=True)
    (out / "gta5" / "images" / "00001.png").write_bytes(b"real data")
    with pytest.raises(FileExistsError):
        generate(out, seed=0, n_source=1, n_target_train=0, n_target_val=0, size=SMALL)
    assert (out / "gta5" / "images" / "00001.png").read_bytes() == b"real data"


def test_is_procedural(dataset: Path, tmp_path: Path) -> None:
    from segdemo.synthetic import is_procedural

    assert (
        is_procedural(dataset) and is_procedural(dataset / "gta5") and is_procedural(dataset / "cityscapes")
    )
    (tmp_path / "real" / "gta5").mkdir(parents=True)
    assert not is_procedural(tmp_path / "real" / "gta5")


def test_generate_rejects_negative_counts(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate(tmp_path / "x", n_source=-1, size=SMALL)


# --- command line -------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "segdemo.synthetic", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_writes_dataset(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    result = _cli(
        "--out",
        str(out),
        "--seed",
        "5",
        "--n-source",
        "2",
        "--n-target-train",
        "1",
        "--n-target-val",
        "1",
        "--size",
        "64x32",
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 2 source images" in result.stdout and " s" in result.stdout
    assert sorted(p.name for p in (out / "gta5" / "images").iterdir()) == ["00001.png", "00002.png"]
    assert len(list((out / "cityscapes" / "leftImg8bit" / "val").rglob("*.png"))) == 1
    assert "seed: 5" in (out / "README.txt").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "x", "--size", "320"], "WIDTHxHEIGHT"),
        (["--out", "x", "--size", "8x4"], "at least"),
        (["--out", "x", "--n-source", "-3"], ">= 0"),
        (["--out", "x", "--n-target-val", "many"], "whole number"),
        (["--out", "x", "--seed", "-1"], ">= 0"),
        (["--seed", "1"], "--out"),
    ],
)
def test_cli_rejects_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    result = _cli(*[str(tmp_path / a) if a == "x" else a for a in args])
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()
