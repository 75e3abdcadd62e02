"""Checkpoints: our format (safetensors weights + JSON metadata) and course-template ``.pth`` imports.

Our checkpoint is a folder ``<name>/`` holding ``model.safetensors`` and ``meta.json``. Loading never
executes code from the file: safetensors holds only tensors, and ``.pth`` files are read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

import segdemo
from segdemo.files import atomic_write
from segdemo.labels import CLASS_NAMES, NUM_CLASSES
from segdemo.models import MODEL_NAMES, build_model
from segdemo.models.bisenet import template_key_to_ours
from segdemo.normalization import IMAGENET_MEAN, IMAGENET_STD

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "meta.json"
DEFAULT_INPUT_SIZE = [512, 1024]  # [height, width], Cityscapes evaluation size in the report
MAX_INPUT_SIDE = 4096  # Cityscapes' full 2048 x 1024 twice over; larger would only fill the memory
TEMPLATE_SUFFIXES = (".pth", ".pt", ".tar", ".ckpt")
MAX_TENSOR_BYTES = 1 << 30
"""Most tensor data a checkpoint file may hold (1 GiB): DeepLabV2's weights are 176 MB, with Adam's two
moments 530 MB. What a file claims is checked against this before any of it is read."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message says which file and why."""


def default_metadata(model_name: str, **fields: Any) -> dict[str, Any]:
    """Metadata with every required field filled in; ``fields`` override the defaults."""
    meta: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "model": model_name,
        "num_classes": NUM_CLASSES,
        "classes": list(CLASS_NAMES),
        "input_size": list(DEFAULT_INPUT_SIZE),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "variant": None,
        "train_data": {"kind": "unknown"},
        "steps": 0,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": segdemo.__version__,
        "metrics": {},
    }
    meta.update(fields)
    return meta


def save_checkpoint(model: nn.Module, out_dir: str | Path, meta: Mapping[str, Any]) -> Path:
    """Write ``out_dir/model.safetensors`` then ``out_dir/meta.json`` (metadata last), atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    missing = {"model", "num_classes", "input_size", "mean", "std"} - set(meta)
    if missing:
        raise ValueError(f"checkpoint metadata lacks {sorted(missing)}; start from default_metadata()")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write(out_dir / WEIGHTS_FILE, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    write_metadata(out_dir, meta)
    return out_dir


def write_metadata(checkpoint_dir: str | Path, meta: Mapping[str, Any]) -> None:
    text = json.dumps(dict(meta), indent=2, sort_keys=False)
    atomic_write(Path(checkpoint_dir) / META_FILE, lambda tmp: Path(tmp).write_text(text + "\n"))


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of one of our checkpoints (folder or its ``model.safetensors``)."""
    folder = Path(path)
    folder = folder.parent if folder.is_file() else folder
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise CheckpointError(
            f"{folder} has no {META_FILE}: a checkpoint folder holds {WEIGHTS_FILE} and {META_FILE} (written "
            "by `python -m train`); for a course-template file pass the .pth itself"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{meta_path} is not valid JSON ({exc}); the checkpoint is damaged") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_path} must hold a JSON object")
    return meta


