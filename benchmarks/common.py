"""What every benchmark shares: timing (interleaved, medians after warm-up), the device, tables, the doc."""

from __future__ import annotations

import platform
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import nn

from segdemo.hardware import cpu_name

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"


def describe_device(device: str | torch.device = "cpu") -> str:
    """One line naming the hardware and software a figure was measured with."""
    device = torch.device(device)
    software = f"torch {torch.__version__}, Python {platform.python_version()}"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return f"{name} (CUDA {torch.version.cuda}), {software}"
    return f"{cpu_name()}, {torch.get_num_threads()} threads (torch.set_num_threads), {software}"


def time_interleaved(
    runs: Mapping[str, Callable[[], object]],
    repeats: int,
    warmup: int = 1,
    sync: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Milliseconds per call of each function, the functions taking turns in every round.

    Taking turns spreads the noise of a shared machine over every side instead of favouring
    whichever ran in the quiet minute. The first ``warmup`` rounds are not recorded.
    """
    sync = sync or (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_index in range(warmup + repeats):
        for name, run in runs.items():
            sync()
            start = time.perf_counter()
            run()
            sync()
            if round_index >= warmup:
                times[name].append((time.perf_counter() - start) * 1000.0)
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def command_line() -> str:
    """How this benchmark was started, as one could type it again."""
    module = Path(sys.argv[0]).resolve()
    try:
        name = ".".join(module.relative_to(REPO).with_suffix("").parts)
    except ValueError:
        name = str(module)
    return "python -m " + " ".join([name, *map(shlex.quote, sys.argv[1:])])


def section_header(title: str, device: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"### {title}\n\nCommand: `{command_line()}`  \nDevice: {device}  \nMeasured: {stamp}\n"


def write_section(name: str, body: str, doc: Path = DOC) -> Path:
    """Put ``body`` between ``<!-- benchmark:NAME -->`` and ``<!-- /benchmark:NAME -->`` in the doc.

    Only that section changes; a section the doc does not have yet is added at its end.
    """
    begin, end = f"<!-- benchmark:{name} -->", f"<!-- /benchmark:{name} -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    text = doc.read_text() if doc.is_file() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _match: block, text, count=1)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)
    return doc


def trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters, as after training.

    A freshly built network's BNs are the identity, which would make BN folding look exact for free;
    with these values the logits also have a realistic spread (units to tens).
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                size = module.num_features
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(size, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(size, generator=generator) * 0.2)
                module.running_var.copy_(torch.rand(size, generator=generator) * 1.5 + 0.5)
    return model.eval()


def parse_size(text: str) -> tuple[int, int]:
    """'512x1024' -> (512, 1024), HEIGHTxWIDTH."""
    height, width = (int(v) for v in text.lower().split("x"))
    return height, width
