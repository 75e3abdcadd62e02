"""The app's Segment page: from a 2048 x 1024 upload to the BiSeNet overlay on screen, on 2 CPU cores.

Two measurements, both inside the app's own code (no browser, no network):

* **the page**: ``streamlit.testing`` runs ``pages/segment.py`` as the server would, on an upload of a
  new photo each round (a new image misses the prediction cache, as a user's new photo does). Timed
  from the upload to the end of the script run: decoding, prediction, overlay, the images encoded for
  the browser, the download buttons' PNGs, the class table. The checkpoint is loaded before (the app
  loads it once, when it is first chosen); that one-off time is reported on its own.
* **the stages**, the segdemo functions the page calls (``load_image``, ``predict``, ``overlay``,
  ``label_png_bytes``, ``to_png_bytes``), with the default runtime and with the plain PyTorch model,
  taking turns on the same upload.

    python -m benchmarks.app_overlay                    # a seeded BiSeNet at the report's 512 x 1024
    python -m benchmarks.app_overlay --checkpoint checkpoints/bisenet_gta5_dacs --format jpeg
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.common import (
    REPO,
    describe_device,
    markdown_table,
    median,
    parse_size,
    section_header,
    time_interleaved,
    trained_like,
    write_section,
)
from segdemo.checkpoints import default_metadata, load_model, save_checkpoint
from segdemo.images import load_image
from segdemo.inference import predict
from segdemo.models import build_model
from segdemo.synthetic import render_scene, scene_rng
from segdemo.viz import OVERLAY_ALPHA, label_png_bytes, overlay, to_png_bytes

TARGET_SECONDS = 2.0
ALPHA = OVERLAY_ALPHA  # the page's default overlay opacity


def photo_bytes(index: int, size: tuple[int, int], image_format: str) -> bytes:
    """A photo-like procedural street scene, ``size`` = (height, width), encoded as an upload would be."""
    height, width = size
    image, _ = render_scene(scene_rng(1, "target", "val", index), "target", (width, height))
    buffer = io.BytesIO()
    Image.fromarray(image).save(
        buffer, format=image_format, **({"quality": 92} if image_format == "JPEG" else {})
    )
    return buffer.getvalue()


def make_checkpoint(root: Path, checkpoint: str | None, input_size: tuple[int, int]) -> str:
    """A checkpoint folder under ``root`` (the given one linked in, or a seeded BiSeNet); its name."""
    if checkpoint:
        source = Path(checkpoint).expanduser().resolve()
        (root / source.name).symlink_to(source, target_is_directory=source.is_dir())
        return source.name
    torch.manual_seed(0)
    model = trained_like(build_model("bisenet"), seed=0)
    meta = default_metadata(
        "bisenet", input_size=list(input_size), variant="bisenet_gta5_dacs", train_data={"kind": "procedural"}
    )
    save_checkpoint(model, root / "bisenet_gta5_dacs", meta)
    return "bisenet_gta5_dacs"


def stage_rows(model, meta, upload: bytes, repeats: int, warmup: int) -> list[list[str]]:
    """Each stage's median ms with the default runtime and with the plain model, taking turns."""
    stages: dict[str, dict[str, list[float]]] = {"default": {}, "plain": {}}

    def timed(record: dict[str, list[float]], name: str, step):
        start = time.perf_counter()
        result = step()
        record.setdefault(name, []).append((time.perf_counter() - start) * 1000)
        return result

    def pipeline(runtime: str):
        backend = "auto" if runtime == "default" else "plain"

        def run() -> None:
            record = stages[runtime]
            image = timed(record, "decode (load_image)", lambda: np.asarray(load_image(upload)))
            prediction = timed(
                record,
                "predict (resize, network, labels at the photo's size)",
                lambda: predict(model, meta, image, backend=backend),
            )
            picture = timed(record, "overlay", lambda: overlay(image, prediction.train_ids, ALPHA))
            timed(
                record,
                "download buttons' PNGs (mask, overlay)",
                lambda: (label_png_bytes(prediction.train_ids), to_png_bytes(picture)),
            )

        return run

    totals = time_interleaved({"default": pipeline("default"), "plain": pipeline("plain")}, repeats, warmup)
    rows = []
    for name in stages["default"]:
        # The stage lists hold the warm-up rounds too: drop them, as time_interleaved does for the totals.
        default, plain = stages["default"][name][warmup:], stages["plain"][name][warmup:]
        rows.append([name, f"{median(default):.0f}", f"{median(plain):.0f}"])
    rows.append(["**total**", f"**{median(totals['default']):.0f}**", f"**{median(totals['plain']):.0f}**"])
    return rows


