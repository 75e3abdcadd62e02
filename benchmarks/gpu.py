"""GPU: inference latency of both networks at 1024 x 512, batch 1, and BiSeNet training throughput.

Inference (per network, same weights and input in every row, input already on the GPU): the plain
template restatement in fp32 against our inference form in fp32, fp16 and bf16 (channels_last), then
fp16 with CUDA graphs and with torch.compile. Each round times a burst of back-to-back calls with CUDA
events; the paths take turns round by round; medians of the rounds. Half precision is approximate:
the table gives its max |logit difference| and how many pixels keep their fp32 label (and with
``--checkpoint``, the mIoU on procedural val images in fp32 and in half precision).

Training (BiSeNet, 1024 x 512 crops, batch 16, Adam, the two auxiliary losses): the step alone on
batches already on the GPU (fp32, AMP, AMP + channels_last, + torch.compile); the data loader alone
(procedural Cityscapes-layout photos at 2048 x 1024 in the sample cache at 1024 x 512, read by worker
processes in an endless random order, flipped on the GPU);
and the two together, which is what training gets.

    python -m benchmarks.gpu                            # everything (a few minutes on an H100)
    python -m benchmarks.gpu --skip-training --compile-mode max-autotune
    python -m benchmarks.gpu --checkpoint checkpoints/bisenet_gta5_dacs

Without a CUDA device it says so and exits without touching docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.common import (
    describe_device,
    markdown_table,
    median,
    section_header,
    trained_like,
    write_section,
)
from benchmarks.cpu_inference import scene_input, template_with_weights
from segdemo.checkpoints import load_model
from segdemo.models import build_model
from segdemo.models.fast import prepare_for_inference
from train.engine import PRECISION_NAMES, amp_dtype_for

LATENCY_TARGET_MS = {"bisenet": 1.5, "deeplabv2": 15.0}  # the H100 targets
REPORT_P100_MS = {"bisenet": 17.14, "deeplabv2": 246.0}
TRAINING_TARGET = 300.0  # images per second
IGNORE_INDEX = 255


def time_gpu(
    runs: dict[str, Callable[[], object]], rounds: int, burst: int, warmup: int = 3
) -> dict[str, float]:
    """Median over rounds of (CUDA-event time of ``burst`` back-to-back calls) / burst, in ms; turns per
    round."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_index in range(warmup + rounds):
        for name, run in runs.items():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            for _ in range(burst):
                run()
            end.record()
            torch.cuda.synchronize()
            if round_index >= warmup:
                times[name].append(start.elapsed_time(end) / burst)
    return {name: median(values) for name, values in times.items()}


def cuda_graph(module: Callable[[Tensor], Tensor], example: Tensor) -> Callable[[], Tensor]:
    """Capture one forward pass on a static input as a CUDA graph; the callable replays it."""
    static_input = example.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.no_grad():
        for _ in range(3):  # warm-up outside the graph: cuDNN picks its kernels, allocations settle
            module(static_input)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        static_output = module(static_input)

    def replay() -> Tensor:
        graph.replay()
        return static_output

    return replay


def labels_kept(output: Tensor, reference: Tensor) -> float:
    return float((output.argmax(1) == reference.argmax(1)).float().mean()) * 100.0


# ---------------------------------------------------------------------------------------------
# Inference
# ---------------------------------------------------------------------------------------------


