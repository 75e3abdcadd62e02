"""CPU inference at 1 x 3 x 512 x 1024: the plain template restatement against our inference paths.

Every path runs in this one process on the same normalised street scene with the same weights; the
paths take turns in every round (see ``common.time_interleaved``) and the table gives medians after
warm-up. The rows are an ablation: each adds one idea to the row above, so its own gain can be read
off; then the alternatives torch.compile and ONNX Runtime (the default of
``segdemo.inference.predict`` on the CPU, and what ``python -m train export`` writes), and last an
approximate path, bfloat16, whose mIoU change is measured with ``--checkpoint``.

    python -m benchmarks.cpu_inference                         # both networks, 2 threads
    python -m benchmarks.cpu_inference --model bisenet --repeats 9
    python -m benchmarks.cpu_inference --checkpoint checkpoints/bisenet_gta5_dacs --model bisenet
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from benchmarks.baseline import TemplateBiSeNet, TemplateDeepLabV2
from benchmarks.common import (
    describe_device,
    markdown_table,
    max_abs_diff,
    median,
    parse_size,
    section_header,
    time_interleaved,
    trained_like,
    write_section,
)
from segdemo.checkpoints import load_model
from segdemo.inference import preprocess
from segdemo.models import build_model
from segdemo.models.bisenet import template_key_to_ours
from segdemo.models.fast import (
    LowPrecisionModel,
    OnnxRuntimeModel,
    export_onnx,
    fold_batchnorm,
    prepare_for_inference,
    runner_for,
)
from segdemo.normalization import IMAGENET_MEAN, IMAGENET_STD
from segdemo.profiling import count_flops
from segdemo.synthetic import render_scene, scene_rng

TARGETS = {"bisenet": 1.5, "deeplabv2": 1.3}  # the required speed-up over the baseline
REPORT_GFLOPS = {"bisenet": 25.78, "deeplabv2": 374.7}
TOLERANCE = 1e-3


@dataclass
class InferencePath:
    label: str
    run: Callable[[], Tensor]
    flops_of: nn.Module | None  # the module whose fvcore FLOPs this path does (None: not countable)
    role: str = ""  # "default" / "eager": predict's backends; "approximate": not held to the 1e-3 bound


def template_with_weights(name: str, model: nn.Module) -> nn.Module:
    """The plain template network holding ``model``'s weights (keys renamed back to the template's)."""
    template = TemplateBiSeNet() if name == "bisenet" else TemplateDeepLabV2()
    ours = model.state_dict()
    state = {}
    for key in template.state_dict():
        mapped = template_key_to_ours(key) if name == "bisenet" else key
        if mapped in ours:
            state[key] = ours[mapped]
    missing = template.load_state_dict(state, strict=False).missing_keys
    # context_path.features.* are the template's aliases of the same modules, plus the unused ImageNet head.
    unexpected_missing = [k for k in missing if not k.startswith("context_path.features.")]
    if unexpected_missing:
        raise RuntimeError(f"the baseline lacks weights for {unexpected_missing[:3]}")
    return template.eval()


def scene_input(height: int, width: int) -> Tensor:
    """A photo-like procedural street scene, normalised as predict() feeds the networks."""
    image, _ = render_scene(scene_rng(0, "target", "val", 0), "target", (width, height))
    return preprocess(image, (height, width), IMAGENET_MEAN, IMAGENET_STD)


def inference_paths(
    name: str, model: nn.Module, x: Tensor, with_compile: bool, notes: list[str]
) -> list[InferencePath]:
    size = tuple(x.shape[-2:])
    template = template_with_weights(name, model)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    ours_cl = build_model(name).eval()
    ours_cl.load_state_dict(model.state_dict())
    ours_cl = ours_cl.to(memory_format=torch.channels_last)
    folded = fold_batchnorm(model).to(memory_format=torch.channels_last)

    def under_no_grad(module: nn.Module, inputs: Tensor) -> Callable[[], Tensor]:
        def run() -> Tensor:
            with torch.no_grad():
                return module(inputs)

        return run

    def under_inference_mode(module: Callable[[Tensor], Tensor], inputs: Tensor) -> Callable[[], Tensor]:
        def run() -> Tensor:
            with torch.inference_mode():
                return module(inputs)

        return run

    paths = [
        InferencePath(
            "baseline: template restatement, eager, NCHW, no_grad", under_no_grad(template, x), template
        ),
        InferencePath("baseline + inference_mode", under_inference_mode(template, x), template),
        InferencePath(
            "ours (segdemo network; in-place ReLU), inference_mode", under_inference_mode(model, x), model
        ),
        InferencePath("+ channels_last", under_inference_mode(ours_cl, x_cl), model),
        InferencePath("+ BatchNorm folded into the convs", under_inference_mode(folded, x_cl), folded),
    ]
    fast = prepare_for_inference(model)
    if name == "bisenet":
        paths.append(
            InferencePath(
                "+ classifier before the x8 upsampling = **eager backend**",
                under_inference_mode(fast, x_cl),
                fast,
                role="eager",
            )
        )
    else:
        paths[-1].label += " = **eager backend** (ASPP already at 1/8)"
        paths[-1].role = "eager"
    if with_compile:
        compiled = compile_for_cpu(fast, x_cl, notes)
        if compiled is not None:
            paths.append(
                InferencePath(
                    "eager backend + torch.compile (inductor, freezing)",
                    under_inference_mode(compiled, x_cl),
                    fast,
                )
            )
    start = time.perf_counter()
    onnx_runner = OnnxRuntimeModel(export_onnx(model, size))
    notes.append(
        f"ONNX export and session creation: {time.perf_counter() - start:.1f} s, once per model (predict "
        "builds it on first use; the app when it loads a checkpoint)."
    )
    paths.append(
        InferencePath(
            "ONNX Runtime, folded graph = **default backend**, `train export`",
            lambda: onnx_runner(x),
            fast,
            role="default",
        )
    )
    bf16 = LowPrecisionModel(prepare_for_inference(model), torch.bfloat16)
    paths.append(
        InferencePath(
            'approximate: eager backend in bfloat16 (opt-in `backend="bfloat16"`)',
            under_inference_mode(bf16, x_cl),
            fast,
            role="approximate",
        )
    )
    return paths


def compile_for_cpu(module: nn.Module, x: Tensor, notes: list[str]) -> Callable[[Tensor], Tensor] | None:
    """torch.compile with inductor's freezing (constant weights: prepacked for oneDNN), or None if it
    fails."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    start = time.perf_counter()
    try:
        compiled = torch.compile(module)
        with torch.inference_mode():
            compiled(x)
    except Exception as exc:  # noqa: BLE001 - a missing C compiler, an unsupported op: report, go on
        notes.append(
            f"torch.compile failed on this machine ({type(exc).__name__}: {str(exc).splitlines()[0]})."
        )
        return None
    notes.append(
        f"torch.compile: {time.perf_counter() - start:.0f} s to compile (first call), once per input size."
    )
    return compiled


