"""Training loader throughput per CPU core at the report's sizes: before and after the uint8 pipeline and
cache.

Procedural scenes are rendered at the real data sets' native sizes (GTA5 1914 x 1052, Cityscapes 2048 x 1024)
and written in their layouts; each row reads them in one process (one core), sample by sample, as a loader
worker does:

* before: what a worker did until now: decode the PNGs, check and map the label, resize (image bilinear,
  label nearest), Aug1+2 with torchvision transforms v2 on the sample, convert to float32 and normalise;
* after, first epoch: decode, check, resize, write the cache entry, hand over uint8 (augmentation and
  normalisation now run on the batch, on the training device);
* after, later epochs: read the cache entry and hand over uint8.

Files are read from the page cache (a second pass over the same images), so disk speed is not measured.

    python -m benchmarks.loader                  # 12 images per data set
    python -m benchmarks.loader --images 24
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torchvision.transforms import v2

from benchmarks.common import describe_device, markdown_table, section_header, write_section
from segdemo.datasets import GTA5, Cityscapes
from segdemo.synthetic import generate

GTA5_NATIVE, CITYSCAPES_NATIVE = (1914, 1052), (2048, 1024)
TRAINING_SIZES = {"GTA5": (1280, 720), "Cityscapes": (1024, 512)}  # the report's training sizes
PER_CORE_TARGET = 4.0  # the speed-up per core


class RandomGamma(v2.Transform):
    """Aug2's gamma as the sample-by-sample pipeline had it (the baseline only)."""

    def make_params(self, flat_inputs):
        return {"gamma": torch.empty(()).uniform_(0.7, 1.5).item()}

    def transform(self, inpt, params):
        return self._call_kernel(v2.functional.adjust_gamma, inpt, gamma=params["gamma"])


def sample_by_sample_aug12() -> v2.Compose:
    """Aug1+2 on one sample in a loader worker, as the training loader applied them before."""
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(p=0.5),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.5),
            v2.RandomApply([v2.GaussianBlur(kernel_size=5, sigma=(0.1, 2.0))], p=0.5),
            v2.RandomApply([RandomGamma()], p=0.5),
        ]
    )


def _rate(dataset, passes: int = 1) -> float:
    """Samples per second reading every sample of ``dataset`` ``passes`` times in this process."""
    start = time.perf_counter()
    for _ in range(passes):
        for i in range(len(dataset)):
            dataset[i]
    return passes * len(dataset) / (time.perf_counter() - start)


def measure(name: str, build: Callable[..., object], cache: Path) -> list[float]:
    """(before, after first epoch, after later epochs) samples/s on one core."""
    size = TRAINING_SIZES[name]
    warm = build(size=size)  # reads every file once: the page cache holds them afterwards
    _rate(warm)
    before = _rate(build(size=size, transform=sample_by_sample_aug12()))
    first = _rate(build(size=size, as_uint8=True, cache_dir=cache / name))
    later = _rate(build(size=size, as_uint8=True, cache_dir=cache / name), passes=3)
    return [before, first, later]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.loader",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--images", type=int, default=12, help="images per data set (default 12)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one core: what one loader worker has
    rows, speedups, cached_rates = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        start = time.perf_counter()
        generate(
            root / "gta5_native", n_source=args.images, n_target_train=0, n_target_val=0, size=GTA5_NATIVE
        )
        generate(
            root / "cityscapes_native",
            n_source=0,
            n_target_train=args.images,
            n_target_val=0,
            size=CITYSCAPES_NATIVE,
        )
        rendered = time.perf_counter() - start
        sets = {
            "GTA5": lambda **kw: GTA5(root / "gta5_native" / "gta5", **kw),
            "Cityscapes": lambda **kw: Cityscapes(root / "cityscapes_native" / "cityscapes", "train", **kw),
        }
        for name, build in sets.items():
            before, first, later = measure(name, build, root / "cache")
            native = GTA5_NATIVE if name == "GTA5" else CITYSCAPES_NATIVE
            size = TRAINING_SIZES[name]
            speedups.append(later / before)
            cached_rates.append(later)
            rows.append(
                [
                    f"{name} {native[0]} x {native[1]} -> {size[0]} x {size[1]}",
                    f"{before:.1f}",
                    f"{first:.1f}",
                    f"{later:.1f}",
                    f"**{later / before:.1f}x**",
                ]
            )
    lines = [
        section_header("Training loader per CPU core, at the report's sizes", describe_device("cpu")),
        (
            f"{args.images} procedural scenes per data set rendered at the native size ({rendered:.0f} s) "
            "and read sample by sample in one process on one thread, from the page cache; samples per "
            "second. Before: decode + label check and mapping + resize + Aug1+2 (torchvision v2, per "
            "sample) + float32 normalisation in the worker. After: uint8 out of the worker, augmentation "
            "and normalisation on the training device's batch (segdemo.augment); the first epoch also "
            "writes the sample cache, later epochs read it."
        ),
        "",
        markdown_table(
            [
                "data set",
                "before",
                "after, first epoch",
                "after, later epochs",
                f"speed-up per core (target {PER_CORE_TARGET:.0f}x)",
            ],
            rows,
        ),
        "",
        (
            f"Feeding a GPU that trains at R images/s takes R / {min(cached_rates):.0f} loader cores reading "
            "the cache at these sizes (the slower of the two rows); what a GPU trains at is measured by "
            "`python -m benchmarks.gpu_check` where a GPU is lent."
        ),
    ]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        write_section("loader", section)
    return 0 if min(speedups) >= PER_CORE_TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
