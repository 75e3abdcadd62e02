"""Run every benchmark, one process each, and let each write its section of ``docs/benchmarks.md``.

    python -m benchmarks.run_all                  # CPU, FDA, app, scenes, loader, memory; the GPU ones where
    CUDA is present
    python -m benchmarks.run_all --quick          # fewer rounds, no torch.compile: a smoke run, noisier
    python -m benchmarks.run_all --no-write       # print only

One process per benchmark keeps their settings (threads, torch.compile's configuration, allocator
state) from leaking into each other. The exit status is 1 if any target was missed or a run failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from benchmarks.common import REPO

BENCHMARKS = (
    "cpu_inference",
    "fda",
    "app_overlay",
    "demo_profile",
    "generation",
    "loader",
    "memory",
    "gpu",
    "gpu_check",
)
QUICK = {
    "cpu_inference": ["--repeats", "2", "--no-compile"],
    "fda": ["--repeats", "3"],
    "app_overlay": ["--repeats", "2"],
    "demo_profile": ["--repeats", "5"],
    "generation": ["--images", "10", "--no-generate"],
    "loader": ["--images", "4"],
    "memory": [],
    "gpu": ["--rounds", "5", "--steps", "10", "--compile-mode", "none"],
    "gpu_check": ["--steps", "10"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run_all",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS, help="run only these")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, no torch.compile")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    failed = []
    for name in args.only or BENCHMARKS:
        command = [sys.executable, "-m", f"benchmarks.{name}", *(QUICK[name] if args.quick else [])]
        if args.no_write:
            command.append("--no-write")
        print(f"\n$ {' '.join(command[1:])}", flush=True)
        if subprocess.run(command, cwd=REPO, check=False).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\ntargets missed or runs failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
