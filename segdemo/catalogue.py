"""The app's catalogue of checkpoints: finding them under a root, describing each without loading its weights
(:class:`CheckpointEntry`), and importing, listing and removing uploaded course-template files."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segdemo.checkpoints import (
    DEFAULT_INPUT_SIZE,
    META_FILE,
    TEMPLATE_SUFFIXES,
    WEIGHTS_FILE,
    CheckpointError,
    load_model,
    peek_template,
    read_metadata,
    validate_metadata,
)
from segdemo.files import atomic_write

UPLOADS_DIR = "uploads"
"""Sub-folder of the checkpoint root where uploaded course-template files are kept."""
_SKIPPED_DIRS = ("last", "tb")  # resume states and TensorBoard logs inside our checkpoint folders
DATA_KINDS = ("procedural", "real", "mixed", "unknown")
PREFERRED_VARIANTS = ("bisenet_gta5_dacs", "bisenet_gta5_fda", "bisenet_gta5_aug12")
"""Pre-selected first by the pages: the adapted GTA5 models, the report's best first."""

MAX_IMPORT_BYTES = 400 * 2**20
"""Largest course-template file the app imports (DeepLabV2's weights are 176 MB)."""
UPLOADS_QUOTA_BYTES = 2 * 2**30
"""Most that ``checkpoints/uploads/`` may hold in all; past it an import is refused until one is removed."""


@dataclass(frozen=True)
class CheckpointEntry:
    """What the app knows about one checkpoint, read from its metadata (or a template file's keys)."""

    name: str
    """The path relative to the checkpoint root: unique, shown to the user."""
    path: str
    format: str
    """"folder" (ours: weights + meta.json) or "template" (a course-template state dict)."""
    variant: str | None = None
    model: str | None = None
    train_data: str = "unknown"
    """What it was trained on: one of :data:`DATA_KINDS`."""
    miou: float | None = None
    iou: Mapping[str, float] | None = None
    """Per-class IoU by class name, of the evaluation in its metadata."""
    measured_on: str | None = None
    """The evaluation's data, in words."""
    eval_kind: str = "unknown"
    """What the evaluation was measured on: one of :data:`DATA_KINDS`."""
    confusion: list[list[int]] | None = None
    """The evaluation's 19 x 19 confusion matrix (rows = ground truth), where it was recorded."""
    seed: int | None = None
    """The training seed, for telling repeats of one variant apart."""
    evaluations: Mapping[str, Any] | None = None
    """Further evaluations (``train evaluate --images ...``, the Evaluate page), by data and protocol."""
    input_size: list[int] | None = None
    steps: int | None = None
    error: str | None = None
    """None, or why the checkpoint cannot be used."""

    @property
    def usable(self) -> bool:
        return self.error is None

    @property
    def title(self) -> str:
        """One short line naming the checkpoint, its network and what it was trained on."""
        return f"{self.name} ({self.model or '?'}, {self.train_data} data)"


def discover_checkpoints(root: str | Path) -> list[Path]:
    """Our checkpoint folders and course-template files (``.pth`` ...) under ``root``, sorted.

    Resume states (``last/``), TensorBoard folders, hidden files (half-written uploads) and
    anything inside one of our checkpoint folders are skipped.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        folder = Path(dirpath)
        if META_FILE in filenames and WEIGHTS_FILE in filenames and folder.name not in _SKIPPED_DIRS:
            found.append(folder)
            dirnames[:] = []  # its last/ and tb/ hold training state, not checkpoints
            continue
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIRS and not d.startswith("."))
        found += [
            folder / f
            for f in filenames
            if Path(f).suffix.lower() in TEMPLATE_SUFFIXES and not f.startswith(".")
        ]
    return sorted(found)


def checkpoint_fingerprint(path: str | Path) -> tuple[int, int]:
    """``(latest mtime in ns, total size)`` of a checkpoint's files: changes whenever it is rewritten."""
    path = Path(path)
    files = [path / META_FILE, path / WEIGHTS_FILE] if path.is_dir() else [path]
    stats = [f.stat() for f in files if f.exists()]
    return (max((s.st_mtime_ns for s in stats), default=0), sum(s.st_size for s in stats))


