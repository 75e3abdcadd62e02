"""What this machine's CPU is and can do: its name for the records, and whether it computes bfloat16 natively.

bfloat16 autocast on the CPU is fast only where the CPU has bfloat16 instructions (AVX512-BF16 on recent AMD
EPYC and Intel Xeon, AMX on Intel Xeon since Sapphire Rapids, BF16 on recent Arm cores). Elsewhere oneDNN
emulates it and a step is slower than in float32, so callers ask :func:`native_bfloat16` first.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# The /proc/cpuinfo flags (x86) or features (Arm) that mean bfloat16 arithmetic in hardware.
BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def _cpuinfo_lines() -> list[str]:
    try:
        return CPUINFO.read_text().splitlines()
    except OSError:  # not Linux
        return []


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), or what ``platform`` says."""
    for line in _cpuinfo_lines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of the first CPU in /proc/cpuinfo (empty where there is none)."""
    for line in _cpuinfo_lines():
        key = line.split(":", 1)[0].strip().lower()
        if key in ("flags", "features"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_bfloat16() -> bool:
    """True where the CPU has bfloat16 instructions, so bfloat16 autocast speeds a step up."""
    return bool(cpu_flags() & BFLOAT16_FLAGS)
