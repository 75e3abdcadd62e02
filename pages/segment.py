"""Segment: a photo (or a procedural sample, or a short video) through one or several checkpoints."""

import tempfile
from pathlib import Path

import streamlit as st

from pages import common
from segdemo.catalogue import preferred_order
from segdemo.evaluation import score_image
from segdemo.images import ImageError
from segdemo.labels import CLASS_NAMES, colorize
from segdemo.video import browser_video_suffix, segment_video
from segdemo.viz import (
    OVERLAY_ALPHA,
    confidence_image,
    disagreement,
    disagreement_image,
    error_map,
    label_png_bytes,
    overlay,
    split_view,
    to_png_bytes,
)

common.ensure_navigation()

st.title("Segment a street scene")
entries = preferred_order(common.checkpoints())
if not entries:
    common.no_checkpoints_notice("Segmenting")
    st.stop()
by_name = {e.name: e for e in entries}

left, right = st.columns([5, 2])
chosen = left.multiselect(
    "Checkpoints (several: side by side)",
    list(by_name),
    default=[entries[0].name],
    key="seg_checkpoints",
    format_func=lambda name: by_name[name].title,
)
alpha = right.slider("Overlay opacity", 0.0, 1.0, OVERLAY_ALPHA, 0.05, key="seg_alpha")
input_column, source_column = st.columns([2, 5])
kind = input_column.radio(
    "Input", ["Procedural sample", "Upload a photo", "Upload a video clip"], key="seg_input"
)
if not chosen:
    st.info("Choose at least one checkpoint.")
    st.stop()
selected = [by_name[name] for name in chosen]


def video_section() -> None:
    """Upload a clip, segment it frame by frame with the first chosen checkpoint, play and offer it."""
    upload = st.file_uploader(
        "A short video clip", type=["mp4", "webm", "avi", "mov", "mkv", "m4v"], key="seg_video"
    )
    entry = selected[0]
    if len(selected) > 1:
        entry = by_name[
            st.selectbox(
                "Checkpoint for the video",
                chosen,
                key="seg_video_ckpt",
                format_func=lambda name: by_name[name].title,
            )
        ]
    max_frames = st.number_input(
        "At most this many frames",
        1,
        1500,
        150,
        key="seg_video_frames",
        help="Longer clips are cut; every frame runs through the model.",
    )
    if upload is None:
        st.info("Upload a clip (mp4, webm, avi, mov, mkv).")
        return
    job = (upload.file_id, entry.path, alpha, int(max_frames))
    if st.button("Segment the video", type="primary", key="seg_video_run"):
        segmenter = common.load(entry)
        if segmenter is None:
            return
        bar = st.progress(0.0, text="segmenting frames ...")

        def report(i: int, n: int) -> None:
            bar.progress(min(i / n, 1.0) if n else 0.0, text=f"frame {i}" + (f" of {n}" if n else ""))

        suffix = browser_video_suffix()
        with tempfile.TemporaryDirectory() as folder:
            source = Path(folder) / f"input{Path(upload.name).suffix.lower() or '.mp4'}"
            source.write_bytes(upload.getvalue())
            try:
                out, frames = segment_video(
                    source,
                    segmenter,
                    Path(folder) / f"segmented{suffix}",
                    alpha=alpha,
                    max_frames=int(max_frames),
                    progress=report,
                )
            except ImageError as exc:
                bar.empty()
                st.error(f"{common.literal(upload.name)}: {common.literal(exc)}")
                return
            st.session_state["seg_video_result"] = {
                "job": job,
                "data": out.read_bytes(),
                "frames": frames,
                "suffix": suffix,
                "name": Path(upload.name).stem,
            }
        bar.progress(1.0, text=f"{frames} frames segmented")
    result = st.session_state.get("seg_video_result")
    if result and result["job"][0] == upload.file_id:
        if result["job"] != job:
            st.caption("Settings changed since this video was made; press the button to redo it.")
        mime = "video/webm" if result["suffix"] == ".webm" else "video/mp4"
        st.video(result["data"], format=mime)
        st.download_button(
            f"Download the segmented video ({result['frames']} frames)",
            result["data"],
            file_name=f"{result['name']}_segmented{result['suffix']}",
            mime=mime,
            key="seg_video_download",
        )


if kind == "Upload a video clip":
    with source_column:
        video_section()
    st.stop()

if kind == "Procedural sample":
    left, right = source_column.columns([3, 2])
    domain = left.selectbox(
        "Domain", list(common.DOMAINS), key="seg_domain", format_func=common.DOMAINS.__getitem__
    )
    index = right.number_input("Sample", 0, common.SAMPLE_COUNT - 1, 0, key="seg_sample")
    image, truth = common.sample(domain, int(index))
    name = f"{domain}_{int(index)}"
else:
    upload = source_column.file_uploader(
        "A street photo",
        type=common.IMAGE_TYPES,
        key="seg_upload",
        max_upload_size=common.image_upload_limit_mb(),
    )
    with source_column.expander("Its ground truth (optional): the error map and the image's IoU"):
        label_upload, encoding = common.label_inputs("seg")
    if upload is None:
        st.info(
            "Upload a photo (PNG, JPEG, WebP, ...). Large photos are fine: the model runs at its own input "
            "size and the result is scaled back."
        )
        st.stop()
    image = common.read_image(upload)
    if image is None:
        st.stop()
    name = Path(upload.name).stem
    truth = None
    if label_upload is not None:
        truth = common.read_label_upload(label_upload, image.shape[:2], encoding)

