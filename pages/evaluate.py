"""Evaluate: checkpoints on labelled images; confusions, per-image scores and the worst cases."""

from pathlib import Path

import streamlit as st

from pages import common
from segdemo import jobs
from segdemo.catalogue import preferred_order
from segdemo.evaluation import (
    TTA_OPTIONS,
    Evaluation,
    TestTime,
    extract_zip,
    open_labelled_set,
    predict_labelled,
    zip_folders,
)
from segdemo.label_maps import LABEL_ENCODINGS
from segdemo.labels import CLASS_NAMES, colorize
from segdemo.viz import comparison_map, error_map

common.ensure_navigation()

st.title("Evaluate checkpoints on labelled images")
st.markdown(
    "Score checkpoints on images with ground truth: the procedural val scenes, a zip of your own labelled "
    "photos (images and label maps paired by file name; labels as trainIds, label ids or Cityscapes colours) "
    "or a GTA5 / Cityscapes folder on this server. Every image is scored at its label's resolution; the same "
    "numbers as `python -m train evaluate`, which runs in the background."
)
entries = preferred_order(common.checkpoints())
if not entries:
    common.no_checkpoints_notice("Evaluating")
    st.stop()
by_name = {e.name: e for e in entries}
chosen = st.multiselect(
    "Checkpoints (two or more: compared)",
    list(by_name),
    default=[entries[0].name],
    key="eval_checkpoints",
    format_func=lambda name: by_name[name].title,
)
source = st.radio(
    "Labelled images",
    ["Procedural val scenes", "Upload a zip of image / label pairs", "A data set on this server"],
    key="eval_source",
    horizontal=True,
)
spec = None
if source == "Procedural val scenes":
    count = st.number_input(
        "Scenes", 1, 500, 12, key="eval_count", help="target-domain val scenes, 640 x 320"
    )
    spec = {"source": "procedural", "count": int(count)}
elif source == "Upload a zip of image / label pairs":
    upload = st.file_uploader(
        "A zip with images/ and labels/ folders (or labels named X_labelIds.png, X_mask.png, ... beside X)",
        type=["zip"],
        key="eval_zip",
        max_upload_size=common.zip_upload_limit_mb(),
    )
    encoding = st.selectbox(
        "The labels hold",
        LABEL_ENCODINGS,
        key="eval_encoding",
        help="auto: decided from the whole set, and said below",
    )
    if upload is not None:
        spec = {"source": "zip", "upload": upload, "encoding": encoding, "name": f"uploaded {upload.name}"}
else:
    folder = st.text_input("Folder: a GTA5 or Cityscapes root (val split)", key="eval_root")
    if folder.strip():
        spec = {"source": "root", "root": folder.strip()}
tta = st.multiselect(
    "Test-time augmentation",
    list(TTA_OPTIONS),
    key="eval_tta",
    help="flip: also the mirrored image; ms: scales 0.75, 1, 1.25, 1.5; slide: windows of the model's size "
    "over images larger than it. Each multiplies the time.",
)


def start() -> None:
    root = common.checkpoint_root()
    job = jobs.new_job_name()
    folder = Path(root) / jobs.EVALUATIONS_DIR / job
    data = dict(spec)
    if data["source"] == "zip":
        try:
            images, labels = zip_folders(extract_zip(data.pop("upload").getvalue(), folder / "data"))
        except ValueError as exc:
            st.session_state["eval_error"] = f"{data['name']}: {exc}"
            return
        data = {
            "source": "folders",
            "images": str(images),
            "labels": str(labels),
            "encoding": data["encoding"],
            "name": data["name"],
        }
    try:
        jobs.start_evaluation(
            root, [by_name[n].path for n in chosen], jobs.data_arguments(data), ",".join(tta), job
        )
    except jobs.JobError as exc:
        st.session_state["eval_error"] = str(exc)
        return
    st.session_state.update(eval_error=None, eval_job=str(folder), eval_spec=data, eval_names=list(chosen))


