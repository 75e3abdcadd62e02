"""segdemo.hardware: the CPU's name and whether it has bfloat16 instructions, read from /proc/cpuinfo."""

from __future__ import annotations

from pathlib import Path

import pytest

from segdemo import hardware

XEON = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse avx2 avx512f avx512bw avx512_bf16 amx_bf16 amx_tile amx_int8
"""
OLD_EPYC = """processor\t: 0
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse avx avx2 fma
"""
XEON_WITHOUT_AMX = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse avx2 avx512f avx512bw avx512_bf16 avx512_fp16
"""
EPYC_ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse avx2 avx512f avx512bw avx512_bf16
"""
ARM = """processor\t: 0
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 bf16 i8mm
"""


@pytest.fixture
def cpuinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def write(text: str | None) -> None:
        path = tmp_path / "cpuinfo"
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(text)
        monkeypatch.setattr(hardware, "CPUINFO", path)
        hardware.cpu_flags.cache_clear()

    yield write
    hardware.cpu_flags.cache_clear()


def test_bfloat16_instructions_are_found_on_x86_and_arm(cpuinfo) -> None:
    cpuinfo(XEON)
    assert hardware.native_bfloat16() and "amx_tile" in hardware.cpu_flags()
    assert hardware.cpu_name() == "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"
    cpuinfo(ARM)
    assert hardware.native_bfloat16()


def test_a_cpu_without_them_or_without_cpuinfo_is_not_native(cpuinfo) -> None:
    cpuinfo(OLD_EPYC)
    assert not hardware.native_bfloat16() and hardware.cpu_name() == "AMD EPYC 7B12"
    cpuinfo(None)  # not Linux
    assert hardware.cpu_flags() == frozenset() and not hardware.native_bfloat16()
    assert hardware.cpu_name()  # platform's answer


def test_bfloat16_trains_faster_where_measured_so(cpuinfo) -> None:
    # AMX, and AVX512-BF16 on an AMD EPYC: faster than float32 (docs/benchmarks.md)
    for faster in (XEON, EPYC_ZEN4, ARM):
        cpuinfo(faster)
        assert hardware.bfloat16_trains_faster()
    # AVX512-BF16 on an Intel Xeon without AMX: the instructions are there, but a step is slower
    cpuinfo(XEON_WITHOUT_AMX)
    assert hardware.native_bfloat16() and not hardware.bfloat16_trains_faster()
    assert hardware.cpu_vendor() == "GenuineIntel"
    for none in (OLD_EPYC, None):
        cpuinfo(none)
        assert not hardware.bfloat16_trains_faster()
    assert hardware.cpu_vendor() == ""


# In a child process, so that this test session's own allocator is left alone: the page faults of allocating,
# filling and freeing a 64 MiB tensor, four times, before and after keep_freed_memory. After it the heap grows
# for the first few blocks (a freed block and the next request's alignment do not quite fit) and then serves
# them from memory it already has.
_FAULTS_SCRIPT = """
import resource
import torch
from segdemo.hardware import keep_freed_memory

def faults(blocks):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(blocks):
        block = torch.empty(16 * 2**20, dtype=torch.float32)
        block.fill_(1.0)  # every page touched
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults(2)
plain = faults(4)
kept = keep_freed_memory()
faults(20)
print(kept, plain, faults(4))
"""


@pytest.mark.skipif(not hardware.glibc_version(), reason="mallopt is glibc's")
def test_keep_freed_memory_stops_the_page_faults_of_each_new_block() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", _FAULTS_SCRIPT],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    kept, plain, after = done.stdout.split()
    assert kept == "True"
    # A fault per page: 4 KiB, or 2 MiB where the kernel backs every mapping with huge pages when it can.
    transparent_huge_pages = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    always_huge = transparent_huge_pages.exists() and "[always]" in transparent_huge_pages.read_text()
    pages = 4 * 64 * 2**20 // (2 * 2**20 if always_huge else 4096)
    assert int(plain) > pages / 2  # glibc mmaps each 64 MiB block afresh: a fault per page
    assert int(after) < pages / 20  # now they come from the heap, already mapped


def test_keep_freed_memory_is_a_no_op_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "glibc_version", lambda: "")
    assert hardware.keep_freed_memory() is False
