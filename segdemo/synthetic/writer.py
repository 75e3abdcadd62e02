"""Writing the two data sets: the source in the GTA5 layout, the target in the Cityscapes layout, a README."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from segdemo.files import atomic_write
from segdemo.labels import NUM_CLASSES, TRAIN_ID_TO_LABEL_ID
from segdemo.synthetic.render import DEFAULT_SIZE, check_size, render_scene

CITIES: dict[str, tuple[str, ...]] = {"train": ("synthaven", "polyburg"), "val": ("procville",)}
"""Made-up city names per Cityscapes split; image i goes to city i % len(cities)."""

FRAME = 19  # Cityscapes annotates frame 19 of each 30-frame snippet

_README_MARKER = "segdemo procedural street scenes"

_DOMAIN_CODE = {"source": 1, "target": 2}
_SPLIT_CODE = {"train": 1, "val": 2}


def scene_rng(seed: int, domain: str, split: str, index: int) -> np.random.Generator:
    """The generator for one image: depends only on (seed, domain, split, index)."""
    return np.random.default_rng(
        np.random.SeedSequence([int(seed), _DOMAIN_CODE[domain], _SPLIT_CODE[split], int(index)])
    )


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
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG", compress_level=6), durable=False)


def cityscapes_stem(split: str, index: int) -> tuple[str, str]:
    """(city, file stem without suffix) of target image `index` in `split`."""
    cities = CITIES[split]
    city = cities[index % len(cities)]
    return city, f"{city}_{index // len(cities):06d}_{FRAME:06d}"


def _readme(out: Path, seed: int, counts: dict[str, int], size: tuple[int, int]) -> str:
    w, h = size
    return (
        f"{_README_MARKER}\n==================================\n\nProcedurally generated street scenes "
        "written by segdemo.synthetic. This is NOT GTA5 and NOT\nCityscapes: both folders only use their "
        "file layouts (and Cityscapes label ids) so the real-data\nloaders read them unchanged.\n\n  gta5/  "
        "      source domain (game-like look): images/NNNNN.png,\n               labels/NNNNN.png (palette "
        "PNG of label ids)\n  cityscapes/  target domain (photo-like look) "
        f"leftImg8bit/{{train,val}}/<city>/...,\n               "
        f"gtFine/{{train,val}}/<city>/..._gtFine_labelIds.png and _gtFine_labelTrainIds.png\n\nseed: "
        f"{seed}\nsize: {w}x{h}\nsource images: {counts['source']}\ntarget train images: "
        f"{counts['target_train']}\ntarget val images: {counts['target_val']}\n\nRegenerate with:\n  python "
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


def generate(
    out: str | Path,
    seed: int = 0,
    n_source: int = 500,
    n_target_train: int = 500,
    n_target_val: int = 100,
    size: tuple[int, int] = DEFAULT_SIZE,
    progress: bool = False,
) -> dict[str, Path]:
    """Write the source domain (GTA5 layout) and the target domain (Cityscapes layout) under `out`.

    Returns {"gta5": out/"gta5", "cityscapes": out/"cityscapes"}. The bytes are a function of
    (seed, size) and each image's index only, so re-running reproduces the files exactly.
    """
    size = check_size(size)
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    for name, n in (
        ("n_source", n_source),
        ("n_target_train", n_target_train),
        ("n_target_val", n_target_val),
    ):
        if int(n) < 0:
            raise ValueError(f"{name} must be >= 0, got {n}")
    out = Path(out)
    _prepare(out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {"source": int(n_source), "target_train": int(n_target_train), "target_val": int(n_target_val)}
    (out / "README.txt").write_text(_readme(out, seed, counts, size))
    gta, cs = out / "gta5", out / "cityscapes"
    written: set[Path] = set()
    palette = _label_id_palette()
    total, done, start = sum(counts.values()), 0, time.perf_counter()

    def tick() -> None:
        nonlocal done
        done += 1
        if progress and (done % 50 == 0 or done == total):
            rate = done / max(time.perf_counter() - start, 1e-9) * 60
            print(f"  {done}/{total} images ({rate:.0f}/min)", file=sys.stderr, flush=True)

    (gta / "images").mkdir(parents=True, exist_ok=True)
    (gta / "labels").mkdir(parents=True, exist_ok=True)
    for i in range(counts["source"]):
        img, train_ids = render_scene(scene_rng(seed, "source", "train", i), "source", size)
        name = f"{i + 1:05d}.png"
        label = Image.fromarray(train_ids_to_label_ids(train_ids), mode="P")
        label.putpalette(palette)
        for path, image in (
            (gta / "images" / name, Image.fromarray(img, mode="RGB")),
            (gta / "labels" / name, label),
        ):
            _save_png(image, path)
            written.add(path)
        tick()
    for split, n in (("train", counts["target_train"]), ("val", counts["target_val"])):
        for i in range(n):
            img, train_ids = render_scene(scene_rng(seed, "target", split, i), "target", size)
            city, stem = cityscapes_stem(split, i)
            img_dir, gt_dir = cs / "leftImg8bit" / split / city, cs / "gtFine" / split / city
            img_dir.mkdir(parents=True, exist_ok=True)
            gt_dir.mkdir(parents=True, exist_ok=True)
            files = (
                (img_dir / f"{stem}_leftImg8bit.png", Image.fromarray(img, mode="RGB")),
                (
                    gt_dir / f"{stem}_gtFine_labelIds.png",
                    Image.fromarray(train_ids_to_label_ids(train_ids), mode="L"),
                ),
                (gt_dir / f"{stem}_gtFine_labelTrainIds.png", Image.fromarray(train_ids, mode="L")),
            )
            for path, image in files:
                _save_png(image, path)
                written.add(path)
            tick()
    for root in (gta, cs):
        _prune(root, written)
    return {"gta5": gta, "cityscapes": cs}
