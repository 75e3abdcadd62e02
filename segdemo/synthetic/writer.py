"""Writing the two data sets: the source in the GTA5 layout, the target in the Cityscapes layout, a README."""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from collections.abc import Collection
from itertools import repeat
from pathlib import Path

import numpy as np
from PIL import Image

from segdemo.files import PNG_COMPRESS_LEVEL, atomic_write
from segdemo.labels import NUM_CLASSES, TRAIN_ID_TO_LABEL_ID
from segdemo.synthetic.render import DEFAULT_SIZE, check_size, render_scene

CITIES: dict[str, tuple[str, ...]] = {"train": ("synthaven", "polyburg"), "val": ("procville",)}
"""Made-up city names per Cityscapes split; image i goes to city i % len(cities)."""

FRAME = 19  # Cityscapes annotates frame 19 of each 30-frame snippet

_README_MARKER = "segdemo procedural street scenes"

GENERATOR_VERSION = 8
"""Raised whenever the images of a seed change (2: photographic light, cameras and layouts, issue 17; 3:
signal heads on both sides of the crossing, half with backplates; 4: front-yard walls, fences and hedges
painted in front of the buildings; 5: the source's night light on the carriageway and its shadows of things
out of view; 6: the third-person camera at the player's head height, the player nearer; 7: a trial, never
released; 8: the source's foliage in darker and olive greens with lit and shaded leaf clusters, and a third
of its skies pale as in GTA5's overcast and hazy weathers). Data written by another version counts as
incomplete and is written again; the demo retrains what was trained on it. READMEs without the line are
version 1."""
_GENERATOR_KEY = "generator"

_DOMAIN_CODE = {"source": 1, "target": 2}
_SPLIT_CODE = {"train": 1, "val": 2}
_CHUNK = 50  # at most this many images per task of a generate() worker (and per progress line)

PARTS = {"source": ("source", "train"), "target_train": ("target", "train"), "target_val": ("target", "val")}
"""The three sets ``generate`` writes, as (domain, split); it can write each on its own (``parts``): the demo
writes the source and the target val images first, since its first variants need no target train images."""
_README_COUNTS = {
    "source": "source images",
    "target_train": "target train images",
    "target_val": "target val images",
}


def scene_rng(seed: int, domain: str, split: str, index: int) -> np.random.Generator:
    """The generator for one image: depends only on (seed, domain, split, index)."""
    return np.random.default_rng(
        np.random.SeedSequence([int(seed), _DOMAIN_CODE[domain], _SPLIT_CODE[split], int(index)])
    )


@functools.cache
def _label_id_palette() -> list[int]:
    """768-entry PNG palette: the official Cityscapes colour of every label id (like GTA5's labels)."""
    from cityscapesscripts.helpers.labels import labels

    palette = [0] * 768
    for lab in labels:
        if 0 <= lab.id < 256:
            palette[3 * lab.id : 3 * lab.id + 3] = list(lab.color)
    return palette


def train_ids_to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """trainIds -> Cityscapes label ids; ignore (and anything outside 0..18) -> 0 "unlabeled"."""
    lut = np.zeros(256, np.uint8)
    lut[:NUM_CLASSES] = TRAIN_ID_TO_LABEL_ID
    return lut[np.asarray(train_ids, np.uint8)]


def _save_png(image: Image.Image, path: Path) -> None:
    # regenerable data: atomic (a killed run never leaves a truncated PNG) but not flushed to the disk
    save = lambda tmp: image.save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    atomic_write(path, save, durable=False)


def cityscapes_stem(split: str, index: int) -> tuple[str, str]:
    """(city, file stem without suffix) of target image `index` in `split`."""
    cities = CITIES[split]
    city = cities[index % len(cities)]
    return city, f"{city}_{index // len(cities):06d}_{FRAME:06d}"


def _readme(out: Path, seed: int, counts: dict[str, int], size: tuple[int, int]) -> str:
    w, h = size
    count_lines = "".join(
        f"{_README_COUNTS[part]}: {counts[part]}\n" for part in PARTS
    )  # is_complete reads them
    return (
        f"{_README_MARKER}\n==================================\n\nProcedurally generated street scenes "
        "written by segdemo.synthetic. This is NOT GTA5 and NOT\nCityscapes: both folders only use their "
        "file layouts (and Cityscapes label ids) so the real-data\nloaders read them unchanged.\n\n  gta5/  "
        "      source domain (game-like look): images/NNNNN.png,\n               labels/NNNNN.png (palette "
        "PNG of label ids)\n  cityscapes/  target domain (photo-like look) "
        f"leftImg8bit/{{train,val}}/<city>/...,\n               "
        f"gtFine/{{train,val}}/<city>/..._gtFine_labelIds.png and _gtFine_labelTrainIds.png\n\nseed: "
        f"{seed}\nsize: {w}x{h}\n{_GENERATOR_KEY}: {GENERATOR_VERSION}\n{count_lines}\n"
        "Regenerate with:\n  python "
        f"-m segdemo.synthetic --out {out} --seed {seed} --n-source {counts['source']} --n-target-train "
        f"{counts['target_train']} --n-target-val {counts['target_val']} --size {w}x{h}\n"
    )