def eval_kind(metrics: Mapping[str, Any] | None) -> str:
    """ "procedural", "real" or "unknown": what an evaluation in a checkpoint's metrics was measured on.

    Evaluations write it as ``eval_kind``; checkpoints from before that (0.1.0 before 2026-11) only have the
    human-readable ``eval_data`` ("<kind> cityscapes-layout val, N images"), read as a fallback.
    """
    if not metrics or "miou" not in metrics:
        return "unknown"
    if metrics.get("eval_kind") in DATA_KINDS:
        return str(metrics["eval_kind"])
    text = str(metrics.get("eval_data", "")).strip().lower()
    if "procedural" in text:
        return "procedural"
    if text.startswith("real"):
        return "real"
    return "unknown"


def _train_kind(meta: Mapping[str, Any]) -> str:
    data = meta.get("train_data")
    kind = data.get("kind") if isinstance(data, Mapping) else None
    return kind if kind in DATA_KINDS else "unknown"


def describe_checkpoint(path: str | Path, root: str | Path | None = None) -> CheckpointEntry:
    """The :class:`CheckpointEntry` of one checkpoint, without loading its weights; ``name`` is relative to
    ``root``. A checkpoint that cannot be used has its reason in ``error``."""
    path = Path(path)
    try:
        name = str(path.relative_to(root)) if root is not None else path.name
    except ValueError:
        name = path.name
    fmt = "folder" if path.is_dir() else "template"
    fields: dict[str, Any] = {}
    try:
        if path.is_dir():
            meta = read_metadata(path)
            if not (path / WEIGHTS_FILE).is_file():
                raise CheckpointError(f"{path} has no {WEIGHTS_FILE}")
            metrics = meta.get("metrics") if isinstance(meta.get("metrics"), Mapping) else {}
            fields = {
                "variant": meta.get("variant"),
                "model": meta.get("model"),
                "train_data": _train_kind(meta),
                "input_size": meta.get("input_size", DEFAULT_INPUT_SIZE),
                "steps": meta.get("steps"),
                "miou": metrics.get("miou"),
                "iou": metrics.get("iou") if isinstance(metrics.get("iou"), Mapping) else None,
                "measured_on": metrics.get("eval_data") if "miou" in metrics else None,
                "eval_kind": eval_kind(metrics),
                "confusion": metrics.get("confusion") if "miou" in metrics else None,
                "seed": (meta.get("config") or {}).get("seed")
                if isinstance(meta.get("config"), Mapping)
                else None,
                "evaluations": meta.get("evaluations")
                if isinstance(meta.get("evaluations"), Mapping)
                else None,
            }
            validate_metadata(meta, path.name)
        else:
            fields = {
                "variant": "template import",
                "model": peek_template(path),
                "input_size": list(DEFAULT_INPUT_SIZE),
            }
    except CheckpointError as exc:
        fields["error"] = str(exc)
    return CheckpointEntry(name=name, path=str(path), format=fmt, **fields)


def list_checkpoints(root: str | Path) -> list[CheckpointEntry]:
    """:func:`describe_checkpoint` for everything :func:`discover_checkpoints` finds under ``root``."""
    return [describe_checkpoint(p, root) for p in discover_checkpoints(root)]


def preferred_order(entries: list[CheckpointEntry]) -> list[CheckpointEntry]:
    """Checkpoints in the order pages pre-select them: :data:`PREFERRED_VARIANTS` first, then by name."""

    def rank(entry: CheckpointEntry) -> tuple[int, str]:
        variant = str(entry.variant or "")
        order = PREFERRED_VARIANTS
        return (order.index(variant) if variant in order else len(order), entry.name)

    return sorted(entries, key=rank)


# ---------------------------------------------------------------------------------------------
# Imported course-template files
# ---------------------------------------------------------------------------------------------