def page_times(
    root: Path, uploads: list[tuple[str, bytes, str]], timeout: float
) -> tuple[float, list[float], str]:
    """(ms to open the page the first time, ms per upload of a new photo, the runtime the page reports)."""
    from streamlit.testing.v1 import AppTest

    os.environ["SEGDEMO_CHECKPOINTS"] = str(root)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=timeout)
    at.run()
    start = time.perf_counter()
    # Opens on a procedural sample: loads the checkpoint (and builds its ONNX Runtime form) once.
    at.switch_page("pages/segment.py").run()
    first_ms = (time.perf_counter() - start) * 1000
    at.radio(key="seg_input").set_value("Upload a photo").run()
    times = []
    for name, data, mime in uploads:
        uploader = at.file_uploader(key="seg_upload")
        if uploader.value is not None:
            uploader.clear()
        uploader.upload(name, data, mime)
        start = time.perf_counter()
        at.run()
        times.append((time.perf_counter() - start) * 1000)
        if at.exception or at.error or len(at.image) != 2:
            problems = [e.value for e in at.exception] + [e.value for e in at.error]
            raise RuntimeError(f"the Segment page did not show the overlay: {problems}")
    runtime = str(at.dataframe[-1].value["runtime"][0])
    return first_ms, times, runtime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.app_overlay",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--image-size", type=parse_size, default=(1024, 2048), help="HEIGHTxWIDTH of the upload"
    )
    parser.add_argument(
        "--input-size",
        type=parse_size,
        default=(512, 1024),
        help="HEIGHTxWIDTH the network runs at (default: the report's 512x1024)",
    )
    parser.add_argument("--checkpoint", help="a BiSeNet checkpoint folder (default: a seeded BiSeNet)")
    parser.add_argument(
        "--format", choices=("png", "jpeg"), default="png", help="upload format (default png)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    image_format = args.format.upper()
    mime, suffix = ("image/png", "png") if image_format == "PNG" else ("image/jpeg", "jpg")

    uploads = [
        (f"street_{i}.{suffix}", photo_bytes(i, args.image_size, image_format), mime)
        for i in range(args.repeats)
    ]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        name = make_checkpoint(root, args.checkpoint, args.input_size)
        model, meta = load_model(root / name)
        first_ms, page_ms, runtime = page_times(root, uploads, timeout=600)
        rows = stage_rows(model, meta, uploads[0][1], args.repeats, args.warmup)

    page_median = median(page_ms)
    met = page_median <= TARGET_SECONDS * 1000
    height, width = args.image_size
    in_h, in_w = meta["input_size"]
    lines = [
        section_header(f"App: a {width} x {height} upload to the BiSeNet overlay", describe_device("cpu")),
        (
            f"BiSeNet at {in_w} x {in_h} "
            f"({'checkpoint ' + args.checkpoint if args.checkpoint else 'seeded weights'}), {image_format} "
            f"uploads of procedural street scenes, {len(page_ms)} uploads of new photos."
        ),
        "",
        markdown_table(
            ["the Segment page (streamlit.testing, whole script run)", "median ms"],
            [
                [
                    f"upload of a new photo to the page with its overlay (runtime: {runtime})",
                    f"**{page_median:.0f}**",
                ],
                [
                    (
                        "opening the page the first time: checkpoint load, its ONNX Runtime form, a "
                        "sample's prediction"
                    ),
                    f"{first_ms:.0f}",
                ],
            ],
        ),
        "",
        f"Target: at most {TARGET_SECONDS:g} s: **{'met' if met else 'NOT met'}**.",
        "",
        (
            f"The stages, segdemo's functions as the page calls them ({args.repeats} rounds after "
            f"{args.warmup} warm-up, both runtimes taking turns on the same upload):"
        ),
        "",
        markdown_table(["stage", "default runtime, ms", "plain PyTorch model, ms"], rows),
        "",
        (
            "The page's time beyond these stages is Streamlit's: the photo and the overlay encoded for the "
            "browser (JPEG, resized to the page width), the class table, the page elements. The page time "
            "runs to the end of the script; the browser already shows the overlay when the download "
            "buttons' PNGs are being made."
        ),
    ]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        write_section("app_overlay", section)
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