def update_metadata(path: str | Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into a checkpoint's metadata (e.g. evaluation metrics) and rewrite it atomically."""
    folder = Path(path)
    folder = folder.parent if folder.is_file() else folder
    meta = read_metadata(folder)
    meta.update(fields)
    write_metadata(folder, meta)
    return meta


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load our checkpoint (folder, or its ``model.safetensors``) or a course-template ``.pth``.

    Returns ``(model in eval mode, metadata)``. Every failure is a :class:`CheckpointError`.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir() or path.suffix == ".safetensors":
        model, meta = _load_ours(path)
    elif path.suffix in TEMPLATE_SUFFIXES:
        model, meta = _load_template(path)
    else:
        raise CheckpointError(
            f"{path}: unknown checkpoint type; expected a checkpoint folder (model.safetensors + meta.json) "
            f"or a course-template state dict ({', '.join(TEMPLATE_SUFFIXES)})"
        )
    return model.to(device).eval(), meta


def validate_metadata(meta: Mapping[str, Any], where: str | Path) -> None:
    """Raise :class:`CheckpointError` unless what ``meta.json`` says is usable: a known network with the 19
    classes, an input size it runs at (two sides, multiples of 8, at most :data:`MAX_INPUT_SIDE`), and a mean
    and a standard deviation of three finite numbers (deviations above 0). Checked when a checkpoint is
    listed and when it is loaded, so a bad one is never offered as usable and never crashes a page."""
    for key in ("model", "num_classes"):
        if key not in meta:
            raise CheckpointError(f"{where} lacks the field {key!r}")
    if meta["model"] not in MODEL_NAMES:
        raise CheckpointError(f"{where}: unknown model {meta['model']!r} (known: {', '.join(MODEL_NAMES)})")
    if meta["num_classes"] != NUM_CLASSES:
        raise CheckpointError(
            f"{where}: {meta['num_classes']} classes, but this tool works with the {NUM_CLASSES} Cityscapes "
            "classes"
        )
    size = meta.get("input_size", DEFAULT_INPUT_SIZE)
    if not (
        isinstance(size, (list, tuple))
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    ):
        raise CheckpointError(f"{where}: input_size {size!r} is not [height, width]")
    if not all(8 <= v <= MAX_INPUT_SIDE and v % 8 == 0 for v in size):
        raise CheckpointError(
            f"{where}: input_size {size[0]} x {size[1]} cannot be used: both sides must be multiples of 8 "
            f"from 8 to {MAX_INPUT_SIDE} (the networks upsample their 1/8 features x8)"
        )
    for key in ("mean", "std"):
        values = meta.get(key, IMAGENET_MEAN if key == "mean" else IMAGENET_STD)
        numbers = (
            isinstance(values, (list, tuple))
            and len(values) == 3
            and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
            )
        )
        if not numbers or (key == "std" and min(values) <= 0):
            raise CheckpointError(
                f"{where}: {key} {values!r} is not three finite numbers{' above 0' if key == 'std' else ''}"
            )


