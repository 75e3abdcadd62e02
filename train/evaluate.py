"""``python -m train evaluate`` and ``python -m train profile``: the report's tables from our checkpoints."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from segdemo.adabn import never_learnt_statistics, recompute_batchnorm
from segdemo.checkpoints import CheckpointError, load_model, update_metadata
from segdemo.datasets import NATIVE, Cityscapes, DatasetError
from segdemo.evaluation import evaluate, evaluation_protocol
from segdemo.files import atomic_write
from segdemo.hardware import resolve_device
from segdemo.results import format_table, report_row
from train.data import data_kind

if TYPE_CHECKING:
    from segdemo.evaluation import LabelledSet


class EvaluationError(RuntimeError):
    pass


def _device(device: str | None) -> torch.device:
    try:
        return resolve_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except ValueError as exc:
        raise EvaluationError(str(exc)) from None


def evaluate_checkpoints(
    checkpoints: list[Path],
    cityscapes: Path,
    device: str | None = None,
    limit: int = 0,
    write: bool = True,
    full_resolution: bool = False,
    workers: int = 0,
    adapt_bn: int = 0,
) -> str:
    """Evaluate one checkpoint (or the MBT ensemble of several) and return the printed report.

    ``full_resolution`` scores against the labels at their native size (Cityscapes' 2048 x 1024), the
    predictions upsampled; otherwise labels are resized to the checkpoint's input size. On a GPU the
    networks run in half precision where the device has it (bfloat16 or float16 autocast).

    ``adapt_bn`` > 0: first recompute every network's BatchNorm statistics on the first ``adapt_bn``
    unlabelled images of the root's train split (AdaBN, :mod:`segdemo.adabn`); the row says so, and nothing
    is written into the metadata (the scores are not the checkpoint's network's).
    """
    dev = _device(device)
    try:
        loaded = [load_model(path, device=dev) for path in checkpoints]
    except CheckpointError as exc:
        raise EvaluationError(str(exc)) from exc
    metas = [meta for _, meta in loaded]
    first = metas[0]
    for meta in metas[1:]:
        if (meta["input_size"], meta["mean"], meta["std"]) != (
            first["input_size"],
            first["mean"],
            first["std"],
        ):
            raise EvaluationError("MBT needs checkpoints with the same input size and normalisation")
    height, width = first["input_size"]
    try:
        dataset = Cityscapes(
            cityscapes,
            "val",
            size=(width, height),
            as_uint8=True,
            label_size=NATIVE if full_resolution else None,
        )
    except DatasetError as exc:
        raise EvaluationError(str(exc)) from exc
    count = min(limit, len(dataset)) if limit else len(dataset)
    adapted, frozen = (
        _adapt_batchnorm(
            checkpoints, [m for m, _ in loaded], cityscapes, adapt_bn, (width, height), first, dev
        )
        if adapt_bn
        else (0, [])
    )
    precision = torch.float32
    if dev.type == "cuda":
        from train.engine import amp_dtype_for

        precision = amp_dtype_for(torch.cuda.get_device_capability(dev))
    try:
        matrix = evaluate(
            [model for model, _ in loaded],
            dataset,
            dev,
            batch_size=2,
            limit=count,
            precision=precision,
            num_workers=workers,
            mean=first["mean"],
            std=first["std"],
        )
    except DatasetError as exc:  # a corrupt val image or label, found while reading it: named, no traceback
        raise EvaluationError(str(exc)) from exc
    summary = matrix.summary()
    kind = data_kind(cityscapes)
    eval_data = f"{kind} cityscapes-layout val, {count} images"
    name = first.get("variant") or "checkpoint"
    label = name if len(loaded) == 1 else "MBT(" + ", ".join(str(m.get("variant")) for m in metas) + ")"
    if adapted:
        label += " + AdaBN"
    rows = [{"variant": label, "measured_on": eval_data, "miou": summary["miou"], "iou": summary["iou"]}]
    reference = report_row(name)
    if reference is not None and reference["miou"] is not None:
        rows.append({**reference, "variant": f"{name} (report)"})
    lines = [format_table(rows)]
    if kind == "procedural":
        lines.append(
            "\nNote: measured on procedurally generated data, not on Cityscapes; the report's row is shown "
            "for orientation only."
        )
    if adapted:
        lines.append(
            f"\nAdaBN: BatchNorm statistics recomputed on the first {adapted} unlabelled train images of "
            f"{cityscapes} before scoring; metrics not written into the metadata (not the checkpoint's "
            "network)"
        )
        if frozen:
            lines.append(
                f"warning: the BatchNorm layers of {', '.join(frozen)} never learnt statistics (mean 0, "
                "variance 1: frozen while it trained from scratch, as DeepLabV2's are): its weights were "
                "trained through layers that only scale and shift, so new statistics change what they "
                "compute and this score says little about its domain gap"
            )
    elif write and len(loaded) == 1:
        path = checkpoints[0]
        if path.is_dir() or path.suffix == ".safetensors":
            update_metadata(
                path,
                metrics={
                    "eval_data": eval_data,
                    "eval_kind": kind,
                    "eval_size": [width, height],
                    "protocol": evaluation_protocol((width, height), full_resolution),
                    "miou": summary["miou"],
                    "pixel_accuracy": summary["pixel_accuracy"],
                    "iou": summary["iou"],
                    "confusion": matrix.matrix.cpu().tolist(),
                    "selected_by": first.get("metrics", {}).get("selected_by", "evaluate"),
                },
            )
            lines.append(f"\nmetrics written into {path}")
        else:
            lines.append("\n(course-template file: metrics printed, not written; it has no metadata)")
    return "\n".join(lines)


ADAPT_BN_BATCH = 16
"""Images per batch when ``--adapt-bn`` recomputes BatchNorm statistics (the demo's training batch) ..."""
ADAPT_BN_PIXELS = 2**21
"""... or fewer, at least 2, so that a batch holds about this many input pixels at most (memory stays bounded
at Cityscapes' training sizes: 4 images at 1024 x 512)."""


class _Together(torch.nn.Module):
    """Several networks run on the same input as one module: one pass over the target images (each decoded
    once) recomputes the BatchNorm statistics of all of them."""

    def __init__(self, models: list[torch.nn.Module]) -> None:
        super().__init__()
        self.models = torch.nn.ModuleList(models)

    def forward(self, x: torch.Tensor) -> None:
        for model in self.models:
            model(x)


def _adapt_batchnorm(
    checkpoints: list[Path],
    models: list[torch.nn.Module],
    cityscapes: Path,
    images: int,
    size: tuple[int, int],
    meta: dict[str, Any],
    device: torch.device,
) -> tuple[int, list[str]]:
    """AdaBN for ``--adapt-bn``: every model's BatchNorm statistics from the first ``images`` unlabelled train
    images of ``cityscapes`` at ``size`` (width, height), in batches of :data:`ADAPT_BN_BATCH` images or
    :data:`ADAPT_BN_PIXELS` pixels (a last batch of one image is left out). Returns the images used and the
    checkpoints whose BatchNorm never learnt statistics (found before they are replaced)."""
    if images < 2:
        raise EvaluationError(
            f"--adapt-bn needs at least 2 images (BatchNorm normalises batches), not {images}"
        )
    try:
        target = Cityscapes(cityscapes, "train", size=size, labels=False, mean=meta["mean"], std=meta["std"])
    except DatasetError as exc:
        raise EvaluationError(f"--adapt-bn reads the unlabelled train images of {cityscapes}: {exc}") from exc
    count = min(images, len(target))
    batch = max(2, min(ADAPT_BN_BATCH, ADAPT_BN_PIXELS // (size[0] * size[1])))
    starts = [s for s in range(0, count, batch) if min(s + batch, count) - s >= 2]
    if not starts:
        raise EvaluationError(
            f"--adapt-bn: {cityscapes} has {len(target)} train image(s); it needs at least 2"
        )

    def batches():
        for start in starts:
            try:
                items = [target[i][0] for i in range(start, min(start + batch, count))]
            except DatasetError as exc:
                raise EvaluationError(str(exc)) from exc
            yield torch.stack(items).to(device)

    frozen = [
        str(path) for path, model in zip(checkpoints, models, strict=True) if never_learnt_statistics(model)
    ]
    return recompute_batchnorm(_Together(models), batches()), frozen


def _progress_writer(path: Path | None) -> Callable[..., None]:
    """Progress as JSON for the app (``--progress FILE``): written whole each time, never half."""
    if path is None:
        return lambda **_: None
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(**fields: Any) -> None:
        text = json.dumps({**fields, "time": time.time()})
        atomic_write(path, lambda tmp: Path(tmp).write_text(text), durable=False)

    return write


def _open_data(
    images: Path | None,
    labels: Path | None,
    data_root: Path | None,
    procedural: int | None,
    label_encoding: str,
    limit: int,
    name: str | None = None,
) -> LabelledSet:
    from segdemo.datasets import DatasetError
    from segdemo.evaluation import dataset_root, image_folders, procedural_val

    try:
        if procedural is not None:
            return procedural_val(min(procedural, limit) if limit else procedural)
        if data_root is not None:
            return dataset_root(data_root, "val", limit=limit)
        kind = "procedural" if data_kind(images) == "procedural" else "unknown"  # a folder may hold anything
        return image_folders(images, labels, encoding=label_encoding, limit=limit, kind=kind, name=name)
    except (ValueError, DatasetError) as exc:
        raise EvaluationError(str(exc)) from exc


def evaluate_labelled(
    checkpoints: list[Path],
    images: Path | None = None,
    labels: Path | None = None,
    data_root: Path | None = None,
    procedural: int | None = None,
    label_encoding: str = "auto",
    data_name: str | None = None,
    tta: str = "",
    device: str | None = None,
    limit: int = 0,
    write: bool = True,
    per_image: Path | None = None,
    json_out: Path | None = None,
    progress_file: Path | None = None,
) -> str:
    """Each checkpoint on a labelled set (:mod:`segdemo.evaluation`), image by image; returns the report.

    The data: a folder of images with a folder of labels, a GTA5 / Cityscapes root, or procedural val scenes.
    Each checkpoint folder gets the result in its metadata under ``evaluations`` (keyed by data and protocol);
    ``per_image`` gets a CSV of every image's scores (several checkpoints: one file each, named after them).
    """
    from segdemo.datasets import DatasetError
    from segdemo.evaluation import TestTime, evaluate_set, save_evaluation
    from segdemo.images import ImageError
    from segdemo.inference import Segmenter

    try:
        test_time = TestTime.parse(tta)
    except ValueError as exc:
        raise EvaluationError(str(exc)) from exc
    dev = _device(device)
    data = _open_data(images, labels, data_root, procedural, label_encoding, limit, data_name)
    report = _progress_writer(progress_file)
    lines = [
        f"data: {data.description}; labels read as {data.label_encoding}; test time: {test_time.name}",
    ]
    results = []
    for index, path in enumerate(checkpoints):
        try:
            segmenter = Segmenter.from_checkpoint(path, device=dev)
        except CheckpointError as exc:
            raise EvaluationError(str(exc)) from exc

        def progress(done: int, total: int, index: int = index) -> None:
            report(state="running", checkpoint=index, checkpoints=len(checkpoints), image=done, images=total)

        progress(0, len(data))
        try:
            evaluation = evaluate_set(segmenter, data, test_time, progress, checkpoint=str(path))
        except (ValueError, DatasetError, ImageError) as exc:  # an image or label that cannot be read
            report(state="failed", message=str(exc))
            raise EvaluationError(str(exc)) from exc
        results.append(evaluation)
        summary = evaluation.summary
        name = segmenter.meta.get("variant") or path.name
        lines += [
            "",
            f"{path}:",
            format_table([{"variant": name, "measured_on": data.description, **summary}]),
        ]
        lines.append(f"pixel accuracy {summary['pixel_accuracy']:.2f}%")
        if data.kind == "procedural":
            lines.append("(procedural data, not Cityscapes)")
        if write and (path.is_dir() or path.suffix == ".safetensors"):
            save_evaluation(path, evaluation)
            lines.append(f"written into {path} under evaluations[{evaluation.key!r}]")
        if per_image is not None:
            target = (
                per_image
                if len(checkpoints) == 1
                else per_image.with_name(f"{per_image.stem}_{path.name}.csv")
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(evaluation.per_image_csv())
            lines.append(f"per-image scores: {target}")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps([e.to_json() for e in results])
        atomic_write(json_out, lambda tmp: Path(tmp).write_text(text), durable=False)
    report(state="done", checkpoints=len(checkpoints), images=len(data))
    return "\n".join(lines)


def profile_table(
    model_name: str, size: tuple[int, int], device: str, runs: int = 10, warmup: int = 3
) -> str:
    """Parameters, FLOPs, latency and FPS of a freshly built model, beside the report's Table 1/2 row."""
    from segdemo.models import build_model
    from segdemo.profiling import count_flops, count_parameters, measure_latency

    dev = resolve_device(device)
    height, width = size
    model = build_model(model_name).to(dev).eval()
    params = count_parameters(model)
    flops = count_flops(model, height, width)
    latency = measure_latency(model, height, width, warmup=warmup, runs=runs, device=dev)
    report = report_row("deeplabv2_cityscapes" if model_name == "deeplabv2" else "bisenet_cityscapes")
    lines = [
        "| model | input | device | params | FLOPs (fvcore) | latency ms (mean ± std) | FPS |",
        "|---|---|---|---|---|---|---|",
        (
            f"| {model_name} | 1x3x{height}x{width} | {latency.device} | {params / 1e6:.2f}M | "
            f"{flops / 1e9:.2f}G | {latency.mean_ms:.2f} ± {latency.std_ms:.2f} | {latency.fps:.1f} |"
        ),
        (
            f"| {model_name} (report) | 1x3x512x1024 | P100 | {report['params']} | {report['flops']} | "
            f"{report['latency_ms']} | {1000 / report['latency_ms']:.1f} |"
        ),
    ]
    lines.append(f"\n{runs} timed runs after {warmup} warm-up runs.")
    if model_name == "bisenet":
        lines.append(
            "The report's 12.58M for BiSeNet counts ResNet-18's unused ImageNet classifier (513,000)."
        )
    return "\n".join(lines)


__all__ = ["EvaluationError", "evaluate_checkpoints", "profile_table"]
