"""``python -m segdemo.segment``: segment image files with a checkpoint, from the command line.

    python -m segdemo.segment street.jpg more/*.png --checkpoint checkpoints/bisenet_gta5_dacs --out
    segmented/

For every image it writes ``OUT/<stem>_mask.png`` (trainIds 0-18, palette PNG) and ``OUT/<stem>_overlay.png``.
Files are decoded exactly as the app decodes uploads (:func:`segdemo.images.load_image`: the same limits
and the same one-sentence messages). A file that cannot be used gets one line on stderr naming it, and the
others are still segmented.

Nothing of the user's is written over: before anything runs, an output that would replace one of the input
images is refused, always, and so is one that would replace an existing file this tool did not write (its PNGs
say so in their ``Software`` text), unless ``--overwrite`` is given. Its own earlier outputs are replaced.

Exit status: 0 all segmented, 1 some files could not be used, 2 bad arguments, outputs that would replace
other files, or a checkpoint that cannot be loaded.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import BinaryIO

import numpy as np

from segdemo.checkpoints import CheckpointError
from segdemo.files import atomic_write
from segdemo.hardware import resolve_device
from segdemo.images import MAX_UPLOAD_BYTES, load_image
from segdemo.inference import Prediction, Segmenter
from segdemo.viz import OVERLAY_ALPHA, label_png_bytes, overlay, to_png_bytes, written_by_segdemo

__all__ = ["conflicts", "main", "output_paths", "segment_file"]


def segment_file(
    source: bytes | str | os.PathLike[str] | BinaryIO,
    segmenter: Segmenter,
    out_dir: str | os.PathLike[str],
    name: str,
    alpha: float = OVERLAY_ALPHA,
    max_bytes: int = MAX_UPLOAD_BYTES,
) -> tuple[Prediction, Path, Path]:
    """Decode ``source`` as an upload, segment it, write ``<name>_mask.png`` and ``<name>_overlay.png``.

    Returns ``(prediction, mask path, overlay path)``. An unusable file raises
    :class:`segdemo.images.ImageError` before anything is written.
    """
    image = load_image(source, max_bytes=max_bytes)
    prediction = segmenter.segment(image)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    mask_path, overlay_path = output_paths(out_dir, name)
    # Atomic: an interrupted run never leaves half a PNG under the final name.
    mask = label_png_bytes(prediction.train_ids)
    atomic_write(mask_path, lambda tmp: Path(tmp).write_bytes(mask))
    picture = to_png_bytes(overlay(np.asarray(image), prediction.train_ids, alpha))
    atomic_write(overlay_path, lambda tmp: Path(tmp).write_bytes(picture))
    return prediction, mask_path, overlay_path


def output_paths(out_dir: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """``(<out>/<name>_mask.png, <out>/<name>_overlay.png)``."""
    out = Path(out_dir)
    return out / f"{name}_mask.png", out / f"{name}_overlay.png"


def conflicts(inputs: list[Path], outputs: list[Path], overwrite: bool = False) -> list[str]:
    """Why each output may not be written: it is one of the inputs, or an existing file this tool did not
    write
    (allowed with ``overwrite``). Empty when every output is safe to write."""
    resolved = {path.resolve() for path in inputs}
    problems = []
    for path in outputs:
        if path.resolve() in resolved:
            problems.append(
                f"{path} is one of the input images: it would be written over (choose another --out)"
            )
        elif path.is_dir():
            problems.append(f"{path} is a folder: an output cannot be written there (choose another --out)")
        elif path.exists() and not overwrite and not written_by_segdemo(path):
            problems.append(
                f"{path} already exists and was not written by this tool: it would be replaced (pass "
                "--overwrite to replace it, or choose another --out)"
            )
    return problems


def _unique_names(paths: list[Path]) -> list[str]:
    """Output stems: the file's stem, with -2, -3 ... when two inputs share one (a/x.png, b/x.jpg)."""
    seen: dict[str, int] = {}
    names = []
    for path in paths:
        count = seen.get(path.stem, 0) + 1
        seen[path.stem] = count
        names.append(path.stem if count == 1 else f"{path.stem}-{count}")
    return names


def _megabytes(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of megabytes, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return int(value * 2**20)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m segdemo.segment", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "images", nargs="+", type=Path, help="image files (PNG, JPEG, WebP, GIF, BMP, TIFF, ...)"
    )
    parser.add_argument(
        "--checkpoint", type=Path, required=True, help="our checkpoint folder or a course-template .pth"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the masks and overlays")
    parser.add_argument(
        "--alpha", type=float, default=OVERLAY_ALPHA, help=f"overlay opacity, 0-1 (default {OVERLAY_ALPHA})"
    )
    parser.add_argument(
        "--max-mb",
        type=_megabytes,
        default=MAX_UPLOAD_BYTES,
        dest="max_bytes",
        help=f"refuse larger files (default {MAX_UPLOAD_BYTES // 2**20})",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing files of the same names that this tool did not write (never inputs)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0.0 <= args.alpha <= 1.0:
        print(f"error: --alpha must be in [0, 1], got {args.alpha}", file=sys.stderr)
        return 2
    names = _unique_names(args.images)
    problems = conflicts(
        args.images, [p for name in names for p in output_paths(args.out, name)], args.overwrite
    )
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        print("nothing was written", file=sys.stderr)
        return 2
    try:
        segmenter = Segmenter.from_checkpoint(args.checkpoint, device=resolve_device(args.device))
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for path, name in zip(args.images, names):
        try:
            prediction, mask_path, _ = segment_file(
                path, segmenter, args.out, name, args.alpha, args.max_bytes
            )
        except (ValueError, RuntimeError) as exc:  # ImageError: the file; others: the model on this image
            failed += 1
            print(f"{path}: {exc}", file=sys.stderr)
            continue
        height, width = prediction.train_ids.shape
        print(f"{path}: {width} x {height} -> {mask_path} ({prediction.seconds * 1000:.0f} ms)")
    if failed:
        print(f"{failed} of {len(args.images)} files could not be segmented", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
