"""Which batch sizes fit which GPU: training memory per variant, estimated from what autograd keeps.

On the CPU (no GPU is needed), one training forward pass of each network at the report's sizes runs under
bfloat16 autocast (the same element sizes as a GPU's float16 or bfloat16 autocast) with
``torch.autograd.graph.saved_tensors_hooks`` counting the bytes kept for the backward pass: the activation
memory per image. A step needs that times the batch, plus the weights, gradients and Adam's two moments in
float32, autocast's half-precision weight copies and, for DACS, the teacher; FDA and DACS run one pass's
backward before the next (train/engine.py), so one pass's activations count. Allocator slack, cuDNN
workspaces and the CUDA context are not counted: the table divides each card's memory by a 1.3 margin
and leaves 1 GB for the context. An estimate; ``python -m benchmarks.gpu_check`` runs the batches on a
GPU under a 16 GB cap where one is lent.

    python -m benchmarks.memory
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import describe_device, markdown_table, section_header, write_section
from segdemo.models import build_model
from train.config import variants

CARDS = {"T4 / P100 / V100-16GB (16 GB)": 16, "A100-40GB (40 GB)": 40, "A100 / H100 (80 GB)": 80}
MARGIN, CONTEXT_GB = 1.3, 1.0


def saved_bytes_per_image(model_name: str, width: int, height: int) -> int:
    """Bytes autograd keeps for backward after one training forward pass of one image (bfloat16 autocast)."""
    torch.manual_seed(0)
    model = build_model(model_name).train()
    kept = [0]

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        kept[0] += tensor.numel() * tensor.element_size()
        return tensor

    x = torch.randn(2, 3, height, width)  # two: BiSeNet's BatchNorm on pooled 1 x 1 features needs them
    with (
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
        torch.autocast("cpu", dtype=torch.bfloat16),
    ):
        outputs = model(x)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        loss = sum(out.float().logsumexp(dim=1).mean() for out in outputs)  # cross-entropy keeps as much
    del loss
    return kept[0] // 2


def static_bytes(model_name: str, teacher: bool) -> int:
    """Weights, gradients and Adam's moments in float32, half-precision weight copies, a DACS teacher."""
    parameters = sum(p.numel() for p in build_model(model_name).parameters())
    return parameters * (4 + 4 + 8 + 2 + (4 if teacher else 0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    measured: dict[tuple[str, int, int], int] = {}
    rows = []
    for name, config in variants().items():
        width, height = config.gta5_size if config.labeled == "gta5" else config.cityscapes_size
        key = (config.model, width, height)
        if key not in measured:
            measured[key] = saved_bytes_per_image(*key)
        per_image = measured[key]
        static = static_bytes(config.model, config.method == "dacs")
        fits = []
        for gigabytes in CARDS.values():
            room = (gigabytes - CONTEXT_GB) * 2**30 / MARGIN - static
            fits.append(str(max(0, int(room // per_image))))
        rows.append(
            [
                name,
                f"{width}x{height}",
                str(config.batch_size),
                f"{per_image / 2**30:.2f}",
                f"{static / 2**30:.2f}",
                f"{(static + config.batch_size * per_image) * MARGIN / 2**30 + CONTEXT_GB:.1f}",
                *fits,
            ]
        )
    lines = [
        section_header(
            "Training memory per variant, and the largest batch per card (estimate)", describe_device("cpu")
        ),
        (
            "Activations kept for backward per image, measured on the CPU under bfloat16 autocast (GPU half "
            "precision has the same sizes); weights, gradients, Adam and half-precision copies from the "
            f"parameter count; estimated need = (static + batch x activations) x {MARGIN} + {CONTEXT_GB:g} "
            "GB of CUDA context. Largest batch = what fits that way. Not measured on a GPU: `python -m "
            "benchmarks.gpu_check` runs the report's batches under a 16 GB cap where a GPU is lent."
        ),
        "",
        markdown_table(
            [
                "variant",
                "input",
                "report batch",
                "activations GB / image",
                "static GB",
                "estimated GB at the report batch",
                *[f"largest batch, {card}" for card in CARDS],
            ],
            rows,
        ),
    ]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        write_section("memory", section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