def benchmark(
    name: str,
    size: tuple[int, int],
    repeats: int,
    warmup: int,
    with_compile: bool,
    checkpoint: str | None,
    procedural: str = "data/procedural",
) -> tuple[str, bool]:
    """Run one network's table; returns (markdown section, target met)."""
    if checkpoint:
        model, meta = load_model(checkpoint)
        if meta["model"] != name:
            raise SystemExit(f"{checkpoint} holds a {meta['model']}, not a {name}")
        weights = f"checkpoint {checkpoint}"
    else:
        torch.manual_seed(0)
        model = trained_like(build_model(name), seed=0)
        weights = "seeded random init with random BatchNorm statistics (`benchmarks.common.trained_like`)"
    height, width = size
    x = scene_input(height, width)
    notes: list[str] = []
    paths = inference_paths(name, model, x, with_compile, notes)

    outputs = {}
    for path in paths:
        outputs[path.label] = path.run()
    reference = outputs[paths[0].label]
    times = time_interleaved({p.label: p.run for p in paths}, repeats=repeats, warmup=warmup)
    base_ms = median(times[paths[0].label])
    flops_cache: dict[int, float] = {}
    rows = []
    for path in paths:
        module = path.flops_of
        if module is not None and id(module) not in flops_cache:
            flops_cache[id(module)] = count_flops(module, height, width) / 1e9
        gflops = f"{flops_cache[id(module)]:.2f}" if module is not None else "n/a"
        ms = median(times[path.label])
        diff = max_abs_diff(outputs[path.label], reference)
        kept = float((outputs[path.label].argmax(1) == reference.argmax(1)).float().mean()) * 100
        rows.append([path.label, f"{ms:.0f}", f"{base_ms / ms:.2f}x", f"{diff:.1e}", f"{kept:.2f} %", gflops])
    by_role = {p.role: p.label for p in paths if p.role}
    default_ms, eager_ms = median(times[by_role["default"]]), median(times[by_role["eager"]])
    worst_diff = max(max_abs_diff(outputs[p.label], reference) for p in paths if p.role != "approximate")
    met = base_ms / default_ms >= TARGETS[name] and worst_diff <= TOLERANCE

    table = markdown_table(
        [
            "path",
            "median ms",
            "speed-up",
            "max abs logit diff vs baseline",
            "pixels with the baseline's label",
            "GFLOPs (fvcore)",
        ],
        rows,
    )
    lines = [
        section_header(f"{name} on the CPU, 1 x 3 x {height} x {width}", describe_device("cpu")),
        (
            f"Weights: {weights}, the same in every row. Input: a procedural street scene, normalised. "
            f"{repeats} timed rounds after {warmup} warm-up, the paths taking turns in each round."
        ),
        "",
        table,
        "",
        (
            f"Target: at least {TARGETS[name]}x the baseline with max |logit difference| <= {TOLERANCE:g}: "
            f"**{'met' if met else 'NOT met'}** ({base_ms / default_ms:.2f}x with the default backend, "
            f"{base_ms / eager_ms:.2f}x with the eager one; largest difference of an exact path "
            f"{worst_diff:.1e}). The report's architecture FLOPs: {REPORT_GFLOPS[name]} G; the inference "
            "form does fewer "
            + (
                "(BatchNorm folded away, the classifier at 1/8 resolution)."
                if name == "bisenet"
                else "(BatchNorm folded away)."
            )
        ),
    ]
    lines += ["", *(f"- {note}" for note in notes)]
    lines.append(f"- {approximate_miou_note(model, checkpoint, procedural)}")
    return "\n".join(lines), met