st.button("Evaluate", type="primary", key="eval_run", disabled=not chosen or spec is None, on_click=start)
if st.session_state.get("eval_error"):
    st.error(common.literal(st.session_state["eval_error"]))


@st.fragment(run_every=1.0)
def job_panel() -> None:
    folder = st.session_state.get("eval_job")
    if not folder:
        return
    status = jobs.evaluation_status(folder)
    if status.running:
        st.progress(status.fraction, text=f"evaluating: {status.message}")
    elif status.state == "failed":
        st.session_state.update(eval_job=None, eval_error=f"The evaluation failed: {status.message}")
        st.rerun(scope="app")
    elif status.state == "done":
        st.session_state.update(eval_job=None, eval_results=status.results)
        st.rerun(scope="app")


job_panel()
results = [Evaluation.from_json(r) for r in st.session_state.get("eval_results") or []]
if not results:
    st.stop()
names = st.session_state.get("eval_names") or [Path(r.checkpoint).name for r in results]
first = results[0]
st.subheader("Scores")
st.caption(
    f"{common.literal(first.data['description'])} · labels read as **{first.protocol['label_encoding']}** · "
    f"test time: {first.protocol['test_time']['name']} · scored at the labels' resolution"
    + (" · procedural data, not Cityscapes" if first.data["kind"] == "procedural" else "")
)
st.dataframe(
    [
        {
            "checkpoint": n,
            "mIoU": r.summary["miou"],
            "pixel accuracy": r.summary["pixel_accuracy"],
            **r.summary["iou"],
        }
        for n, r in zip(names, results)
    ],
    hide_index=True,
)

st.subheader("Confusion matrix")
shown = st.selectbox("Checkpoint", names, key="eval_cm_checkpoint")
evaluation = results[names.index(shown)]
st.plotly_chart(common.confusion_figure(evaluation.confusion), key="eval_cm")
st.caption("Each row: where the pixels of that true class went (percent of the row); the diagonal is recall.")

st.subheader("Per image")
table = evaluation.per_image_frame()
order = st.selectbox("Sort by", ["mIoU", *CLASS_NAMES], key="eval_sort")
table = table.sort_values(order, na_position="last")
st.dataframe(table, hide_index=True, key="eval_table")
st.download_button(
    "Per-image scores (CSV)", evaluation.per_image_csv(), f"{shown}_per_image.csv", "text/csv", key="eval_csv"
)

st.subheader("The worst images")
worst = st.slider("How many", 1, 12, 4, key="eval_worst")
data = open_labelled_set(st.session_state["eval_spec"])
test_time = TestTime.parse(first.protocol["test_time"]["name"])
segmenters = {
    n: common.load(by_name[n]) if n in by_name else None for n in st.session_state.get("eval_names", [])
}
other = next((n for n in segmenters if n != shown), None) if len(results) > 1 else None
for name in list(table.dropna(subset=[order])["image"])[:worst]:
    item = data[data.names.index(name)]
    segmenter = segmenters.get(shown)
    if segmenter is None:
        st.warning(f"{common.literal(shown)} can no longer be loaded")
        break
    prediction = predict_labelled(segmenter, item, test_time)
    score = table.set_index("image").loc[name]
    st.markdown(f"**{common.literal(name)}** · mIoU {score['mIoU']:.2f} · {order} {score[order]:.2f}")
    columns = st.columns(4 if other is None else 5)
    columns[0].image(item.image, caption="input", width="stretch")
    columns[1].image(colorize(item.label), caption="ground truth", width="stretch")
    columns[2].image(colorize(prediction), caption=f"prediction ({common.literal(shown)})", width="stretch")
    columns[3].image(error_map(prediction, item.label), caption="right / wrong / ignored", width="stretch")
    if other is not None and segmenters.get(other) is not None:
        picture, only_a, only_b = comparison_map(
            prediction, predict_labelled(segmenters[other], item, test_time), item.label
        )
        columns[4].image(
            picture,
            width="stretch",
            caption=f"blue: only {common.literal(shown)} right ({only_a:.1%}); orange: only "
            f"{common.literal(other)} ({only_b:.1%})",
        )
