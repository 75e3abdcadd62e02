"""A study to present in class: one self-contained, offline HTML file of chosen checkpoints beside the report.

:func:`build_study` writes the per-class IoU table (the report's Table 3 beside the checkpoints, the best per
class marked), mIoU bars and each method's per-class gain over source only, the efficiency table measured on
this machine beside the report's Tables 1 and 2, chosen images through every checkpoint (the report's
Figures 4-7), an FDA panel (Figure 8) and a DACS panel (Figure 10). Each figure downloads as a PNG
1920 pixels wide (pictures: a link under each; charts: plotly's camera button). Pictures are embedded as
PNG and plotly's JavaScript is inlined once, so the file needs no network; every section says what its
numbers were measured on. Printed from a browser, each section starts a page. ``python -m train report``
and the Results page call it.
"""

from __future__ import annotations

import base64
import html
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segdemo.labels import CLASS_NAMES, colorize
from segdemo.results import (
    METRIC_COLUMNS,
    best_per_class,
    evaluation_rows,
    labelled_report_rows,
    report_efficiency_rows,
    results_frame,
    run_profile,
)
from segdemo.viz import OVERLAY_ALPHA, disagreement_image, overlay, to_png_bytes

SOURCE_ONLY = "bisenet_gta5"
SLIDE_WIDTH = 1920
"""Width in pixels of a figure downloaded on its own (slides are 1920 x 1080)."""


@dataclass(frozen=True)
class StudyImage:
    """A picture to show through every checkpoint: its name, what it is, and its ground truth if any."""

    name: str
    image: np.ndarray
    label: np.ndarray | None = None
    origin: str = "uploaded photo"
    """What the image is ("procedural target val sample 3", "uploaded photo", ...)."""