def _has_readme(folder: Path) -> bool:
    readme = folder / "README.txt"
    return readme.is_file() and readme.read_text(errors="replace").startswith(_README_MARKER)


def is_procedural(root: str | Path) -> bool:
    """True if `root` (a ``generate`` output folder or its gta5/ or cityscapes/ folder) holds our data."""
    root = Path(root)
    return _has_readme(root) or _has_readme(root.parent)


def _readme_numbers(folder: Path) -> dict[str, int]:
    """The ``key: number`` lines of our README in ``folder`` (seed, generator, image counts)."""
    numbers = {}
    for line in (folder / "README.txt").read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if value.strip().isdigit():
            numbers[key] = int(value)
    return numbers


def generator_version(root: str | Path) -> int | None:
    """The :data:`GENERATOR_VERSION` that wrote ``root`` (a ``generate`` output or its gta5/ or cityscapes/
    folder), or None if it is not one."""
    root = Path(root)
    for folder in (root, root.parent):
        if _has_readme(folder):
            return _readme_numbers(folder).get(_GENERATOR_KEY, 1)
    return None


def _part_folders(root: Path, part: str) -> tuple[tuple[Path, str], ...]:
    """(folder, glob) of each file kind one part writes, one file per image each."""
    if part == "source":
        return ((root / "gta5" / "images", "*.png"), (root / "gta5" / "labels", "*.png"))
    split = PARTS[part][1]
    cs = root / "cityscapes"
    return (
        (cs / "leftImg8bit" / split, "*/*_leftImg8bit.png"),
        (cs / "gtFine" / split, "*/*_gtFine_labelIds.png"),
        (cs / "gtFine" / split, "*/*_gtFine_labelTrainIds.png"),
    )


def _check_parts(parts: Collection[str] | None) -> tuple[str, ...]:
    if parts is None:
        return tuple(PARTS)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown parts {unknown}; choose among {', '.join(PARTS)}")
    return tuple(p for p in PARTS if p in parts)


def is_complete(root: str | Path, parts: Collection[str] | None = None) -> bool:
    """True if ``root`` holds a ``generate`` output with every image its README counts (and their labels), in
    each of ``parts`` (default: all of :data:`PARTS`): False for an interrupted generation, which running
    ``generate`` again completes."""
    parts = _check_parts(parts)
    root = Path(root)
    if not _has_readme(root):
        return False
    numbers = _readme_numbers(root)
    if numbers.get(_GENERATOR_KEY, 1) != GENERATOR_VERSION:
        return False
    counts = {key: numbers[key] for key in _README_COUNTS.values() if key in numbers}
    if len(counts) != len(PARTS):
        return False
    return all(
        len(list(folder.glob(pattern))) == counts[_README_COUNTS[part]]
        for part in parts
        for folder, pattern in _part_folders(root, part)
    )


def _prepare(out: Path) -> None:
    """Refuse to write into folders that hold something other than our own earlier output."""
    ours = _has_readme(out)
    for sub in ("gta5", "cityscapes"):
        d = out / sub
        if d.exists() and any(d.iterdir()) and not ours:
            raise FileExistsError(
                f"{d} exists and was not written by segdemo.synthetic; choose another --out"
            )


def _prune(root: Path, keep: set[Path]) -> None:
    """Remove PNGs (and temp files) of an earlier, larger run that this run did not rewrite."""
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in (".png", ".tmp") and path not in keep:
            path.unlink()


