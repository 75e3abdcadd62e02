"""``python -m train export``: a checkpoint as an ONNX graph, checked against PyTorch in ONNX Runtime."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from segdemo.checkpoints import CheckpointError, load_model
from segdemo.files import atomic_write
from segdemo.models.fast import INPUT_NAME, OUTPUT_NAME, OnnxRuntimeModel, export_onnx

TOLERANCE = 1e-3
"""Largest |logit difference| between ONNX Runtime and PyTorch that the export accepts."""


class ExportError(RuntimeError):
    """The export cannot be made or does not reproduce PyTorch; the message says why."""


@dataclass
class ExportReport:
    path: Path
    input_size: tuple[int, int]
    max_abs_diff: float
    onnxruntime_ms: float
    pytorch_ms: float
    size_bytes: int

    def summary(self) -> str:
        h, w = self.input_size
        return (
            f'wrote {self.path} ({self.size_bytes / 2**20:.1f} MB; input "{INPUT_NAME}" N x 3 x {h} x {w}, '
            f'normalised; output "{OUTPUT_NAME}" N x C x {h} x {w})\n'
            f"onnxruntime vs PyTorch on a random input: max |logit difference| {self.max_abs_diff:.2e} "
            f"(limit {TOLERANCE:g})\n"
            f"one image on the CPU ({torch.get_num_threads()} threads), median of 3: onnxruntime "
            f"{self.onnxruntime_ms:.0f} ms, PyTorch {self.pytorch_ms:.0f} ms"
        )


def default_output(checkpoint: Path) -> Path:
    """``<folder>/model.onnx`` for our checkpoint folders, ``<name>.onnx`` beside a file."""
    if checkpoint.is_dir():
        return checkpoint / "model.onnx"
    if checkpoint.name == "model.safetensors":
        return checkpoint.parent / "model.onnx"
    return checkpoint.with_suffix(".onnx")


def _median_ms(run, repeats: int = 3) -> float:
    run()  # warm-up: first-call allocations and kernel choices
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def _with_metadata(graph: bytes, meta: dict, input_size: tuple[int, int]) -> bytes:
    """The graph with what a consumer needs to feed it (normalisation, size, class names) attached."""
    import onnx

    model = onnx.load_from_string(graph)
    fields = {
        "model": meta.get("model"),
        "variant": meta.get("variant"),
        "input_size": list(input_size),
        "mean": meta.get("mean"),
        "std": meta.get("std"),
        "classes": meta.get("classes"),
        "input": "RGB scaled to [0, 1], then (x - mean) / std, N x 3 x H x W float32",
    }
    for key, value in fields.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    return model.SerializeToString()


def export_checkpoint(
    checkpoint: str | Path, out: str | Path | None = None, input_size: tuple[int, int] | None = None
) -> ExportReport:
    """Export a checkpoint's network (exact inference form, batch size free) and check it in ONNX Runtime.

    ``input_size``: (height, width); default the checkpoint's own. The file is written only if ONNX
    Runtime reproduces the PyTorch logits within :data:`TOLERANCE`.
    """
    checkpoint = Path(checkpoint).expanduser()
    try:
        model, meta = load_model(checkpoint)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from exc
    height, width = input_size or tuple(int(v) for v in meta["input_size"])
    if meta.get("model") == "bisenet" and (height % 8 or width % 8):
        raise ExportError(f"BiSeNet needs an input size that is a multiple of 8, got {height}x{width}")
    target = Path(out).expanduser() if out is not None else default_output(checkpoint)
    if target.is_dir():
        raise ExportError(f"{target} is a folder; give a file name such as {target / 'model.onnx'}")

    graph = _with_metadata(export_onnx(model, (height, width), dynamic_batch=True), meta, (height, width))
    runner = OnnxRuntimeModel(graph)
    x = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model(x)
        diff = float((runner(x) - expected).abs().max())
        if not diff <= TOLERANCE:  # also refuses NaN
            raise ExportError(
                f"ONNX Runtime differs from PyTorch by {diff:.3g} (limit {TOLERANCE:g}); nothing written"
            )
        ort_ms = _median_ms(lambda: runner(x))
        torch_ms = _median_ms(lambda: model(x))

    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(graph))
    return ExportReport(target, (height, width), diff, ort_ms, torch_ms, len(graph))
