"""``python -m segdemo.synthetic``: generate the embedded data set."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from segdemo.synthetic.render import DEFAULT_SIZE, MIN_SIZE
from segdemo.synthetic.writer import generate


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 320x160, got {text!r}") from None
    if w < MIN_SIZE[0] or h < MIN_SIZE[1]:
        raise argparse.ArgumentTypeError(f"size must be at least {MIN_SIZE[0]}x{MIN_SIZE[1]}, got {text!r}")
    return w, h


def _non_negative_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return n


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: generate the embedded synthetic data set."""
    parser = argparse.ArgumentParser(
        prog="python -m segdemo.synthetic",
        description="Generate procedural street scenes: a game-like source domain in the GTA5 layout and a "
        "photo-like target domain in the Cityscapes layout.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (gets gta5/ and cityscapes/)")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="random seed, >= 0 (default 0)")
    parser.add_argument(
        "--n-source", type=_non_negative_int, default=500, help="source (GTA5-layout) images (default 500)"
    )
    parser.add_argument(
        "--n-target-train", type=_non_negative_int, default=500, help="target train images (default 500)"
    )
    parser.add_argument(
        "--n-target-val", type=_non_negative_int, default=100, help="target val images (default 100)"
    )
    parser.add_argument(
        "--size",
        type=_parse_size,
        default=DEFAULT_SIZE,
        help=f"WIDTHxHEIGHT (default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})",
    )
    parser.add_argument("--progress", action="store_true", help="report progress on stderr")
    parser.add_argument(
        "--workers", type=int, default=1, help="processes rendering side by side (same bytes; default 1)"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        paths = generate(
            args.out,
            seed=args.seed,
            n_source=args.n_source,
            n_target_train=args.n_target_train,
            n_target_val=args.n_target_val,
            size=args.size,
            progress=args.progress,
            workers=args.workers,
        )
    except (OSError, ValueError) as exc:  # existing foreign data, unwritable folder, ...
        parser.error(str(exc))
    elapsed = time.perf_counter() - start
    n = args.n_source + args.n_target_train + args.n_target_val
    print(f"wrote {args.n_source} source images to {paths['gta5']}")
    print(
        f"wrote {args.n_target_train} train + {args.n_target_val} val target images to {paths['cityscapes']}"
    )
    print(f"{n} images at {args.size[0]}x{args.size[1]}, seed {args.seed}, in {elapsed:.1f} s")
    return 0