def scene_files(
    out: Path, domain: str, split: str, index: int, img: np.ndarray, train_ids: np.ndarray
) -> tuple[tuple[Path, Image.Image], ...]:
    """The files of one rendered scene under ``out``, as (path, image): the image and its labels in the
    domain's layout (GTA5: image and palette label ids; Cityscapes: image, labelIds, labelTrainIds)."""
    label_ids = train_ids_to_label_ids(train_ids)
    if domain == "source":
        name = f"{index + 1:05d}.png"
        label = Image.fromarray(label_ids, mode="P")
        label.putpalette(_label_id_palette())
        return (
            (out / "gta5" / "images" / name, Image.fromarray(img, mode="RGB")),
            (out / "gta5" / "labels" / name, label),
        )
    city, stem = cityscapes_stem(split, index)
    cs = out / "cityscapes"
    img_dir, gt_dir = cs / "leftImg8bit" / split / city, cs / "gtFine" / split / city
    return (
        (img_dir / f"{stem}_leftImg8bit.png", Image.fromarray(img, mode="RGB")),
        (gt_dir / f"{stem}_gtFine_labelIds.png", Image.fromarray(label_ids, mode="L")),
        (gt_dir / f"{stem}_gtFine_labelTrainIds.png", Image.fromarray(train_ids, mode="L")),
    )


def _write_image(
    out: Path, seed: int, size: tuple[int, int], domain: str, split: str, index: int
) -> list[Path]:
    """Render image ``index`` of one domain and split and write its files; the paths written."""
    img, train_ids = render_scene(scene_rng(seed, domain, split, index), domain, size)
    files = scene_files(out, domain, split, index, img, train_ids)
    for path, image in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        _save_png(image, path)
    return [path for path, _ in files]


def _write_chunk(
    out: Path, seed: int, size: tuple[int, int], items: list[tuple[str, str, int]]
) -> list[Path]:
    return [
        path for domain, split, index in items for path in _write_image(out, seed, size, domain, split, index)
    ]


def generate(
    out: str | Path,
    seed: int = 0,
    n_source: int = 500,
    n_target_train: int = 500,
    n_target_val: int = 100,
    size: tuple[int, int] = DEFAULT_SIZE,
    progress: bool = False,
    workers: int = 1,
    parts: Collection[str] | None = None,
) -> dict[str, Path]:
    """Write the source domain (GTA5 layout) and the target domain (Cityscapes layout) under `out`.

    Returns {"gta5": out/"gta5", "cityscapes": out/"cityscapes"}. The bytes are a function of
    (seed, size) and each image's index only, so re-running reproduces the files exactly, with any number
    of ``workers`` (processes that render images side by side). ``parts`` (default: all of :data:`PARTS`)
    writes only those sets and leaves the others' files as they are; the README counts all three.
    """
    parts = _check_parts(parts)
    size = check_size(size)
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    for name, n in (
        ("n_source", n_source),
        ("n_target_train", n_target_train),
        ("n_target_val", n_target_val),
    ):
        if int(n) < 0:
            raise ValueError(f"{name} must be >= 0, got {n}")
    out = Path(out)
    _prepare(out)
    if _has_readme(out) and generator_version(out) != GENERATOR_VERSION:
        # The other parts were drawn by another generator: remove them, so that they count as incomplete
        # under the new README rather than pass as this version's.
        for part in set(PARTS) - set(parts):
            for folder, _ in _part_folders(out, part):
                if folder.is_dir():
                    _prune(folder, set())
    out.mkdir(parents=True, exist_ok=True)
    counts = {"source": int(n_source), "target_train": int(n_target_train), "target_val": int(n_target_val)}
    (out / "README.txt").write_text(_readme(out, seed, counts, size))
    gta, cs = out / "gta5", out / "cityscapes"
    for folder in (gta / "images", gta / "labels", cs):
        folder.mkdir(parents=True, exist_ok=True)
    items = [(*PARTS[part], i) for part in parts for i in range(counts[part])]
    # Several tasks per worker, so that the last ones finish together.
    chunk = max(1, min(_CHUNK, -(-len(items) // (4 * int(workers)))))
    chunks = [items[i : i + chunk] for i in range(0, len(items), chunk)]
    written: set[Path] = set()
    start = time.perf_counter()

    def tick(done: int) -> None:
        if progress:
            rate = done / max(time.perf_counter() - start, 1e-9) * 60
            print(f"  {done}/{len(items)} images ({rate:.0f}/min)", file=sys.stderr, flush=True)

    done = 0
    with contextlib.ExitStack() as stack:
        mapper = map  # in this process, or (several workers) the same calls in a pool, results in order
        if int(workers) > 1 and len(chunks) > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: the caller may hold threads (PyTorch's) a forked child would inherit locked.
            context = multiprocessing.get_context("spawn")
            mapper = stack.enter_context(ProcessPoolExecutor(int(workers), mp_context=context)).map
        results = mapper(_write_chunk, repeat(out), repeat(seed), repeat(size), chunks)
        for chunk, paths in zip(chunks, results):
            written.update(paths)
            done += len(chunk)
            tick(done)
    for folder in {folder for part in parts for folder, _ in _part_folders(out, part)}:
        _prune(folder, written)
    return {"gta5": gta, "cityscapes": cs}
