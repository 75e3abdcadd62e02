"""Training throughput of ``python -m train demo`` on the CPU: today's loop against each speed lever.

Each row trains a demo variant (``train.demo.demo_config``) for a number of steps in this process, the real
loop piece by piece: loading (``train.data.Batches``), augmentation, forward, losses, backward and the
optimiser (``Trainer._train_step``), on the demo's procedural data (generated if absent). Rows add one lever
at a time to the loop the demo ran before issue 15 (batch 8, one thread, images decoded from disk every
epoch):

* ``contiguous``: NCHW activations instead of channels_last (the config's default), for comparison;
* ``in memory``: the training images decoded once and kept in RAM (``Config.in_memory``);
* ``N threads``: PyTorch's intra-op threads;
* ``batch 16``: the demo's batch (two threads share a larger step better);
* ``freed memory kept``: glibc keeps what a step frees for the next one instead of handing it back to the
  kernel (``segdemo.hardware.keep_freed_memory``; measured last, since it cannot be undone in a process);
* ``bfloat16``: bfloat16 autocast, measured only where the CPU has bfloat16 instructions
  (``segdemo.hardware.native_bfloat16``; elsewhere oneDNN emulates it and it is slower than float32).

    python -m benchmarks.demo_speed                    # the demo's size, 30 steps per row
    python -m benchmarks.demo_speed --size 128x256 --steps 20
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.common import describe_device, markdown_table, parse_size, section_header, write_section
from segdemo.hardware import bfloat16_trains_faster, cpu_flags, keep_freed_memory, native_bfloat16

VARIANTS = ("bisenet_gta5_aug12", "bisenet_gta5_dacs")


@dataclass(frozen=True)
class Setting:
    name: str
    threads: int = 1
    batch_size: int = 8
    channels_last: bool = True
    in_memory: bool = False
    keep_freed_memory: bool = False
    bfloat16: bool = False


def settings(threads: int, batch_size: int) -> list[Setting]:
    """Today's loop (batch 8, one thread, from disk), then one lever more per row."""
    rows = [
        Setting("today's loop (batch 8, 1 thread, from disk)"),
        Setting("contiguous (NCHW) instead of channels_last", channels_last=False),
        Setting("in memory", in_memory=True),
        Setting(f"in memory, {threads} threads", threads=threads, in_memory=True),
        Setting(f"in memory, {threads} threads, batch {batch_size}", threads, batch_size, in_memory=True),
        Setting(
            f"in memory, {threads} threads, batch {batch_size}, freed memory kept (the demo now)",
            threads,
            batch_size,
            in_memory=True,
            keep_freed_memory=True,
        ),
    ]
    if native_bfloat16():
        name = f"in memory, {threads} threads, batch {batch_size}, freed memory kept, bfloat16"
        rows.append(Setting(name, threads, batch_size, in_memory=True, keep_freed_memory=True, bfloat16=True))
    return rows


def images_per_second(
    variant: str, setting: Setting, size: tuple[int, int], steps: int, warmup: int, data_dir: Path
) -> float:
    """Training images per second of ``steps`` steps after ``warmup`` (loading included)."""
    from train.data import Batches, build_data
    from train.demo import demo_config, ensure_data
    from train.engine import Trainer

    gta5, cityscapes = ensure_data(data_dir)
    config = demo_config(variant, size=size).replace(
        init_from="",  # where the weights start does not change what a step costs
        batch_size=setting.batch_size,
        channels_last=setting.channels_last,
        in_memory=setting.in_memory,
        amp=setting.bfloat16,
        amp_dtype="bf16" if setting.bfloat16 else "auto",
    )
    torch.set_num_threads(setting.threads)
    if setting.keep_freed_memory:
        keep_freed_memory()
    data = build_data(config, gta5, cityscapes)  # in memory: decoded here, before the clock starts
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(config, data, out, device="cpu", progress=False)
        trainer.model.train()
        labeled = Batches(data.labeled, config, config.seed, 0, 0, 1)
        target = Batches(data.target, config, config.seed + 1, 0, 0, 1) if data.target is not None else None
        for _ in range(warmup):
            trainer._train_step(labeled, target)
        start = time.perf_counter()
        for _ in range(steps):
            losses = trainer._train_step(labeled, target)
        float(losses["loss"])
        return steps * config.batch_size / (time.perf_counter() - start)


def cpu_kind() -> tuple[str, str]:
    """(section key suffix, words) for this CPU. One section per size and CPU kind, so that a machine of one
    kind does not replace another's: bfloat16 speeds a step up much more with AMX's tile unit, and less on an
    Intel Xeon with AVX512-BF16 alone than on an AMD EPYC with it (docs/benchmarks.md)."""
    if not native_bfloat16():
        return "", "a CPU without bfloat16 instructions"
    if "amx_bf16" in cpu_flags():
        return "_amx", "a CPU with AMX"
    if not bfloat16_trains_faster():  # the demo's rule: an Intel CPU with bfloat16 instructions but no AMX
        return "_bfloat16_intel", "an Intel CPU with bfloat16 instructions but no AMX"
    return "_bfloat16", "a CPU with bfloat16 instructions"


def main(argv: list[str] | None = None) -> int:
    from segdemo.profiles import DEMO_SIZE
    from train.data import available_cores
    from train.demo import demo_config

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.demo_speed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, default=Path("data/procedural"))
    parser.add_argument("--size", type=parse_size, help="HEIGHTxWIDTH (default: the demo's)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=min(2, available_cores()))
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    size = (args.size[1], args.size[0]) if args.size else DEMO_SIZE  # (width, height)
    # Setting by setting, each variant in turn: keeping freed memory cannot be undone, so every variant's
    # rows without it come first.
    per_variant = {variant: settings(args.threads, demo_config(variant).batch_size) for variant in VARIANTS}
    rates: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for row in zip(*per_variant.values()):
        for variant, setting in zip(VARIANTS, row):
            rate = images_per_second(variant, setting, size, args.steps, args.warmup, args.data)
            rates[variant].append(rate)
            print(f"{variant} | {setting.name} | {rate:.1f}", flush=True)
    rows = [
        [variant, setting.name, f"{rate:.1f}", f"{rate / rates[variant][0]:.2f}x"]
        for variant in VARIANTS
        for setting, rate in zip(per_variant[variant], rates[variant])
    ]
    suffix, kind = cpu_kind()
    bfloat16 = native_bfloat16()
    section = "\n".join(
        [
            section_header(
                f"Demo training throughput at {size[0]}x{size[1]}, {kind}", describe_device("cpu")
            ),
            (
                f"{args.steps} steps per row after {args.warmup} of warm-up, loading "
                "included; bfloat16 "
                + ("measured (native)." if bfloat16 else "not measured: no native bfloat16 here.")
            ),
            "",
            markdown_table(["variant", "setting", "training images / s", "vs today's loop"], rows),
        ]
    )
    print(section)
    if not args.no_write:
        write_section(f"demo_speed_{size[0]}x{size[1]}{suffix}", section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
