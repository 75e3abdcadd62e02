"""A run's resume state: written so that a run killed at any moment continues from a complete state.

Each save writes a new hidden folder ``<out>/.last-<step>-<suffix>/`` (the model as a checkpoint, the
optimiser, schedule, loss scaler and DACS teacher in ``trainer.pt``, then ``progress.json`` last: a folder
holding it is complete), then replaces the small text file ``<out>/last``, which names that folder, in one
atomic rename, and deletes the older folders. No symbolic link is involved: Google Drive as Colab mounts it,
exFAT disks and some network shares refuse them.

Killed while a folder is half written, the file still names the previous one; killed between the folder
and the file, :func:`resume_folder` finds the newer complete folder itself. States written by earlier
versions (``last`` as a link to such a folder, or as a plain folder) are read too.

:func:`settings_mismatch` is the one list of settings that a resumed run, or a checkpoint the demo reuses,
must share with the run at hand.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from segdemo.files import atomic_write, fsync_path
from train.config import Config

LAST = "last"  # <out>/last: a text file naming the newest complete state folder
STATE_PREFIX = ".last-"
PROGRESS_FILE = "progress.json"
TRAINER_FILE = "trainer.pt"

# The settings that define a run's schedule, data and recipe: a resumed run (and a kept demo checkpoint) must
# have the same. Others (workers, logging, evaluation, saving, AMP) may change between a run and its
# resumption.
RUN_KEYS = (
    "variant",
    "model",
    "labeled",
    "method",
    "augment",
    "gta5_size",
    "cityscapes_size",
    "batch_size",
    "epochs",
    "iterations",
    "optimizer",
    "lr",
    "schedule",
    "seed",
    "init_from",
    # the recipe: what `python -m train demo --set` and `run` overrides change in an ablation
    "momentum",
    "weight_decay",
    "poly_power",
    "head_lr_mult",
    "aux_weight",
    "ohem_threshold",
    "rcs_temperature",
    "pretrained",
    "fda_beta",
    "fda_entropy_weight",
    "fda_eta",
    "dacs_threshold",
    "dacs_weight",
    "dacs_ema",
    "dacs_color_jitter",
    "dacs_blur",
    "dacs_teacher_bn",
)


def prepare_run_folder(out_dir: str | Path) -> Path:
    """Create ``out_dir`` if needed and check that files can be written there; ValueError in one sentence if
    not (a file of that name, a read-only disk, a system folder), before any work is done."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder: give the folder the run should be kept in")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ValueError(
            f"--out {out}: cannot write there ({exc.strerror or exc}); choose another folder"
        ) from None
    return out


def jsonable(value: Any) -> Any:
    """Tuples as lists, as JSON stores them, so a saved config compares equal to the live one."""
    if isinstance(value, Mapping):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def settings_mismatch(saved: Mapping[str, Any], config: Mapping[str, Any]) -> str | None:
    """``"lr=0.001, now 0.5"`` for the first of :data:`RUN_KEYS` that differs, or None. A key the saved
    settings lack (a run from before that field existed) counts as the field's default, so such a run still
    resumes and its checkpoint is still reused when today's value is that default."""
    defaults = jsonable({f.name: f.default for f in dataclasses.fields(Config)})
    current = jsonable(config)
    for key in RUN_KEYS:
        before = saved.get(key, defaults.get(key))
        if before != current.get(key):
            return f"{key}={before!r}, now {current.get(key)!r}"
    return None


def _step_of(folder: Path) -> int | None:
    try:
        return int(json.loads((folder / PROGRESS_FILE).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing (not yet complete) or damaged


def named_folder(out_dir: str | Path) -> Path | None:
    """The folder ``<out>/last`` names (file, or an earlier version's link or folder), complete or not."""
    last = Path(out_dir) / LAST
    if last.is_dir():  # a link (followed) or a plain folder written by an earlier version
        return last
    try:
        name = last.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not name.startswith(STATE_PREFIX) or "/" in name or "\\" in name:
        return None  # not a file this tool wrote: never follow it out of the run folder
    return Path(out_dir) / name


def resume_folder(out_dir: str | Path) -> Path | None:
    """The newest complete resume state under ``out_dir`` (a folder holding progress.json), or None."""
    out_dir = Path(out_dir)
    named = named_folder(out_dir)
    candidates = ([named] if named is not None else []) + [
        p for p in out_dir.glob(f"{STATE_PREFIX}*") if p.is_dir() and not p.is_symlink()
    ]
    complete = []
    for folder in candidates:
        step = _step_of(folder)
        if step is not None:
            complete.append((step, (folder / PROGRESS_FILE).stat().st_mtime_ns, folder != named, folder))
    # Newest step first; at equal steps the folder `last` names, then the newest file.
    return max(complete, key=lambda c: (c[0], not c[2], c[1]))[3] if complete else None


def new_state_folder(out_dir: Path, step: int) -> Path:
    """An empty hidden folder for the state of ``step``; :func:`commit_state` makes it the current one. Every
    file of a state goes through :func:`segdemo.files.atomic_write`, which flushes it and the folder to
    the disk, so by the time ``last`` names the folder a power cut cannot tear it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=out_dir, prefix=f"{STATE_PREFIX}{step:09d}-"))
    fsync_path(out_dir)  # the folder's own entry, before anything points at it
    return folder


def write_progress(folder: Path, progress: Mapping[str, Any]) -> None:
    """``progress.json``, written last into a state folder: from then on the folder is complete."""
    text = json.dumps(jsonable(progress), indent=2)
    atomic_write(folder / PROGRESS_FILE, lambda tmp: Path(tmp).write_text(text))


def commit_state(out_dir: Path, folder: Path) -> None:
    """Point ``out_dir/last`` at the complete ``folder`` (one atomic rename), then delete older states."""
    last = out_dir / LAST
    if last.is_dir() and not last.is_symlink():  # a last/ folder written by an earlier version
        os.replace(last, tempfile.mkdtemp(dir=out_dir, prefix=f"{STATE_PREFIX}legacy-"))  # still a candidate
    atomic_write(
        last, lambda tmp: Path(tmp).write_text(folder.name + "\n")
    )  # replaces a link, not its target
    for old in out_dir.glob(f"{STATE_PREFIX}*"):
        if old.is_symlink() or old.is_file():
            old.unlink(missing_ok=True)  # a link or temporary file left by a killed run
        elif old != folder:
            shutil.rmtree(old, ignore_errors=True)


def read_progress(out_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    """``(folder, progress)`` of the state ``--resume`` continues from; ValueError saying why there is
    none."""
    out_dir = Path(out_dir)
    folder = resume_folder(out_dir)
    if folder is None:
        named = named_folder(out_dir)
        if named is not None and (named / PROGRESS_FILE).is_file():
            raise ValueError(
                f"{named / PROGRESS_FILE} is damaged (not the JSON this tool writes); start without --resume"
            )
        raise ValueError(
            f"no saved run in {out_dir} (no complete state: missing progress.json); start without --resume"
        )
    try:
        progress = json.loads((folder / PROGRESS_FILE).read_text())
        progress["step"], progress["best_miou"] = int(progress["step"]), float(progress["best_miou"])
        progress["history"] = list(progress["history"])
        if not isinstance(progress.get("config"), dict):
            raise KeyError("config")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{folder / PROGRESS_FILE} is damaged ({exc}); start without --resume") from exc
    return folder, progress