def inference_section(name: str, args: argparse.Namespace, device: torch.device) -> tuple[str, bool]:
    height, width = 512, 1024
    if args.checkpoint:
        model, meta = load_model(args.checkpoint)
        if meta["model"] != name:
            model = trained_like(build_model(name), seed=0)
    else:
        torch.manual_seed(0)
        model = trained_like(build_model(name), seed=0)
    template = template_with_weights(name, model).to(device)
    x = scene_input(height, width).to(device)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    fast32 = prepare_for_inference(model).to(device)
    fast16 = prepare_for_inference(model).to(device).half()
    fastbf = prepare_for_inference(model).to(device).to(torch.bfloat16)
    x16, xbf = x_cl.half(), x_cl.to(torch.bfloat16)

    def no_grad(module: Callable[[Tensor], Tensor], inputs: Tensor) -> Callable[[], Tensor]:
        def run() -> Tensor:
            with torch.no_grad():
                return module(inputs)

        return run

    runs: dict[str, Callable[[], Tensor]] = {
        "baseline: template restatement, fp32, NCHW, eager": no_grad(template, x),
        "inference form (BN folded, classifier at 1/8), fp32, channels_last": no_grad(fast32, x_cl),
        "inference form, bf16, channels_last": no_grad(fastbf, xbf),
        "inference form, fp16, channels_last": no_grad(fast16, x16),
    }
    notes = []
    try:
        runs["inference form, fp16, channels_last, CUDA graph"] = cuda_graph(fast16, x16)
    except Exception as exc:  # noqa: BLE001 - report and go on with the other rows
        notes.append(f"CUDA graph capture failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    if args.compile_mode != "none":
        start = time.perf_counter()
        try:
            compiled = torch.compile(fast16, mode=args.compile_mode)
            with torch.no_grad():
                for _ in range(3):  # reduce-overhead / max-autotune record their CUDA graphs on later calls
                    compiled(x16)
            runs[f"inference form, fp16, channels_last, torch.compile({args.compile_mode})"] = no_grad(
                compiled, x16
            )
            notes.append(f"torch.compile({args.compile_mode}) took {time.perf_counter() - start:.0f} s.")
        except Exception as exc:  # noqa: BLE001
            notes.append(f"torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")

    outputs = {label: run().float().clone() for label, run in runs.items()}
    reference = outputs[next(iter(runs))]
    burst = 50 if name == "bisenet" else 10
    ms = time_gpu(runs, rounds=args.rounds, burst=burst)
    base = ms[next(iter(runs))]
    rows = []
    for label in runs:
        diff = float((outputs[label] - reference).abs().max())
        rows.append(
            [
                label,
                f"{ms[label]:.2f}",
                f"{base / ms[label]:.1f}x",
                f"{diff:.1e}",
                f"{labels_kept(outputs[label], reference):.2f} %",
            ]
        )
    best_label = min(ms, key=ms.get)
    met = ms[best_label] <= LATENCY_TARGET_MS[name]
    lines = [
        section_header(f"{name} on the GPU, 1 x 3 x {height} x {width}", describe_device(device)),
        (
            f"Input already on the GPU; {args.rounds} rounds of {burst} back-to-back calls after 3 warm-up "
            "rounds, CUDA events, the paths taking turns; medians. Weights: "
            + (
                f"checkpoint {args.checkpoint}."
                if args.checkpoint
                else "seeded init with random BatchNorm statistics."
            )
        ),
        "",
        markdown_table(
            ["path", "median ms", "speed-up", "max abs logit diff vs baseline", "pixels with the fp32 label"],
            rows,
        ),
        "",
        (
            f"Target on an H100: at most {LATENCY_TARGET_MS[name]:g} ms (the report: "
            f"{REPORT_P100_MS[name]:g} ms on a P100): **{'met' if met else 'NOT met'}** with {best_label} "
            f"({ms[best_label]:.2f} ms)."
        ),
    ]
    if args.checkpoint and meta["model"] == name:
        lines += ["", miou_line(name, model, device, args)]
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines), met


def miou_line(name: str, model: nn.Module, device: torch.device, args: argparse.Namespace) -> str:
    """mIoU on procedural val images with the fp32 and the half-precision inference forms."""
    from segdemo.datasets import Cityscapes
    from segdemo.metrics import ConfusionMatrix

    root = Path(args.procedural) / "cityscapes"
    if not root.is_dir():
        return (
            f"mIoU not measured: no procedural data at {root} (python -m segdemo.synthetic --out "
            f"{args.procedural})."
        )
    _, meta = load_model(args.checkpoint)
    height, width = meta["input_size"]
    data = Cityscapes(root, "val", size=(width, height), mean=meta["mean"], std=meta["std"])
    results = {}
    for label, dtype in (("fp32", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16)):
        fast = prepare_for_inference(model).to(device).to(dtype)
        matrix = ConfusionMatrix()
        with torch.no_grad():
            for image, target in data:
                logits = fast(image[None].to(device, dtype).contiguous(memory_format=torch.channels_last))
                matrix.update(logits.float().argmax(1).cpu(), target[None])
        results[label] = matrix.miou() * 100.0  # percent, as the report writes mIoU
    return (
        f"mIoU on the {len(data)} procedural val images (procedural data, not Cityscapes): fp32 "
        f"{results['fp32']:.2f}, fp16 {results['fp16']:.2f}, bf16 {results['bf16']:.2f}."
    )


