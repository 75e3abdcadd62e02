"""Result tables: the report's rows (shipped as data) and the evaluations stored in checkpoints.

Every row says what data it was measured on, so procedural-data numbers are never mistaken for
Cityscapes numbers.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from segdemo.catalogue import CheckpointEntry, list_checkpoints
from segdemo.labels import CLASS_NAMES

REPORT_CSV = Path(__file__).with_name("data") / "report_results.csv"
# The CSV's per-class column names, in trainId order.
REPORT_CLASS_COLUMNS = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic_light",
    "traffic_sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
assert [c.replace("_", " ") for c in REPORT_CLASS_COLUMNS] == list(CLASS_NAMES)


def _number(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def report_rows() -> list[dict[str, Any]]:
    """The report's result rows: variant, mIoU, per-class IoU (by class name), latency, FLOPs, params."""
    rows = []
    with REPORT_CSV.open(newline="") as f:
        for rec in csv.DictReader(f):
            rows.append(
                {
                    "source": "report",
                    "variant": rec["variant"],
                    "model": rec["model"],
                    "method": rec["method"],
                    "measured_on": f"real {rec['eval_domain']} val (the report, P100)",
                    "miou": _number(rec["mIoU"]),
                    "iou": {name: _number(rec[col]) for name, col in zip(CLASS_NAMES, REPORT_CLASS_COLUMNS)},
                    "latency_ms": _number(rec["latency_ms"]),
                    "flops": rec["flops"] or None,
                    "params": rec["params"] or None,
                }
            )
    return rows


def report_row(variant: str) -> dict[str, Any] | None:
    return next((r for r in report_rows() if r["variant"] == variant), None)


def format_table(rows: list[dict[str, Any]], per_class: bool = True) -> str:
    """A Markdown table: one line per row, mIoU and (optionally) the 19 per-class IoUs, in percent."""

    def cell(value: float | None) -> str:
        return "" if value is None or math.isnan(value) else f"{value:.2f}"

    header = ["variant", "measured on", "mIoU"] + (list(CLASS_NAMES) if per_class else [])
    lines = []
    for row in rows:
        cells = [str(row["variant"]), row["measured_on"], cell(row["miou"])]
        if per_class:
            cells += [cell(row["iou"].get(name)) for name in CLASS_NAMES]
        lines.append(cells)
    return markdown_table(header, lines)


def format_seed_table(summaries: list[dict[str, Any]]) -> str:
    """:func:`seed_groups` as a Markdown table: mIoU and the 19 per-class IoUs as "mean ± std"."""
    cells = [_seed_cells(group) for group in summaries]
    return markdown_table(SEED_COLUMNS, [[line[column] for column in SEED_COLUMNS] for line in cells])


def markdown_table(header: list[str], lines: list[list[str]]) -> str:
    """A Markdown table of ``header`` and ``lines`` (lists of cells)."""
    rule = "|" + "---|" * len(header)
    return "\n".join(["| " + " | ".join(header) + " |", rule] + ["| " + " | ".join(c) + " |" for c in lines])


# ---------------------------------------------------------------------------------------------
# App-facing tables (pandas is imported inside the functions: the library itself does not need it)
# ---------------------------------------------------------------------------------------------

DATA_LABELS = {
    "real": "real Cityscapes val",
    "procedural": "procedural data (not Cityscapes)",
    "unknown": "unknown data",
    "mixed": "mixed data",
}
"""How each kind of evaluation data is named in the app's tables."""


def evaluation_rows(root: str | Path = "checkpoints") -> list[dict[str, Any]]:
    """Rows like :func:`report_rows` for every evaluation of a checkpoint folder under ``root``: the one in
    its ``metrics`` (training's, or ``train evaluate --cityscapes``) and each of its ``evaluations`` (other
    data or protocols).

    Extra keys: ``label`` (unique, names the data kind), ``name`` (the folder relative to ``root``),
    ``data`` ("procedural" | "real" | "unknown", from the evaluation's description), ``train_data`` (what the
    checkpoint was trained on), ``seed`` (its training seed, or None) and ``confusion`` (the 19 x 19 matrix,
    or None where it was not recorded).
    """
    rows = []
    for entry in list_checkpoints(root):
        if not entry.usable or entry.format != "folder":
            continue
        common = {
            "name": entry.name,
            "source": entry.name,
            "variant": entry.variant,
            "model": entry.model,
            "method": None,
            "train_data": entry.train_data,
            "seed": entry.seed,
            "input_size": tuple(entry.input_size) if entry.input_size else None,
            "steps": entry.steps,
            "latency_ms": None,
            "flops": None,
            "params": None,
        }
        if entry.miou is not None:
            iou = entry.iou or {}
            rows.append(
                {
                    **common,
                    "label": f"{entry.name} ({entry.eval_kind})",
                    "data": entry.eval_kind,
                    "measured_on": entry.measured_on or "unknown data",
                    "miou": entry.miou,
                    "iou": {name: iou.get(name) for name in CLASS_NAMES},
                    "confusion": entry.confusion,
                }
            )
        for key, record in (entry.evaluations or {}).items():
            if not isinstance(record, dict) or "miou" not in record:
                continue
            iou = record.get("iou") or {}
            tta = (record.get("protocol") or {}).get("test_time", {}).get("name", "none")
            kind = record.get("eval_kind", "unknown")
            rows.append(
                {
                    **common,
                    "label": f"{entry.name} ({kind}: {record.get('eval_data', key)}, test time {tta})",
                    "data": kind if kind in DATA_LABELS else "unknown",
                    "measured_on": f"{record.get('eval_data', key)}, test time {tta}",
                    "miou": record["miou"],
                    "iou": {name: iou.get(name) for name in CLASS_NAMES},
                    "confusion": record.get("confusion"),
                }
            )
    return rows