def _safe_file_name(filename: str, suffix: str) -> str:
    stem = Path(str(filename).replace("\\", "/")).stem  # never trust folders in an uploaded name
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip("._") or "checkpoint"
    return stem[:80] + suffix


def uploads_size(root: str | Path) -> int:
    """Bytes the imported checkpoints under ``root/uploads`` take."""
    folder = Path(root) / UPLOADS_DIR
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) if folder.is_dir() else 0


def import_template_checkpoint(
    data: bytes,
    filename: str,
    root: str | Path,
    max_bytes: int = MAX_IMPORT_BYTES,
    quota_bytes: int = UPLOADS_QUOTA_BYTES,
) -> tuple[Path, dict[str, Any]]:
    """Validate an uploaded course-template file and keep it as ``root/uploads/<name>``.

    A file over ``max_bytes``, or one that would take ``root/uploads`` over ``quota_bytes``, is refused first.
    The bytes are written to a hidden temporary file and loaded with :func:`load_model`; only a
    file that loads is renamed into place (a new name if another file already has it; the same
    bytes uploaded twice are kept once). Anything else raises :class:`CheckpointError` and leaves
    nothing behind. Returns ``(path, metadata)``.
    """
    suffix = Path(str(filename)).suffix.lower()
    if suffix not in TEMPLATE_SUFFIXES:
        raise CheckpointError(
            f"{filename}: expected a course-template state dict ({', '.join(TEMPLATE_SUFFIXES)}); our own "
            "checkpoints are folders written by `python -m train`"
        )
    if not data:
        raise CheckpointError(f"{filename} is empty (0 bytes)")
    if len(data) > max_bytes:
        raise CheckpointError(
            f"{filename} is {len(data) / 2**20:,.0f} MB; the limit for an import is {max_bytes / 2**20:,.0f} "
            "MB"
        )
    used = uploads_size(root)
    if used + len(data) > quota_bytes:
        raise CheckpointError(
            f"{filename} ({len(data) / 2**20:,.0f} MB) does not fit: the imported checkpoints take "
            f"{used / 2**20:,.0f} MB of the {quota_bytes / 2**20:,.0f} MB allowed. Remove one first"
        )
    folder = Path(root) / UPLOADS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    name = _safe_file_name(filename, suffix)
    dest, n = folder / name, 1
    while dest.exists() and not (dest.stat().st_size == len(data) and dest.read_bytes() == data):
        dest = folder / f"{Path(name).stem}-{n}{suffix}"
        n += 1
    if dest.exists():  # these very bytes were imported before: kept once
        _, meta = load_model(dest)
    else:
        loaded: dict[str, Any] = {}

        def write_checked(tmp: str) -> None:
            Path(tmp).write_bytes(data)
            try:
                _, loaded["meta"] = load_model(tmp)
            except CheckpointError as exc:
                raise CheckpointError(str(exc).replace(str(tmp), filename)) from None

        atomic_write(dest, write_checked)  # renamed into place only once it loads
        meta = loaded["meta"]
    meta["train_data"] = {**meta["train_data"], "file": str(dest)}
    return dest, meta


def remove_imported_checkpoint(path: str | Path, root: str | Path) -> None:
    """Delete an imported checkpoint: a file directly in ``root/uploads``, nothing else (CheckpointError)."""
    folder = (Path(root) / UPLOADS_DIR).resolve()
    target = Path(path).resolve()
    if target.parent != folder or not target.is_file() or target.suffix.lower() not in TEMPLATE_SUFFIXES:
        raise CheckpointError(
            f"{Path(path).name} is not an imported checkpoint in {folder}; only those can be removed"
        )
    target.unlink()


def imported_checkpoints(root: str | Path) -> list[Path]:
    """The files in ``root/uploads`` that the app imported, sorted by name."""
    folder = Path(root) / UPLOADS_DIR
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in TEMPLATE_SUFFIXES and not p.name.startswith(".")
    )