def _load_ours(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    folder = path if path.is_dir() else path.parent
    meta = read_metadata(folder)
    validate_metadata(meta, folder / META_FILE)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{folder} has no {WEIGHTS_FILE}")
    model = build_model(meta["model"], meta["num_classes"])
    try:
        # The header first: names and shapes are checked against the network before any tensor is read.
        with safe_open(weights, framework="pt") as header:
            names = header.keys()  # a safe_open handle is not iterable itself
            shapes = {key: tuple(header.get_slice(key).get_shape()) for key in names}
        _check_shapes(model, shapes, weights, meta["model"])
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {weights}: {exc} (truncated or not a safetensors file?)") from exc
    _load_strict(model, state, weights, meta["model"])
    return model, {**default_metadata(meta["model"]), **meta}


def _claimed_bytes(path: Path) -> int:
    """How many bytes of tensor data ``path`` says it holds, read from its directory alone (nothing inflated).

    A torch.save (zip) file lists each tensor's storage with its size; torch.save never compresses them, so a
    compressed one means a file made by hand to inflate (a few MB that claim gigabytes) and is refused. A
    legacy (non-zip) file stores its tensors as they are: its size is what it holds.
    """
    if not zipfile.is_zipfile(path):
        return path.stat().st_size
    with zipfile.ZipFile(path) as archive:
        entries = [e for e in archive.infolist() if "/data/" in e.filename or e.filename.startswith("data/")]
    packed = [e.filename for e in entries if e.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise CheckpointError(
            f"{path.name}: its tensors are compressed ({packed[0]}), which torch.save never does: a file "
            "built to inflate when read is refused. Save the state dict again with torch.save."
        )
    return sum(e.file_size for e in entries)


def _read_state_file(path: Path) -> Any:
    """``torch.load(weights_only=True)`` of a course-template file with bounded memory: what the file claims
    is
    checked first, and a zip file is memory-mapped, so only the tensors the network takes are ever read."""
    claimed = _claimed_bytes(path)
    if claimed > MAX_TENSOR_BYTES:
        raise CheckpointError(
            f"{path.name} holds {claimed / 2**20:,.0f} MB of tensors, more than a checkpoint of these "
            f"networks can ({MAX_TENSOR_BYTES >> 20:,} MB with an optimiser's state): refused before reading "
            "it"
        )
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            return torch.load(
                path, map_location="cpu", weights_only=True
            )  # a file mmap cannot map, checked above
    except CheckpointError:
        raise
    except Exception as exc:
        # weights_only refuses pickles that would build arbitrary objects (and so run code); a
        # truncated file fails here too. Either way the file is not executed.
        raise CheckpointError(
            f"cannot load {path} as a plain state dict: {str(exc).splitlines()[0]}. Only tensors are "
            "accepted (torch.load with weights_only=True); the file may be truncated or contain pickled "
            "code."
        ) from exc


def _load_template(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    state = _unwrap_state_dict(_read_state_file(path), path)
    name = _detect_architecture(state, path)
    if name == "bisenet":
        state = {ours: v for k, v in state.items() if (ours := template_key_to_ours(k)) is not None}
    final = "conv.weight" if name == "bisenet" else "layer6.conv2d_list.0.weight"
    if final not in state:
        raise CheckpointError(f"{path}: looks like {name} but has no {final!r}; is it a complete state dict?")
    num_classes = int(state[final].shape[0])
    if num_classes != NUM_CLASSES:
        raise CheckpointError(
            f"{path}: the {name} classifier has {num_classes} classes, but this tool works with the "
            f"{NUM_CLASSES} Cityscapes classes"
        )
    model = build_model(name, num_classes)
    _load_strict(model, state, path, name)
    meta = default_metadata(
        name,
        variant="template import",
        train_data={"kind": "unknown", "source": "course-template checkpoint", "file": str(path)},
        notes="imported from a course-template .pth; normalisation assumed ImageNet mean/std",
    )
    return model, meta


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model", "net"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path} does not hold a state dict (a mapping of parameter names to tensors)")
    state = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: entry {key!r} is not a tensor; not a state dict")
        state[key.removeprefix("module.")] = value
    return state


def peek_template(path: str | Path) -> str:
    """The architecture of a template file, read without building a model (memory-mapped, size checked
    first)."""
    path = Path(path)
    return _detect_architecture(_unwrap_state_dict(_read_state_file(path), path), path)


def _detect_architecture(state: Mapping[str, torch.Tensor], path: Path) -> str:
    keys = state.keys()
    if any(k.startswith(("saptial_path.", "spatial_path.")) for k in keys):
        return "bisenet"
    if any(k.startswith("layer6.conv2d_list.") for k in keys):
        return "deeplabv2"
    sample = ", ".join(list(keys)[:3])
    raise CheckpointError(
        f"{path}: neither a BiSeNet nor a DeepLabV2 state dict of the course template (first keys: {sample})"
    )


def _check_shapes(model: nn.Module, shapes: Mapping[str, tuple[int, ...]], path: Path, name: str) -> None:
    """Every name and shape of the network, and nothing else (from a header or memory-mapped tensors)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in shapes]
    unexpected = [k for k in shapes if k not in expected]
    wrong = [k for k in expected if k in shapes and tuple(shapes[k]) != expected[k]]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (first: {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unknown (first: {', '.join(unexpected[:3])})")
    if wrong:
        k = wrong[0]
        problems.append(f"{len(wrong)} of another shape (e.g. {k}: {tuple(shapes[k])} vs {expected[k]})")
    if problems:
        raise CheckpointError(f"{path} does not fit the {name} architecture: " + "; ".join(problems))


def _load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path, name: str) -> None:
    _check_shapes(model, {k: tuple(v.shape) for k, v in state.items()}, path, name)
    model.load_state_dict(state, strict=True)  # copies: memory-mapped tensors are read here, and only these
