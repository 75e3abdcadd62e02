"""What this machine has: its CPU's name for the records, whether it computes bfloat16 natively, and which
devices a command line may name.

bfloat16 autocast on the CPU is fast only where the CPU has bfloat16 instructions (AVX512-BF16 on recent AMD
EPYC and Intel Xeon, AMX on Intel Xeon since Sapphire Rapids, BF16 on recent Arm cores). Elsewhere oneDNN
emulates it and a step is slower than in float32, so callers ask :func:`native_bfloat16` first. Even with the
instructions, bfloat16 does not train faster everywhere: :func:`bfloat16_trains_faster` says where it does.
:func:`keep_freed_memory` stops glibc from handing a training step's memory back to the kernel between steps.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")
# The /proc/cpuinfo flags (x86) or features (Arm) that mean bfloat16 arithmetic in hardware.
BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def _cpuinfo_lines() -> list[str]:
    try:
        return CPUINFO.read_text().splitlines()
    except OSError:  # not Linux
        return []


def _cpuinfo_field(*names: str) -> str | None:
    """The value of the first /proc/cpuinfo line whose key is one of ``names`` (the first CPU's), or None."""
    for line in _cpuinfo_lines():
        key, _, value = line.partition(":")
        if key.strip().lower() in names:
            return value.strip()
    return None


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), or what ``platform`` says."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of the first CPU in /proc/cpuinfo (empty where there is none)."""
    return frozenset((_cpuinfo_field("flags", "features") or "").split())


def native_bfloat16() -> bool:
    """True where the CPU has bfloat16 instructions, so bfloat16 autocast speeds a step up."""
    return bool(cpu_flags() & BFLOAT16_FLAGS)


def bfloat16_trains_faster() -> bool:
    """True where bfloat16 autocast trains the demo's networks faster than float32 on this CPU, as measured
    (``python -m benchmarks.demo_speed``, docs/benchmarks.md): with AMX (Intel Xeon since Sapphire Rapids,
    1.4-1.6x) and with AVX512-BF16 on an AMD EPYC (1.3-1.6x), but not on an Intel Xeon with AVX512-BF16 and
    no AMX (0.9x for a source-only step, 0.6x for a DACS step: slower), nor without bfloat16 instructions.
    Other CPUs with bfloat16 instructions (Arm) are unmeasured and count as faster."""
    flags = cpu_flags()
    if not flags & BFLOAT16_FLAGS:
        return False
    if "amx_bf16" in flags:
        return True
    return cpu_vendor() != "GenuineIntel"


def cpu_vendor() -> str:
    """The CPU's vendor as /proc/cpuinfo names it ("GenuineIntel", "AuthenticAMD"); "" where it names none."""
    return _cpuinfo_field("vendor_id") or ""


def resolve_device(name: str | torch.device | None) -> torch.device:
    """The device a command line names ("cpu", "cuda", "cuda:1"), or ValueError with one sentence saying why
    it cannot be used: an unknown name, or a GPU this machine does not have."""
    text = "cpu" if name is None else str(name)
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {text!r}: use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {text!r}: this machine has no CUDA GPU that PyTorch can use; use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {text!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered from 0"
            )
    elif device.type != "cpu":
        raise ValueError(f"device {text!r}: only cpu and cuda are supported")
    return device


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1


def glibc_version() -> str:
    """The GNU C library's version this process runs on ("glibc 2.36"); "" without glibc (macOS, Windows,
    musl)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):  # no confstr (Windows), or no such name here
        return ""


def keep_freed_memory() -> bool:
    """Make glibc keep the memory a process frees for its next allocations, instead of returning it to the
    kernel; True where that was done (Linux with glibc), False elsewhere. For CPU training only: the process
    then holds its peak memory until it exits.

    glibc serves every block above 32 MiB (and smaller ones until its threshold has adapted) with a fresh
    ``mmap`` and unmaps it on free, so each training step's large activations and gradients come back as new
    zeroed pages, one page fault per 4 KiB. On a 2-core AMD EPYC that put a fifth of the full profile's CPU
    time (256x128, batch 16) in the kernel; taking every block from the heap and never trimming it trained
    the source-only BiSeNet 1.5x as fast there for 0.33 GiB more peak memory, with the same mIoU to the
    hundredth (docs/benchmarks.md): only where the memory comes from changes."""
    if not glibc_version():
        return False
    libc = ctypes.CDLL(None)  # the C library this process already runs on
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX))