def approximate_miou_note(model: nn.Module, checkpoint: str | None, procedural: str) -> str:
    """The bfloat16 path's mIoU against the exact default path's, on procedural val images."""
    from segdemo.datasets import Cityscapes
    from segdemo.metrics import ConfusionMatrix

    if not checkpoint:
        return (
            "bfloat16's mIoU change: not measured with random weights; pass `--checkpoint` (a trained "
            "network, e.g. from `python -m train demo`) to measure it on the procedural val images."
        )
    root = Path(procedural) / "cityscapes"
    if not root.is_dir():
        return f"bfloat16's mIoU change: not measured, no procedural data at {root}."
    _, meta = load_model(checkpoint)
    height, width = meta["input_size"]
    data = Cityscapes(root, "val", size=(width, height), mean=meta["mean"], std=meta["std"])
    miou = {}
    for backend in ("auto", "bfloat16"):
        runner, used = runner_for(model, (height, width), "cpu", backend)
        matrix = ConfusionMatrix()
        with torch.inference_mode():
            for image, target in data:
                matrix.update(runner(image[None]).argmax(1), target[None])
        miou[used] = matrix.miou() * 100.0  # percent, as the report writes mIoU
    exact, approximate = miou[next(iter(miou))], miou["bfloat16"]
    return (
        f"bfloat16's mIoU change, {checkpoint} on the {len(data)} procedural val images at {width} x "
        f"{height} (procedural data, not Cityscapes): {exact:.2f} exact, {approximate:.2f} in bfloat16 "
        f"({approximate - exact:+.2f} points)."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cpu_inference",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", choices=("bisenet", "deeplabv2", "both"), default="both")
    parser.add_argument(
        "--size", type=parse_size, default=(512, 1024), help="HEIGHTxWIDTH (default 512x1024)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch (and ONNX Runtime) threads, default 2")
    parser.add_argument("--repeats", type=int, help="timed rounds (default 9 for BiSeNet, 3 for DeepLabV2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile row")
    parser.add_argument(
        "--checkpoint", help="weights from this checkpoint instead of a seeded init (one network)"
    )
    parser.add_argument(
        "--procedural",
        default="data/procedural",
        help="procedural data for the bfloat16 mIoU comparison (with --checkpoint)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    np.random.seed(0)
    names = ("bisenet", "deeplabv2") if args.model == "both" else (args.model,)
    all_met = True
    for name in names:
        repeats = args.repeats or (9 if name == "bisenet" else 3)
        section, met = benchmark(
            name, args.size, repeats, args.warmup, not args.no_compile, args.checkpoint, args.procedural
        )
        all_met &= met
        print(section, end="\n\n", flush=True)
        if not args.no_write:
            write_section(f"cpu_inference_{name}", section)
    return 0 if all_met else 1


if __name__ == "__main__":
    raise SystemExit(main())
