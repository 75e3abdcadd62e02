"""How fast the procedural scenes are made: the demo's first checkpoint waits for 700 of them.

Per image, on one core (this process): rendering (``segdemo.synthetic.render_scene``) of each domain, and
writing its PNGs at the project's zlib level (``segdemo.files.PNG_COMPRESS_LEVEL``) and at Pillow's default
level 6 (what the writer used before); then ``segdemo.synthetic.generate`` as the demo calls it before its
first variant (the source and the target val images, one worker process per core).

    python -m benchmarks.generation                  # 40 images per domain, then 600 + 100 with generate
    python -m benchmarks.generation --images 20 --no-generate
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import PIL
from PIL import Image

from benchmarks.common import markdown_table, section_header, write_section
from segdemo.files import PNG_COMPRESS_LEVEL
from segdemo.hardware import cpu_name
from segdemo.synthetic import DOMAINS, generate, render_scene, scene_rng
from segdemo.synthetic.writer import scene_files
from train.data import available_cores
from train.demo import DEMO_DATA, DEMO_SEED

PILLOW_DEFAULT_LEVEL = 6


def png_ms(images: list[Image.Image], level: int) -> tuple[float, int]:
    """Milliseconds and bytes to encode these images as PNG at zlib ``level``."""
    start, size = time.perf_counter(), 0
    for image in images:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=level)
        size += buffer.tell()
    return (time.perf_counter() - start) * 1000.0, size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.generation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--images", type=int, default=40, help="images per domain (default 40)")
    parser.add_argument("--no-generate", action="store_true", help="skip timing generate()")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error("--images must be at least 1")
    size = DEMO_DATA["size"]
    render_scene(scene_rng(DEMO_SEED, "source", "train", 0), "source", size)  # imports and caches warm
    rows = []
    for domain in DOMAINS:
        split = "train"
        start = time.perf_counter()
        files = []
        for index in range(args.images):
            image, train_ids = render_scene(scene_rng(DEMO_SEED, domain, split, index), domain, size)
            files += [png for _, png in scene_files(Path("."), domain, split, index, image, train_ids)]
        render = (time.perf_counter() - start) * 1000.0 / args.images
        (fast, fast_bytes), (default, default_bytes) = (
            png_ms(files, level) for level in (PNG_COMPRESS_LEVEL, PILLOW_DEFAULT_LEVEL)
        )
        rows.append(
            [
                domain,
                f"{render:.1f}",
                f"{fast / args.images:.1f} ({fast_bytes / args.images / 1024:.0f} KiB)",
                f"{default / args.images:.1f} ({default_bytes / args.images / 1024:.0f} KiB)",
                f"{render + fast / args.images:.1f}",
            ]
        )
    headers = [
        f"domain ({size[0]}x{size[1]})",
        "render ms / image",
        f"PNGs at level {PNG_COMPRESS_LEVEL} ms (size)",
        f"PNGs at level {PILLOW_DEFAULT_LEVEL} ms (size)",
        "ms / image, one core",
    ]
    body = (
        f"{args.images} images per domain, rendered and encoded in this process (one core); a source image "
        "has two PNGs (image, labels), a target image three (image, labelIds, labelTrainIds).\n\n"
        + markdown_table(headers, rows)
    )
    workers = available_cores()
    if not args.no_generate:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            generate(
                os.path.join(folder, "data"),
                seed=DEMO_SEED,
                workers=workers,
                parts=["source", "target_val"],
                **DEMO_DATA,
            )
            seconds = time.perf_counter() - start
        images = DEMO_DATA["n_source"] + DEMO_DATA["n_target_val"]
        body += (
            "\n\nWhat the demo makes before its first variant, "
            f"`generate(..., parts=['source', 'target_val'])` with {workers} worker process(es): "
            f"{images} images in **{seconds:.1f} s** ({images / seconds:.1f} images/s)."
        )
    device = (
        f"{cpu_name()}, {workers} cores; numpy {np.__version__}, OpenCV {cv2.__version__}, "
        f"Pillow {PIL.__version__}, Python {platform.python_version()}"
    )
    section = section_header("Procedural scenes: rendering and writing", device) + "\n" + body
    print(section)
    if not args.no_write:
        print(f"written to {write_section('generation', section)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
