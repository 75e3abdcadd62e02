"""Shared Streamlit helpers for the pages: checkpoints (found, described, loaded once), image inputs,
cached predictions and error display. Layout helpers only; the computing is in ``segdemo``."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
import torch

from segdemo import catalogue
from segdemo.catalogue import CheckpointEntry, checkpoint_fingerprint
from segdemo.checkpoints import CheckpointError
from segdemo.images import MAX_UPLOAD_BYTES, ImageError, load_image
from segdemo.inference import Prediction, Segmenter
from segdemo.label_maps import LABEL_ENCODINGS, AmbiguousLabelError, load_label
from segdemo.labels import CLASS_NAMES
from segdemo.synthetic import render_scene, scene_rng
from segdemo.viz import legend

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS_ENV = "SEGDEMO_CHECKPOINTS"
MAX_UPLOAD_ENV = "SEGDEMO_MAX_UPLOAD_MB"
MAX_CHECKPOINT_ENV = "SEGDEMO_MAX_CHECKPOINT_MB"
UPLOADS_QUOTA_ENV = "SEGDEMO_UPLOADS_QUOTA_MB"
MAX_ZIP_ENV = "SEGDEMO_MAX_ZIP_MB"
SAMPLE_SIZE = (640, 320)  # (width, height) of the bundled procedural samples
SAMPLE_SEED = 0
SAMPLE_COUNT = 100
DOMAINS = {
    "target": "photo-like (Cityscapes-like target domain)",
    "source": "game-like (GTA5-like source domain)",
}
IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"]
HOME = "pages/home.py"
NONE = "(none)"


PAGES = [  # (file, title, icon); paths are relative to app.py
    ("pages/home.py", "Home", ":material/home:"),
    ("pages/segment.py", "Segment", ":material/image_search:"),
    ("pages/fda.py", "FDA", ":material/blur_on:"),
    ("pages/dacs.py", "DACS", ":material/join_inner:"),
    ("pages/evaluate.py", "Evaluate", ":material/fact_check:"),
    ("pages/results.py", "Results", ":material/table_chart:"),
    ("pages/benchmark.py", "Benchmark", ":material/speed:"),
]


def setup_app() -> Any:
    """Page config, the navigation and the sidebar note; returns the page to run (see ``app.py``)."""
    st.set_page_config(page_title="segdemo: GTA5 → Cityscapes", page_icon="🚗", layout="wide")
    pages = [st.Page(path, title=title, icon=icon, default=path == HOME) for path, title, icon in PAGES]
    page = st.navigation(pages)
    st.sidebar.caption(f"Checkpoints: `{checkpoint_root()}`  \nDevice: {device_label()}")
    return page


def ensure_navigation() -> None:
    """Make sure ``app.py`` (and so the app's navigation) runs; call first thing on every page.

    Because the pages live in a folder named ``pages/``, Streamlit runs the first script run of a new
    server process in its legacy "pages folder" mode. When that first request is a page's URL
    (``/segment``, a bookmark), the page file runs alone: ``app.py`` never runs, and the sidebar would
    list every file in ``pages/``. Leaving that mode (as ``st.navigation`` itself does) and rerunning
    hands the request to ``app.py``. Under ``streamlit.testing`` every run starts in that mode and pages
    are meant to run alone, so nothing is done there (a rerun would drop the run's button clicks).
    """
    from streamlit import config
    from streamlit.runtime.pages_manager import PagesManager

    if getattr(PagesManager, "uses_pages_directory", False) and not config.get_option("global.appTest"):
        PagesManager.uses_pages_directory = False
        st.rerun()


def checkpoint_root() -> Path:
    """The checkpoint folder: ``$SEGDEMO_CHECKPOINTS`` or ``checkpoints/`` in the repository."""
    return Path(os.environ.get(CHECKPOINTS_ENV) or REPO / "checkpoints").expanduser()


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_label() -> str:
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({torch.get_num_threads()} threads)"


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=512)
def _describe(path: str, root: str, fingerprint: tuple[int, int]) -> CheckpointEntry:
    # fingerprint (mtime, size) is part of the key: a rewritten checkpoint is described afresh.
    return catalogue.describe_checkpoint(path, root)


def checkpoints(usable_only: bool = True) -> list[CheckpointEntry]:
    """The checkpoints under :func:`checkpoint_root`, sorted by name (described once per modification)."""
    root = checkpoint_root()
    entries = [
        _describe(str(p), str(root), checkpoint_fingerprint(p)) for p in catalogue.discover_checkpoints(root)
    ]
    return [e for e in entries if e.usable] if usable_only else entries


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$&])")


def literal(text: Any) -> str:
    """``text`` to show as itself inside Markdown (messages, captions): every character Markdown, Streamlit's
    directives (``:red[...]``, emoji) or LaTeX would interpret is escaped. For every user-supplied name."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


@st.cache_resource(max_entries=6, show_spinner="Loading the checkpoint ...")
def _load(path: str, fingerprint: tuple[int, int], device_name: str) -> Segmenter:
    segmenter = Segmenter.from_checkpoint(path, device=device_name)
    # Builds the fast inference form (ONNX Runtime on the CPU) and pays the first pass's one-off costs, which
    # would otherwise be shown as the first image's time.
    segmenter.warm_up()
    return segmenter


def load(entry: CheckpointEntry) -> Segmenter | None:
    """A checkpoint's :class:`Segmenter`, loaded once per (path, modification); errors shown."""
    try:
        return _load(entry.path, checkpoint_fingerprint(entry.path), device())
    except (CheckpointError, OSError) as exc:
        st.error(f"Cannot load {literal(entry.name)}: {literal(exc)}")
        return None


@st.cache_data(show_spinner=False, max_entries=64)
def _predict(path: str, fingerprint: tuple[int, int], device_name: str, image: np.ndarray) -> Prediction:
    return _load(path, fingerprint, device_name).segment(image)


def predict_with(entry: CheckpointEntry, image: np.ndarray) -> Prediction | None:
    """A checkpoint's prediction on an image (cached per checkpoint and image content); errors shown.

    The time in the result is that of the first computation for this image."""
    if load(entry) is None:
        return None
    try:
        with st.spinner(f"Segmenting with {literal(entry.name)} ..."):
            return _predict(entry.path, checkpoint_fingerprint(entry.path), device(), image)
    except (ValueError, RuntimeError) as exc:
        st.error(f"{literal(entry.name)} could not segment this image: {literal(exc)}")
        return None


def no_checkpoints_notice(what: str) -> None:
    st.info(
        f"{what} needs a checkpoint, and there is none in `{checkpoint_root()}` yet. Build the demo "
        "checkpoints (a button on Home) or import a course-template `.pth` there."
    )
    st.page_link(HOME, label="Go to Home", icon=":material/home:")


def pick_checkpoint(
    key: str, text: str, optional: bool = True, help: str | None = None
) -> CheckpointEntry | None:
    """A select box of the usable checkpoints (first: "none" when ``optional``); the chosen one or None."""
    entries = catalogue.preferred_order(checkpoints())
    if not entries:
        st.caption(f"No checkpoint in `{checkpoint_root()}` (see Home).")
        return None
    by_name = {e.name: e for e in entries}
    options = ([NONE] if optional else []) + list(by_name)
    choice = st.selectbox(
        text,
        options,
        index=1 if optional else 0,
        key=key,
        help=help,
        format_func=lambda name: "none" if name == NONE else by_name[name].title,
    )
    return by_name.get(choice)


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=128)
def sample(domain: str, index: int, size: tuple[int, int] = SAMPLE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """A bundled procedural street scene and its exact label (trainIds)."""
    return render_scene(scene_rng(SAMPLE_SEED, domain, "val", int(index)), domain, size)


@dataclass
class Picked:
    """An image chosen on a page: pixels, its label when known, and a short description."""

    image: np.ndarray
    label: np.ndarray | None
    name: str


def _megabytes(variable: str, default_bytes: int) -> int:
    """A positive whole number of megabytes from the environment ``variable``, else ``default_bytes`` in
    MB."""
    try:
        value = int(os.environ.get(variable, "").strip())
    except ValueError:
        value = 0
    return value if value > 0 else default_bytes // 2**20


def image_upload_limit_mb() -> int:
    """The largest image upload in MB: ``$SEGDEMO_MAX_UPLOAD_MB``, else segdemo's ``MAX_UPLOAD_BYTES`` (50).

    The browser refuses larger files (the image uploaders get it as ``max_upload_size``) and
    :func:`read_image` checks again, for clients that are not a browser."""
    return _megabytes(MAX_UPLOAD_ENV, MAX_UPLOAD_BYTES)


def checkpoint_upload_limit_mb() -> int:
    """The largest checkpoint import in MB: ``$SEGDEMO_MAX_CHECKPOINT_MB``, else 400 (the browser refuses
    larger,
    and the import checks again)."""
    return _megabytes(MAX_CHECKPOINT_ENV, catalogue.MAX_IMPORT_BYTES)


def uploads_quota_mb() -> int:
    """What ``checkpoints/uploads/`` may hold in all, in MB: ``$SEGDEMO_UPLOADS_QUOTA_MB``, else 2048."""
    return _megabytes(UPLOADS_QUOTA_ENV, catalogue.UPLOADS_QUOTA_BYTES)


def zip_upload_limit_mb() -> int:
    """The largest zip of labelled images in MB: ``$SEGDEMO_MAX_ZIP_MB``, else 500 (the browser refuses
    larger; what it holds once extracted is checked again: :func:`segdemo.evaluation.extract_zip`)."""
    return _megabytes(MAX_ZIP_ENV, 500 * 2**20)


def read_image(upload: Any) -> np.ndarray | None:
    """An uploaded image as H x W x 3 uint8, or None after showing why it cannot be used."""
    try:
        return np.asarray(load_image(upload, max_bytes=image_upload_limit_mb() * 2**20))
    except ImageError as exc:
        st.error(f"{literal(upload.name)}: {literal(exc)}")
        return None


def label_inputs(key: str) -> tuple[Any, str]:
    """An optional label-map uploader and how to read its values: ``(upload or None, encoding)``."""
    upload = st.file_uploader(
        "Its label map (PNG, TIFF or BMP: trainIds, Cityscapes/GTA5 label ids, or palette colours)",
        type=["png", "tif", "tiff", "bmp"],
        key=f"{key}_label",
        max_upload_size=image_upload_limit_mb(),
    )
    encoding = st.selectbox(
        "Read the label's values as",
        LABEL_ENCODINGS,
        key=f"{key}_label_encoding",
        help="auto decides from the whole set of values and asks when they could mean either",
    )
    return upload, encoding


def read_label_upload(upload: Any, shape: tuple[int, int], encoding: str) -> np.ndarray | None:
    """An uploaded label map as trainIds of ``shape``, or None after showing why it cannot be used."""
    try:
        train_ids, used = load_label(upload.getvalue(), size=shape, encoding=encoding)
    except AmbiguousLabelError as exc:
        st.warning(f'{literal(upload.name)}: {literal(exc)} ("Read the label\'s values as", above).')
        return None
    except ImageError as exc:
        st.error(f"{literal(upload.name)}: {literal(exc)}")
        return None
    st.caption(f"label read as {used}")
    return train_ids


def image_input(key: str, title: str, default_domain: str, with_label: bool = False) -> Picked | None:
    """A procedural sample (domain + number) or an uploaded image (and, ``with_label``, its label PNG)."""
    mode = st.radio(title, ["Procedural sample", "Upload"], horizontal=True, key=f"{key}_mode")
    if mode == "Procedural sample":
        left, right = st.columns([3, 2])
        domains = list(DOMAINS)
        domain = left.selectbox(
            "Domain",
            domains,
            index=domains.index(default_domain),
            key=f"{key}_domain",
            format_func=DOMAINS.__getitem__,
        )
        index = right.number_input("Sample", 0, SAMPLE_COUNT - 1, 0, key=f"{key}_sample")
        image, train_ids = sample(domain, int(index))
        return Picked(image, train_ids, f"procedural {domain} sample {int(index)}")
    upload = st.file_uploader(
        "Image", type=IMAGE_TYPES, key=f"{key}_upload", max_upload_size=image_upload_limit_mb()
    )
    label_upload, encoding = label_inputs(key) if with_label else (None, "auto")
    if upload is None:
        st.info("Upload an image, or choose a procedural sample.")
        return None
    image = read_image(upload)
    if image is None:
        return None
    train_ids = None
    if label_upload is not None:
        train_ids = read_label_upload(label_upload, image.shape[:2], encoding)
        if train_ids is None:
            return None
    return Picked(image, train_ids, upload.name)


def legend_table(train_ids: np.ndarray) -> Any:
    """The classes present in a label map with their colour and pixel share, as a styled table."""
    import pandas as pd

    entries = legend(train_ids)
    frame = pd.DataFrame(
        [{"colour": "", "class": e["name"], "share": 100.0 * e["share"]} for e in entries],
        columns=["colour", "class", "share"],
    )
    colours = [e["color"] for e in entries]
    return frame.style.apply(
        lambda _col: [f"background-color: {c}" for c in colours], subset=["colour"]
    ).format({"share": "{:.1f} %"})


def class_names(ids: list[int]) -> list[str]:
    return [CLASS_NAMES[i] for i in ids]


def for_display(frame: Any, formats: dict[str, str]) -> Any:
    """A copy of ``frame`` with the given number columns as text (format spec per column, "–" where
    missing): the data grid would show missing numbers as "None", which reads like a value."""
    out = frame.astype(object).copy()
    for column, spec in formats.items():
        out[column] = ["–" if math.isnan(v) else format(v, spec) for v in frame[column].astype(float)]
    return out


def confusion_figure(confusion: Any, height: int = 620) -> Any:
    """A plotly heatmap of a 19 x 19 confusion matrix, row-normalised (percent of each true class)."""
    import plotly.express as px

    from segdemo.metrics import row_normalised

    figure = px.imshow(
        row_normalised(np.asarray(confusion)),
        x=list(CLASS_NAMES),
        y=list(CLASS_NAMES),
        labels={"x": "predicted", "y": "ground truth", "color": "% of the class"},
        color_continuous_scale="Viridis",
        zmin=0,
        zmax=100,
        aspect="equal",
    )
    figure.update_layout(height=height, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return figure