def _png_uri(picture: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(to_png_bytes(picture)).decode("ascii")


def _slide_png(picture: np.ndarray) -> str:
    """The picture at slide width (nearest neighbour: label maps stay crisp), as a data URI to download."""
    from PIL import Image

    height, width = picture.shape[:2]
    scaled = Image.fromarray(picture).resize(
        (SLIDE_WIDTH, max(1, round(height * SLIDE_WIDTH / width))), Image.Resampling.NEAREST
    )
    return _png_uri(np.asarray(scaled))


def panel_strip(pictures: Sequence[np.ndarray]) -> np.ndarray:
    """Pictures of one height side by side with a white gap: one figure of a panel, for a slide."""
    height = max(p.shape[0] for p in pictures)
    gap = np.full((height, 8, 3), 255, np.uint8)
    parts = []
    for picture in pictures:
        if picture.shape[0] != height:
            from PIL import Image

            width = round(picture.shape[1] * height / picture.shape[0])
            picture = np.asarray(Image.fromarray(picture).resize((width, height), Image.Resampling.NEAREST))
        parts += [picture, gap]
    return np.concatenate(parts[:-1], axis=1)


def _figure(pictures: Sequence[tuple[np.ndarray, str]], name: str) -> str:
    cells = "".join(
        f'<figure><img src="{_png_uri(p)}" alt="{html.escape(c)}">'
        f"<figcaption>{html.escape(c)}</figcaption></figure>"
        for p, c in pictures
    )
    strip = _slide_png(panel_strip([p for p, _ in pictures]))
    return (
        f'<div class="panel">{cells}</div><p class="download"><a download="{html.escape(name)}.png" '
        f'href="{strip}">Download this figure as a PNG ({SLIDE_WIDTH} wide)</a></p>'
    )


def _table(frame: Any, marks: Any | None = None) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in ["", *frame.columns])
    rows = []
    for index, values in frame.iterrows():
        cells = [f"<th>{html.escape(str(index))}</th>"]
        for column, value in values.items():
            text = (
                value
                if isinstance(value, str)
                else ("" if value is None or math.isnan(value) else f"{value:.2f}")
            )
            best = marks is not None and column in marks.columns and bool(marks.loc[index, column])
            cells.append(f'<td class="{"best" if best else ""}">{html.escape(text)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _plotly(figure: Any, first: bool) -> str:
    return figure.to_html(
        full_html=False,
        include_plotlyjs="inline" if first else False,
        config={
            "displaylogo": False,
            "toImageButtonOptions": {"format": "png", "width": SLIDE_WIDTH, "height": 1080},
        },
    )


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1500px; color: #222; }
section { page-break-after: always; break-after: page; margin-bottom: 3em; }
h1 { margin-bottom: 0.2em; } .measured { color: #555; font-style: italic; }
table { border-collapse: collapse; font-size: 12px; } th, td { border: 1px solid #ccc; padding: 3px 6px; }
td { text-align: right; } td.best { background: #c8f0c8; font-weight: bold; }
.panel { display: flex; flex-wrap: wrap; gap: 8px; } figure { margin: 0; max-width: 32%; }
figure img { width: 100%; } figcaption { font-size: 12px; color: #444; }
.download { font-size: 12px; } @media print { .download { display: none; } }
"""


def build_study(
    checkpoints: Sequence[str | Path],
    root: str | Path,
    images: Sequence[StudyImage] = (),
    title: str = "GTA5 → Cityscapes: a study",
    device: str = "cpu",
    profile_size: tuple[int, int] | None = None,
    progress: Callable[[str], None] | None = None,
) -> str:
    """The study's HTML, for checkpoint folders under ``root`` (their evaluations as the Results page shows
    them) and ``images``. Latency is measured here, on ``device``, at ``profile_size`` = (H, W), by default
    each network at the input size of its first chosen checkpoint (the size it runs at)."""
    import plotly.express as px

    from segdemo.catalogue import describe_checkpoint
    from segdemo.inference import Segmenter

    say = progress or (lambda _text: None)
    root = Path(root)
    chosen = [describe_checkpoint(Path(c), root) for c in checkpoints]
    unusable = [e for e in chosen if not e.usable]
    if unusable:
        raise ValueError(f"{unusable[0].name} cannot be used: {unusable[0].error}")
    names = {e.name for e in chosen}
    rows = labelled_report_rows() + [r for r in evaluation_rows(root) if r["name"] in names]
    frame = results_frame(rows)
    sections = [
        (
            f"<h1>{html.escape(title)}</h1><p>Made by segdemo on {time.strftime('%Y-%m-%d %H:%M')}. The "
            "report's rows are measured on real Cityscapes val; checkpoints say what they were measured on "
            "(procedural data is not Cityscapes: compare such rows with each other only).</p>"
        )
    ]
    say("tables")
    table = frame[["measured on", *METRIC_COLUMNS]]
    sections.append(
        "<section id='iou'><h2>Per-class IoU</h2><p class='measured'>IoU in percent; green: best of its "
        "column among the rows measured on the same kind of data.</p>"
        + _table(table, best_per_class(frame))
        + "</section>"
    )
    data = frame.reset_index()
    bars = px.bar(data, x="row", y="mIoU", color="measured on", text_auto=".1f", labels={"row": ""})
    # each kind of data has its own source-only row to gain over (real and procedural never mix)
    baselines: dict[str, str] = {}
    for label, row in frame.iterrows():
        if row["variant"] == SOURCE_ONLY:
            baselines.setdefault(row["data"], label)
    gains = []
    for label, row in frame.iterrows():
        base_label = baselines.get(row["data"])
        if base_label is None or label == base_label:
            continue
        for name in CLASS_NAMES:
            gains.append({"row": label, "class": name, "gain": row[name] - frame.loc[base_label, name]})
    charts = _plotly(bars, first=True)
    if gains:
        import pandas as pd

        gain_chart = px.bar(
            pd.DataFrame(gains),
            x="class",
            y="gain",
            color="row",
            barmode="group",
            labels={"gain": "IoU points over source only (same data)"},
        )
        charts += _plotly(gain_chart, first=False)
    sections.append(
        f"<section id='miou'><h2>mIoU, and each method's gain over source only</h2>{charts}</section>"
    )
    say("efficiency")
    measured = []
    sizes = {}
    for entry in chosen:
        sizes.setdefault(entry.model, tuple(profile_size or entry.input_size))
    for model, (height, width) in sorted(sizes.items()):
        measured.append(run_profile(model, height, width, device=device, runs=3, warmup=1))
    efficiency = [
        {
            "row": f"{r['variant']} (report)",
            "device": "P100 (the report)",
            "input": "1x3x512x1024",
            "params": str(r["params"]),
            "FLOPs": str(r["flops"]),
            "latency ms": r["latency_ms"],
        }
        for r in report_efficiency_rows()
    ]
    efficiency += [
        {
            "row": f"{m['model']} (this machine)",
            "device": m["device"],
            "input": m["input"],
            "params": f"{m['params'] / 1e6:.2f}M",
            "FLOPs": f"{m['flops'] / 1e9:.2f}G",
            "latency ms": m["latency_ms"],
        }
        for m in measured
    ]
    import pandas as pd

    sections.append(
        "<section id='efficiency'><h2>Efficiency</h2><p class='measured'>The report's rows: a P100 at "
        f"512 x 1024. This machine: {device}, random weights (timing does not depend on them), mean of 3 "
        "runs.</p>" + _table(pd.DataFrame(efficiency).set_index("row")) + "</section>"
    )
    segmenters = {e.name: Segmenter.from_checkpoint(e.path, device=device) for e in chosen}
    figures = []
    for item in images:
        say(f"image {item.name}")
        pictures = [(item.image, f"input: {item.name} ({item.origin})")]
        if item.label is not None:
            pictures.append((colorize(item.label), "ground truth"))
        predictions = {}
        for name, segmenter in segmenters.items():
            predictions[name] = segmenter.segment(item.image).train_ids
            pictures.append((overlay(item.image, predictions[name], OVERLAY_ALPHA), f"{name}"))
        if len(predictions) >= 2:
            (a, pa), (b, pb) = list(predictions.items())[:2]
            pictures.append((disagreement_image(item.image, pa, pb), f"where {a} and {b} disagree"))
        figures.append(f"<h3>{html.escape(item.name)}</h3>" + _figure(pictures, f"image_{item.name}"))
    if figures:
        sections.append(
            "<section id='images'><h2>Images through the checkpoints</h2>" + "".join(figures) + "</section>"
        )
    sections.append(_method_panels(next(iter(segmenters.values()), None)))
    body = "".join(sections)
    head = f"<meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"


def _method_panels(teacher: Any) -> str:
    """FDA (the report's Figure 8) and DACS (Figure 10) on procedural samples."""
    from segdemo.dacs import mask_image, mix_preview
    from segdemo.fda import fda_preview
    from segdemo.synthetic import render_scene, scene_rng

    source, source_label = render_scene(scene_rng(0, "source", "val", 0), "source", (640, 320))
    target, _ = render_scene(scene_rng(0, "target", "val", 0), "target", (640, 320))
    fda = fda_preview(source, target, 0.01)
    fda_panel = _figure(
        [
            (source, "source (procedural game-like)"),
            (fda.target, "target (procedural photo-like)"),
            (fda.result, "source in the target's style, β = 0.01"),
            (fda.spectra["source"], "source spectrum"),
            (fda.spectra["target"], "target spectrum"),
            (fda.spectra["result"], "translated spectrum"),
        ],
        "fda",
    )
    prediction = teacher.segment(target) if teacher is not None else None
    mix = mix_preview(
        source,
        source_label,
        target,
        seed=0,
        pseudo_label=None if prediction is None else prediction.train_ids,
        confidence=None if prediction is None else prediction.confidence,
    )
    dacs_panel = _figure(
        [
            (source, "source"),
            (colorize(source_label), "source label"),
            (mix.target, "target"),
            (
                colorize(prediction.train_ids) if prediction is not None else mix.target,
                "teacher's pseudo-label",
            ),
            (mask_image(source, mix.mask), "pasted classes"),
            (mix.image, "mixed image"),
            (colorize(mix.label), "mixed label"),
        ],
        "dacs",
    )
    return (
        "<section id='methods'><h2>FDA and DACS</h2><p class='measured'>Procedural samples (not GTA5 or "
        f"Cityscapes images).</p><h3>FDA</h3>{fda_panel}<h3>DACS</h3>{dacs_panel}</section>"
    )


def write_study(path: str | Path, text: str) -> Path:
    """Write the study atomically."""
    from segdemo.files import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), durable=False)
    return path


__all__ = ["StudyImage", "build_study", "panel_strip", "write_study"]
