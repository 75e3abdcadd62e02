"""The GPU check: every variant of the report trained for a few steps the way a user trains it, on a GPU.

Run it first whenever a GPU is lent (a few minutes on an H100 class card; at most about 8):

    python -m benchmarks.gpu_check                  # CUDA: real sizes, writes its table into
    docs/benchmarks.md
    python -m benchmarks.gpu_check --device cpu     # the same path at small sizes on the CPU (the test
    suite's)

What it does, on procedural scenes rendered at the real data sets' native sizes (GTA5 1914 x 1052,
Cityscapes 2048 x 1024; small ones on the CPU):

* every variant for ``--steps`` steps with AMP as ``python -m train run`` picks it, at the report's sizes and
  batch sizes, through the training loader (sample cache, uint8 workers, augmentation on the GPU), under a
  memory cap as on a 16 GB card (``torch.cuda.set_per_process_memory_fraction``);
* DACS once more with float16 forced: the path a T4 or P100 takes (loss scaling);
* one run stopped by SIGTERM half-way, then ``--resume``d to the end, as the CLI does it;
* ``python -m train evaluate`` on a few val images at full label resolution.

It prints images/s, peak GPU memory and the share of the time spent waiting for data per run, and the exit
status is 1 if anything failed.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import REPO, describe_device, markdown_table, section_header, write_section
from segdemo.synthetic import generate
from train.config import apply_overrides, get_variant, variants
from train.data import build_data, describe_data
from train.engine import PRECISION_NAMES, Trainer

NATIVE = {"gta5": (1914, 1052), "cityscapes": (2048, 1024)}
CPU_NATIVE = (128, 64)  # --device cpu: everything small
CPU_SIZE = "64x32"
CAP_GB = 16.0


def render(root: Path, images: int, val: int, cpu: bool) -> tuple[Path, Path]:
    """Procedural GTA5- and Cityscapes-layout trees at the native sizes (two generator processes at once)."""
    if cpu:
        generate(root, n_source=images, n_target_train=images, n_target_val=val, size=CPU_NATIVE)
        return root / "gta5", root / "cityscapes"
    code = (
        "import sys; from segdemo.synthetic import generate; generate(sys.argv[1], "
        "n_source=int(sys.argv[2]), n_target_train=int(sys.argv[3]), n_target_val=int(sys.argv[4]), "
        "size=(int(sys.argv[5]), int(sys.argv[6])))"
    )
    jobs = [
        (root / "source", images, 0, 0, NATIVE["gta5"]),
        (root / "target", 0, images, val, NATIVE["cityscapes"]),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    running = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(out), str(n), str(t), str(v), str(w), str(h)], env=env
        )
        for out, n, t, v, (w, h) in jobs
    ]
    if any(process.wait() != 0 for process in running):
        raise RuntimeError("rendering the procedural data failed")
    return root / "source" / "gta5", root / "target" / "cityscapes"


def train_once(
    variant: str, overrides: list[str], gta5: Path, cityscapes: Path, out: Path, device: torch.device
) -> list[str]:
    """One short run; its table row."""
    config = apply_overrides(get_variant(variant), overrides)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        trainer = Trainer(
            config,
            build_data(config, gta5, cityscapes),
            out,
            device=str(device),
            progress=False,
            train_data_info=describe_data(config, gta5, cityscapes),
        )
        trainer.run()
    except torch.cuda.OutOfMemoryError:
        return [
            variant,
            "",
            str(config.batch_size),
            "",
            "",
            "",
            f"**out of memory under the {CAP_GB:g} GB cap**",
        ]
    except Exception as exc:  # noqa: BLE001 - one failed run must not hide the others
        return [
            variant,
            "",
            str(config.batch_size),
            "",
            "",
            "",
            f"**failed**: {type(exc).__name__}: {exc}"[:200],
        ]
    size = config.gta5_size if config.labeled == "gta5" else config.cityscapes_size
    rate = trainer.step * config.batch_size / trainer.seconds
    peak = f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f}" if device.type == "cuda" else "n/a"
    waiting = 100.0 * trainer.data_wait_seconds / max(trainer.seconds, 1e-9)
    return [
        variant,
        PRECISION_NAMES[trainer.precision],
        f"{config.batch_size} x {size[0]}x{size[1]}",
        f"{rate:.1f}",
        peak,
        f"{waiting:.0f}%",
        "ok",
    ]


def sigterm_and_resume(
    gta5: Path, cityscapes: Path, out: Path, device: torch.device, extra: list[str], steps: int
) -> tuple[str, bool]:
    """``python -m train run`` stopped by SIGTERM after a few steps, then resumed with --resume to the end."""
    command = [
        sys.executable,
        "-m",
        "train",
        "run",
        "bisenet_gta5",
        "--gta5",
        str(gta5),
        "--cityscapes",
        str(cityscapes),
        "--out",
        str(out),
        "--device",
        device.type,
        *extra,
        f"iterations={steps}",
        "checkpoint_every=100000",
        "log_every=1",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.parent / "sigterm.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)
    wanted = max(2, steps // 3)
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        shown = re.findall(rf"(\d+)/{steps} \[", log.read_text(errors="replace"))
        if shown and int(shown[-1]) >= wanted:
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    stopped = process.wait(120)
    from train.resume import read_progress

    try:
        saved = read_progress(out)[1]["step"]
    except ValueError:
        saved = None
    resumed = subprocess.run(
        [*command, "--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    try:
        final = read_progress(out)[1]["step"]
    except ValueError:
        final = None
    ok = stopped == 130 and saved is not None and resumed.returncode == 0 and final == steps
    return (
        f"SIGTERM at step {saved}: exit {stopped}; `--resume` exit {resumed.returncode}, ended at step "
        f"{final} of {steps}: **{'ok' if ok else 'FAILED'}**"
    ), ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--steps", type=int, default=None, help="steps per run (default 30 on CUDA, 3 on the CPU)"
    )
    parser.add_argument("--images", type=int, default=None, help="images per domain (default 48; CPU 8)")
    parser.add_argument(
        "--workers", type=int, default=-1, help="loader processes per run (default: the cores)"
    )
    parser.add_argument(
        "--cap-gb", type=float, default=CAP_GB, help="GPU memory cap in GB (default 16, a T4)"
    )
    parser.add_argument("--only", nargs="*", help="these variants only")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cpu = device.type != "cuda"
    if not cpu and not torch.cuda.is_available():
        print("--device cuda asked for, but there is no CUDA device", file=sys.stderr)
        return 2
    steps = args.steps or (3 if cpu else 30)
    images = args.images or (8 if cpu else 48)
    notes = []
    if not cpu:
        total = torch.cuda.get_device_properties(device).total_memory
        fraction = min(1.0, args.cap_gb * 2**30 / total)
        torch.cuda.set_per_process_memory_fraction(fraction, device)
        notes.append(
            f"memory capped at {args.cap_gb:g} GB ({100 * fraction:.0f}% of {total / 2**30:.0f} GB), as on a "
            "16 GB card"
        )
    common = [
        f"iterations={steps}",
        f"num_workers={args.workers}",
        f"eval_limit={2 if cpu else 4}",
        "checkpoint_every=100000",
        "log_every=10",
    ]
    if cpu:
        common += [f"gta5_size={CPU_SIZE}", f"cityscapes_size={CPU_SIZE}", "batch_size=2"]
    rows, ok = [], True
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        started = time.perf_counter()
        gta5, cityscapes = render(root / "data", images, 8 if not cpu else 2, cpu)
        notes.append(
            f"{images} + {images} procedural scenes rendered at "
            f"{'x'.join(map(str, CPU_NATIVE)) if cpu else '1914x1052 and 2048x1024'} in "
            f"{time.perf_counter() - started:.0f} s"
        )
        cache = [f"cache_dir={root / 'cache'}"]
        names = args.only or list(variants())
        for name in names:
            rows.append(train_once(name, [*common, *cache], gta5, cityscapes, root / "runs" / name, device))
            print(" | ".join(rows[-1]), flush=True)
        if cpu:
            notes.append("float16 forced (the T4 path): not run, it needs a CUDA device")
        else:
            row = train_once(
                "bisenet_gta5_dacs",
                [*common, *cache, "amp_dtype=fp16"],
                gta5,
                cityscapes,
                root / "runs" / "dacs_fp16",
                device,
            )
            rows.append([f"{row[0]}, float16 forced (T4 path)", *row[1:]])
            print(" | ".join(rows[-1]), flush=True)
        ok &= all(row[-1] == "ok" for row in rows)
        tiny = [f"gta5_size={CPU_SIZE}", f"cityscapes_size={CPU_SIZE}", "batch_size=2"] if cpu else []
        note, resumed = sigterm_and_resume(
            gta5,
            cityscapes,
            root / "sigterm" / "run",
            device,
            [*tiny, f"num_workers={args.workers}", *cache],
            max(steps, 6) * 2,
        )
        notes.append(note)
        ok &= resumed
        from train.evaluate import evaluate_checkpoints

        checkpoint = root / "runs" / names[0]
        started = time.perf_counter()
        try:
            evaluate_checkpoints(
                [checkpoint],
                cityscapes,
                device=str(device),
                limit=4,
                full_resolution=True,
                workers=max(0, args.workers),
            )
            notes.append(
                f"`train evaluate` of {names[0]} on up to 4 val images at full label resolution: "
                f"{time.perf_counter() - started:.1f} s"
            )
        except Exception as exc:  # noqa: BLE001
            notes.append(f"`train evaluate` **failed**: {type(exc).__name__}: {exc}")
            ok = False
    lines = [
        section_header("GPU check: every variant as users train it", describe_device(device)),
        (
            f"{steps} steps per run at "
            f"{f'{CPU_SIZE}, batch 2' if cpu else 'the report sizes and batch sizes'} (procedural data), AMP "
            "as `train run` picks it, through the training loader with the sample cache; images/s over the "
            "training loop (the first epoch's cache filling included, the final evaluation not)."
        ),
        "",
        markdown_table(
            ["variant", "precision", "batch", "images / s", "peak GB", "waiting for data", "status"], rows
        ),
        "",
        *[f"- {note}" for note in notes],
    ]
    section = "\n".join(lines)
    print(section)
    if not cpu and not args.no_write:
        write_section("gpu_check", section)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