# ---------------------------------------------------------------------------------------------
# Training throughput
# ---------------------------------------------------------------------------------------------


def bisenet_loss(outputs: tuple[Tensor, Tensor, Tensor], labels: Tensor) -> Tensor:
    """Cross-entropy on the main output plus both auxiliary heads (weight 1), as the trainer computes it."""
    return sum(F.cross_entropy(out.float(), labels, ignore_index=IGNORE_INDEX) for out in outputs)


def train_step_runner(
    device: torch.device, batch: int, amp: bool, channels_last: bool, compile_model: bool
) -> Callable[[Tensor, Tensor], None]:
    """One optimiser step of BiSeNet on (images in [0, 1], labels) already on the GPU."""
    torch.manual_seed(0)
    model = build_model("bisenet").to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4, fused=amp)
    forward = torch.compile(model) if compile_model else model
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)
    dtype = amp_dtype_for(torch.cuda.get_device_capability(device))  # as the trainer picks it
    scaler = torch.amp.GradScaler("cuda", enabled=amp and dtype == torch.float16)

    def step(images: Tensor, labels: Tensor) -> None:
        x = (images - mean) / std
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=dtype, enabled=amp):
            loss = bisenet_loss(forward(x), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def procedural_loader(root: Path, batch: int, workers: int, cache: Path):
    """The training loader as ``train`` builds it: uint8 samples from the sample cache, workers kept alive, an
    endless random order over the photos (so every worker stays busy, however few photos there are)."""
    from torch.utils.data import DataLoader, RandomSampler

    from segdemo.datasets import Cityscapes

    data = Cityscapes(root / "cityscapes", "train", size=(1024, 512), as_uint8=True, cache_dir=cache)
    for i in range(len(data)):  # fill the cache: what `python -m train cache` or a first epoch does
        data[i]
    sampler = RandomSampler(data, replacement=True, num_samples=2**31 - 1)
    return DataLoader(
        data,
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        pin_memory=True,
        drop_last=True,
        persistent_workers=workers > 0,
    )


def on_gpu(batch: tuple[Tensor, Tensor], device: torch.device) -> tuple[Tensor, Tensor]:
    """A uint8 batch on the GPU as the trainer prepares it: [0, 1] floats, labels as class ids, Aug1's
    flips."""
    from segdemo.augment import BatchAugment

    images = batch[0].to(device, non_blocking=True).float().div_(255.0)
    labels = batch[1].to(device, non_blocking=True).long()
    return BatchAugment("aug1")(images, labels, torch.Generator(device=device).manual_seed(0))


def images_per_second(run: Callable[[], None], steps: int, batch: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        run()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        run()
    torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def training_section(args: argparse.Namespace, device: torch.device) -> tuple[str, bool]:
    from segdemo.synthetic import generate

    batch = args.batch
    images = torch.rand(batch, 3, 512, 1024, device=device)
    labels = torch.randint(0, 19, (batch, 512, 1024), device=device)
    configs = [
        ("fp32, NCHW, eager", {"amp": False, "channels_last": False, "compile_model": False}),
        ("AMP, NCHW, eager", {"amp": True, "channels_last": False, "compile_model": False}),
        ("AMP, channels_last, eager", {"amp": True, "channels_last": True, "compile_model": False}),
        ("AMP, channels_last, torch.compile", {"amp": True, "channels_last": True, "compile_model": True}),
    ]
    rows, notes = [], []
    rates: dict[str, float] = {}
    steps = {}
    for label, options in configs:
        try:
            step = train_step_runner(device, batch, **options)
            rates[label] = images_per_second(lambda step=step: step(images, labels), args.steps, batch)
            steps[label] = step
        except Exception as exc:  # noqa: BLE001 - torch.compile may fail; the other rows still count
            notes.append(f"{label}: failed ({type(exc).__name__}: {str(exc).splitlines()[0]})")
            continue
        rows.append([f"step alone, {label} (batches already on the GPU)", f"{rates[label]:.0f}"])

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        generate(
            folder, seed=0, n_source=0, n_target_train=args.loader_images, n_target_val=0, size=(2048, 1024)
        )
        notes.append(
            f"{args.loader_images} procedural 2048 x 1024 photos generated in "
            f"{time.perf_counter() - start:.0f} s (read over and over, from the page cache)."
        )
        loader = procedural_loader(Path(folder), batch, args.workers, Path(folder) / "cache")
        batches = iter(loader)

        def load_only() -> None:
            on_gpu(next(batches), device)

        try:
            loader_rate = images_per_second(load_only, args.steps, batch, warmup=3)
        except RuntimeError as exc:  # e.g. a small /dev/shm in a container: workers cannot hand batches over
            notes.append(f"the data loader failed: {str(exc).splitlines()[0]} (is /dev/shm large enough?)")
            loader_rate = 0.0
        rows.append(
            [
                (
                    f"data loader alone ({args.workers} workers reading uint8 1024 x 512 samples from the "
                    "sample cache, copy to the GPU, flips there)"
                ),
                f"{loader_rate:.0f}",
            ]
        )
        best = max(rates, key=rates.get) if rates else None
        together = 0.0
        if best is not None and loader_rate > 0:
            step = steps[best]

            def load_and_step() -> None:
                step(*on_gpu(next(batches), device))

            together = images_per_second(load_and_step, args.steps, batch, warmup=3)
            rows.append([f"**training: data loader + step ({best})**", f"**{together:.0f}**"])
    met = together >= TRAINING_TARGET
    lines = [
        section_header("BiSeNet training throughput, 1024 x 512 crops", describe_device(device)),
        (
            f"Batch {batch}, Adam, main + two auxiliary cross-entropy losses, AMP = "
            f"{PRECISION_NAMES[amp_dtype_for(torch.cuda.get_device_capability(device))]} autocast; "
            f"{args.steps} timed steps after warm-up."
        ),
        "",
        markdown_table(["what", "images / s"], rows),
        "",
        (
            f"Target: at least {TRAINING_TARGET:g} images/s with the loader keeping up: "
            f"**{'met' if met else 'NOT met'}**."
        ),
        *[f"- {note}" for note in notes],
    ]
    return "\n".join(lines), met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", choices=("bisenet", "deeplabv2", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds per inference path (default 20)")
    parser.add_argument(
        "--compile-mode",
        default="reduce-overhead",
        help="torch.compile mode of the last inference row, or 'none' (default reduce-overhead: CUDA graphs)",
    )
    parser.add_argument("--checkpoint", help="weights (and an mIoU comparison) from this checkpoint")
    parser.add_argument(
        "--procedural", default="data/procedural", help="procedural data for the mIoU comparison"
    )
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--batch", type=int, default=16, help="training batch size (default 16)")
    parser.add_argument(
        "--steps", type=int, default=30, help="timed training steps / loader batches (default 30)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=max(1, min(16, (torch.multiprocessing.cpu_count() or 2) - 1)),
        help="data loader worker processes (default: CPU count - 1, at most 16)",
    )
    parser.add_argument(
        "--loader-images",
        type=int,
        default=48,
        help="procedural photos for the loader, read over and over (default 48)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)

    if not torch.cuda.is_available():
        print(
            "No CUDA device on this machine: the GPU benchmark was skipped (docs/benchmarks.md left as it "
            "is)."
        )
        return 0
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels once
    all_met = True
    names = ("bisenet", "deeplabv2") if args.model == "both" else (args.model,)
    for name in names:
        section, met = inference_section(name, args, device)
        all_met &= met
        print(section, end="\n\n", flush=True)
        if not args.no_write:
            write_section(f"gpu_inference_{name}", section)
    if not args.skip_training:
        section, met = training_section(args, device)
        all_met &= met
        print(section, flush=True)
        if not args.no_write:
            write_section("gpu_training", section)
    return 0 if all_met else 1


if __name__ == "__main__":
    raise SystemExit(main())