def seed_groups(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows that share a variant, a model, the data they were measured on and its kind, the input size and the
    steps, and differ only in their training seed (two seeds or more): one summary per group with ``seeds``
    (sorted), ``input_size`` ((height, width) or None), ``miou`` and ``iou`` as ``(mean, sample std)`` pairs
    in IoU points (NaN where a class was never scored)."""
    import statistics

    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("seed") is None or row.get("miou") is None:
            continue
        size = tuple(row["input_size"]) if row.get("input_size") else None
        key = (row["variant"], row["model"], row["measured_on"], row["data"], size, row.get("steps"))
        groups.setdefault(key, []).append(row)

    def spread(values: list[float | None]) -> tuple[float, float]:
        known = [float(v) for v in values if v is not None and not math.isnan(float(v))]
        if not known:
            return math.nan, math.nan
        return statistics.fmean(known), statistics.stdev(known) if len(known) > 1 else 0.0

    summaries = []
    for (variant, model, measured_on, data, size, _steps), members in groups.items():
        seeds = sorted({row["seed"] for row in members})
        if len(seeds) < 2:
            continue
        summaries.append(
            {
                "variant": variant,
                "model": model,
                "measured_on": measured_on,
                "data": data,
                "input_size": size,
                "seeds": seeds,
                "runs": len(members),
                "miou": spread([row["miou"] for row in members]),
                "iou": {name: spread([row["iou"].get(name) for row in members]) for name in CLASS_NAMES},
            }
        )
    return summaries


def _mean_std(pair: tuple[float, float]) -> str:
    mean, std = pair
    return "" if math.isnan(mean) else f"{mean:.2f} ± {std:.2f}"


def _seed_cells(group: dict[str, Any]) -> dict[str, str]:
    """One :func:`seed_groups` summary as the cells of a table line."""
    size = group.get("input_size")
    return {
        "variant": group["variant"],
        "input": f"{size[1]}x{size[0]}" if size else "",
        "measured on": group["measured_on"],
        "seeds": ", ".join(str(seed) for seed in group["seeds"]),
        "mIoU": _mean_std(group["miou"]),
        **{name: _mean_std(group["iou"][name]) for name in CLASS_NAMES},
    }


SEED_COLUMNS = ["variant", "input", "measured on", "seeds", "mIoU", *CLASS_NAMES]


def seed_frame(summaries: list[dict[str, Any]]) -> Any:
    """:func:`seed_groups` as a table of "mean ± std" strings: one line per variant and data."""
    import pandas as pd

    return pd.DataFrame.from_records([_seed_cells(group) for group in summaries], columns=SEED_COLUMNS)


def labelled_report_rows() -> list[dict[str, Any]]:
    """:func:`report_rows` with ``label`` ("<variant> (report)") and ``data`` ("real") added."""
    return [
        {**row, "label": f"{row['variant']} (report)", "data": "real", "train_data": "real"}
        for row in report_rows()
    ]


def all_result_rows(root: str | Path = "checkpoints") -> list[dict[str, Any]]:
    """The report's rows first, then every evaluated checkpoint under ``root``."""
    return labelled_report_rows() + evaluation_rows(root)


def _nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


def results_frame(rows: list[dict[str, Any]]) -> Any:
    """A pandas DataFrame, one line per row (indexed by its label): what it is, what it was measured
    on, mIoU and the 19 per-class IoUs in percent (NaN where unknown)."""
    import pandas as pd

    records = []
    for row in rows:
        label = row.get("label") or f"{row['variant']} ({row.get('source', '')})"
        data = row.get("data", "unknown")
        records.append(
            {
                "row": label,
                "source": "report" if row.get("source") == "report" else "checkpoint",
                "variant": row.get("variant"),
                "model": row.get("model"),
                "data": data,
                "measured on": row.get("measured_on") or DATA_LABELS.get(data, data),
                "mIoU": _nan(row.get("miou")),
                **{name: _nan(row.get("iou", {}).get(name)) for name in CLASS_NAMES},
            }
        )
    columns = ["row", "source", "variant", "model", "data", "measured on", "mIoU", *CLASS_NAMES]
    return pd.DataFrame.from_records(records, columns=columns).set_index("row")


METRIC_COLUMNS = ("mIoU", *CLASS_NAMES)


def best_per_class(frame: Any) -> Any:
    """Boolean frame (rows x mIoU and classes): True where a row has the best value of its column
    among the rows measured on the same kind of data (real and procedural numbers never compete).
    A best of 0 is no achievement and is not marked."""
    values = frame[list(METRIC_COLUMNS)]
    best = values.groupby(frame["data"]).transform("max")
    return (values == best) & values.notna() & (best > 0)


def delta_frame(frame: Any, a: str, b: str) -> Any:
    """Per metric (mIoU, then the classes): row ``a``, row ``b`` and ``b - a``, in IoU points."""
    import pandas as pd

    for label in (a, b):
        if label not in frame.index:
            raise KeyError(f"no row {label!r}; rows are {', '.join(map(str, frame.index))}")
    first = frame.loc[a, list(METRIC_COLUMNS)].astype(float)
    second = frame.loc[b, list(METRIC_COLUMNS)].astype(float)
    out = pd.DataFrame({a: first, b: second, "delta": second - first})
    out.index.name = "metric"
    return out


def checkpoints_frame(entries: list[CheckpointEntry]) -> Any:
    """The Home page's table of :func:`segdemo.catalogue.list_checkpoints` entries."""
    import pandas as pd

    records = [
        {
            "name": entry.name,
            "variant": entry.variant or "",
            "model": entry.model or "?",
            "training data": entry.train_data,
            "mIoU": _nan(entry.miou),
            "measured on": entry.measured_on or "not evaluated",
            "status": "ok" if entry.usable else f"unusable: {entry.error}",
        }
        for entry in entries
    ]
    columns = ["name", "variant", "model", "training data", "mIoU", "measured on", "status"]
    return pd.DataFrame.from_records(records, columns=columns)


def report_efficiency_rows() -> list[dict[str, Any]]:
    """The report's Table 1/2: rows of :func:`report_rows` that have a latency."""
    return [row for row in report_rows() if row["latency_ms"] is not None]


def run_profile(
    model_name: str,
    height: int,
    width: int,
    device: str = "cpu",
    runs: int = 5,
    warmup: int = 2,
    progress: Any = None,
) -> dict[str, Any]:
    """Parameters, fvcore FLOPs and latency of a freshly built model (random weights: timing does
    not depend on them), reporting ``progress(text, fraction)`` after each stage and timed run."""
    import statistics

    from segdemo.models import build_model
    from segdemo.profiling import count_flops, count_parameters, measure_latency

    def say(text: str, fraction: float) -> None:
        if progress is not None:
            progress(text, fraction)

    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got {runs} and {warmup}")
    say(f"building {model_name}", 0.0)
    model = build_model(model_name).to(device).eval()
    params = count_parameters(model)
    say("counting FLOPs with fvcore", 0.1)
    flops = count_flops(model, height, width)
    say(f"{warmup} warm-up runs", 0.3)
    times, device_name = [], device
    for i in range(runs):
        # One timed run per call, so progress can be reported; warm-up only before the first.
        latency = measure_latency(model, height, width, warmup=warmup if i == 0 else 0, runs=1, device=device)
        times.append(latency.mean_ms)
        device_name = latency.device
        say(f"timed run {i + 1} of {runs}: {latency.mean_ms:.1f} ms", 0.3 + 0.7 * (i + 1) / runs)
    mean = statistics.fmean(times)
    return {
        "model": model_name,
        "input": f"1x3x{height}x{width}",
        "device": device_name,
        "params": params,
        "flops": flops,
        "latency_ms": mean,
        "std_ms": statistics.pstdev(times),
        "fps": 1000.0 / mean,
        "runs": runs,
        "warmup": warmup,
    }


def profile_frame(measured: list[dict[str, Any]]) -> Any:
    """The report's Table 1/2 rows, then measured :func:`run_profile` results, in one DataFrame.

    ``mIoU`` is the report's (Cityscapes val); a fresh network measured here has none (NaN)."""
    import pandas as pd

    records = []
    for row in report_efficiency_rows():
        records.append(
            {
                "row": f"{row['variant']} (report)",
                "model": row["model"],
                "input": "1x3x512x1024",
                "device": "P100 (the report)",
                "mIoU": row["miou"],
                "params": row["params"],
                "FLOPs": row["flops"],
                "latency ms": row["latency_ms"],
                "± ms": float("nan"),
                "FPS": 1000.0 / row["latency_ms"],
            }
        )
    for i, row in enumerate(measured, 1):
        records.append(
            {
                "row": f"run {i}: {row['model']} (this machine)",
                "model": row["model"],
                "input": row["input"],
                "device": row["device"],
                "mIoU": float("nan"),
                "params": f"{row['params'] / 1e6:.2f}M",
                "FLOPs": f"{row['flops'] / 1e9:.2f}G",
                "latency ms": row["latency_ms"],
                "± ms": row["std_ms"],
                "FPS": row["fps"],
            }
        )
    columns = ["row", "model", "input", "device", "mIoU", "params", "FLOPs", "latency ms", "± ms", "FPS"]
    return pd.DataFrame.from_records(records, columns=columns).set_index("row")