predictions = {}
for entry in selected:
    prediction = common.predict_with(entry, image)
    if prediction is not None:
        predictions[entry.name] = prediction
if not predictions:
    st.stop()

st.caption(f"Image: {image.shape[1]} x {image.shape[0]} pixels")
view = st.radio(
    "Show",
    ["Overlay", "Confidence"],
    key="seg_view",
    horizontal=True,
    help="Confidence: the largest class probability of each pixel (dark: unsure, bright: sure)",
)
panels = [("Input", image, None)] + [
    (n, overlay(image, p.train_ids, alpha) if view == "Overlay" else confidence_image(p.confidence), p)
    for n, p in predictions.items()
]
per_row = 3 if len(panels) == 3 else 2  # photo and two checkpoints side by side in one row
for start in range(0, len(panels), per_row):
    for column, (title, picture, prediction) in zip(st.columns(per_row), panels[start : start + per_row]):
        with column:
            if prediction is None:
                st.image(picture, caption=common.literal(title), width="stretch")
                continue
            h, w = prediction.input_size
            st.image(
                picture,
                width="stretch",
                caption=(
                    f"{common.literal(title)} · {prediction.seconds * 1000:.0f} ms on {prediction.device} "
                    f"(model input {w} x {h})"
                ),
            )
            safe = title.replace("/", "_")
            a, b = st.columns(2)
            a.download_button(
                "Mask PNG",
                label_png_bytes(prediction.train_ids),
                f"{name}_{safe}_mask.png",
                "image/png",
                key=f"seg_dl_mask_{title}",
                width="stretch",
            )
            b.download_button(
                "Overlay PNG",
                to_png_bytes(picture),
                f"{name}_{safe}_overlay.png",
                "image/png",
                key=f"seg_dl_overlay_{title}",
                width="stretch",
            )
            with st.expander("Classes present (share of pixels)", expanded=len(predictions) == 1):
                st.dataframe(common.legend_table(prediction.train_ids), hide_index=True, width="stretch")

if st.toggle("Before / after: the photo and the overlay under one slider", key="seg_compare"):
    compared = st.selectbox("Checkpoint", list(predictions), key="seg_compare_checkpoint")
    split = st.slider("Photo | overlay", 0, 100, 50, key="seg_split", format="%d%%")
    st.image(
        split_view(image, overlay(image, predictions[compared].train_ids, alpha), split / 100),
        caption=f"left of the line: the photo; right: {common.literal(compared)}'s overlay",
        width="stretch",
    )

# A procedural sample's label is exact, an uploaded one the user's: either opens the comparison on request (an
# uploaded label at once).
if truth is not None and st.toggle(
    "Against the ground truth: error maps and this image's IoU",
    value=kind != "Procedural sample",
    key=f"seg_truth_{kind}",
):
    st.subheader("Against the ground truth")
    columns = st.columns(1 + len(predictions))
    columns[0].image(colorize(truth), caption="ground truth", width="stretch")
    rows = []
    for column, (title, prediction) in zip(columns[1:], predictions.items()):
        _, score = score_image(prediction.train_ids, truth)
        column.image(
            error_map(prediction.train_ids, truth),
            width="stretch",
            caption=f"{common.literal(title)}: right / wrong / ignored · mIoU {score.miou:.2f}",
        )
        rows.append(
            {
                "checkpoint": title,
                "mIoU": score.miou,
                "pixel accuracy": score.pixel_accuracy,
                **dict(zip(CLASS_NAMES, score.iou)),
            }
        )
    st.dataframe(rows, hide_index=True, key="seg_truth_table")
    st.caption(
        "This image's IoU per class (percent; empty: the class is in neither the label nor the prediction)."
    )

st.subheader("Inference time")
st.dataframe(
    [
        {
            "checkpoint": n,
            "milliseconds": round(p.seconds * 1000, 1),
            "device": p.device,
            "runtime": p.backend,
            "model input (h x w)": f"{p.input_size[0]} x {p.input_size[1]}",
        }
        for n, p in predictions.items()
    ],
    hide_index=True,
)
st.caption(
    "Measured on this device when the image was first segmented (pre-processing, forward pass and "
    'scaling back included). Runtime: how the network ran; "onnxruntime" and "eager" are the exact '
    "inference form (same logits within 1e-3, see docs/benchmarks.md)."
)

if len(predictions) >= 2:
    st.subheader("Where two checkpoints disagree")
    names = list(predictions)
    left, right = st.columns(2)
    first = left.selectbox("Checkpoint A", names, index=0, key="seg_dis_a")
    second = right.selectbox("Checkpoint B", names, index=1, key="seg_dis_b")
    if first == second:
        st.info("Choose two different checkpoints.")
    else:
        a_ids, b_ids = predictions[first].train_ids, predictions[second].train_ids
        _, fraction = disagreement(a_ids, b_ids)
        st.metric("Pixels where they disagree", f"{fraction:.1%}")
        st.image(
            disagreement_image(image, a_ids, b_ids),
            width="stretch",
            caption=(
                f"magenta: {common.literal(first)} and {common.literal(second)} predict different classes"
            ),
        )
