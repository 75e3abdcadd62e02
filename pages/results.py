"""Results: per-class IoU of the report and of every evaluated checkpoint, as tables and charts."""

from pathlib import Path

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from pages import common
from segdemo.labels import CLASS_NAMES
from segdemo.results import (
    METRIC_COLUMNS,
    all_result_rows,
    best_per_class,
    delta_frame,
    profile_frame,
    results_frame,
    seed_frame,
    seed_groups,
)
from segdemo.study import StudyImage, build_study

common.ensure_navigation()

st.title("Results")
st.markdown(
    "The report's Table 3 (BiSeNet trained on GTA5, **measured on real Cityscapes val**) and every "
    "checkpoint here that carries an evaluation. Each row says what it was measured on: checkpoints of the "
    "demo are measured on **procedural data, which is not Cityscapes**; compare them with each other, and "
    "the report's rows with each other, not across."
)

result_rows = all_result_rows(common.checkpoint_root())
frame = results_frame(result_rows)
checkpoint_rows = frame[frame["source"] == "checkpoint"]
if checkpoint_rows.empty:
    st.info(
        f"No evaluated checkpoint in `{common.checkpoint_root()}` yet: only the report's rows are shown. The "
        "demo (Home) evaluates every checkpoint it builds."
    )

with st.expander(
    f"Choose the rows ({len(frame)}: {len(frame) - len(checkpoint_rows)} from the report, "
    f"{len(checkpoint_rows)} from checkpoints)"
):
    rows = st.multiselect("Rows", list(frame.index), default=list(frame.index), key="results_rows")
if not rows:
    st.info("Choose at least one row.")
    st.stop()
view = frame.loc[rows]

table, bars, heatmap, deltas, confusions, seeds, efficiency = st.tabs(
    ["Table", "mIoU", "Heatmap", "Deltas", "Confusions", "Across seeds", "Efficiency"]
)

with table:
    best = best_per_class(view)
    # The row label names the variant and its kind of data; model and source are in the CSV.
    shown = common.for_display(view[["measured on", *METRIC_COLUMNS]], dict.fromkeys(METRIC_COLUMNS, ".2f"))
    styled = shown.style.apply(
        lambda _frame: best.replace({True: "background-color: #c8f0c8; font-weight: bold", False: ""}),
        axis=None,
        subset=list(METRIC_COLUMNS),
    )
    st.dataframe(styled, width="stretch")
    st.caption(
        "IoU in percent. Green: best of its column among the rows measured on the same kind of data. The "
        "report's Cityscapes-trained rows have no per-class values in the report."
    )
    if (view["data"] == "procedural").any():
        st.caption(
            "On the procedural scenes the demo's FDA has scored above its DACS in every profile and seed "
            "measured so far, the opposite of the report: DACS's teacher, trained for minutes from nothing, "
            "is sure of few target pixels, so its pseudo-labels weigh little (docs/results.md measures why)."
        )
    st.download_button(
        "Download as CSV", view.to_csv().encode(), "segdemo_results.csv", "text/csv", key="results_csv"
    )

with bars:
    data = view.reset_index()
    figure = px.bar(
        data, x="row", y="mIoU", color="measured on", text_auto=".1f", labels={"row": "", "mIoU": "mIoU (%)"}
    )
    figure.update_layout(legend={"orientation": "h", "y": -0.35}, margin={"t": 30})
    st.plotly_chart(figure, width="stretch", key="results_bar")

with heatmap:
    values = view[list(CLASS_NAMES)]
    figure = go.Figure(
        go.Heatmap(
            z=values.to_numpy(),
            x=list(CLASS_NAMES),
            y=list(values.index),
            colorscale="Viridis",
            zmin=0,
            zmax=100,
            colorbar={"title": "IoU %"},
            hovertemplate="%{y}<br>%{x}: %{z:.1f}<extra></extra>",
        )
    )
    figure.update_layout(height=140 + 32 * len(values), margin={"t": 30}, yaxis={"autorange": "reversed"})
    st.plotly_chart(figure, width="stretch", key="results_heatmap")
    st.caption(
        "Blank cells: not available (the report gives no per-class IoU for its Cityscapes-trained rows)."
    )

with deltas:
    if len(rows) < 2:
        st.info("Choose at least two rows above to compare them.")
    else:
        left, right = st.columns(2)
        a = left.selectbox("From", rows, index=0, key="results_delta_a")
        b = right.selectbox("To", rows, index=min(1, len(rows) - 1), key="results_delta_b")
        if view.loc[a, "data"] != view.loc[b, "data"]:
            st.warning(
                f"{common.literal(a)} and {common.literal(b)} were measured on different data "
                f"({common.literal(view.loc[a, 'measured on'])} vs "
                f"{common.literal(view.loc[b, 'measured on'])}): the difference says little."
            )
        change = delta_frame(view, a, b)
        st.dataframe(common.for_display(change, {a: ".2f", b: ".2f", "delta": "+.2f"}), width="stretch")
        figure = px.bar(
            change.reset_index(), x="metric", y="delta", labels={"delta": f"{b} − {a} (IoU points)"}
        )
        st.plotly_chart(figure, width="stretch", key="results_delta_bar")

with confusions:
    matrices = {
        row["label"]: row["confusion"] for row in result_rows if row.get("confusion") and row["label"] in rows
    }
    if not matrices:
        st.info(
            "No chosen row has a confusion matrix (evaluations record one since version 0.1.0 of 2026-12)."
        )
    else:
        labels = list(matrices)
        columns = st.columns(2)
        for side, (column, default) in enumerate(zip(columns, (0, min(1, len(labels) - 1)))):
            with column:
                chosen_row = st.selectbox("Row", labels, index=default, key=f"results_cm_{side}")
                figure = common.confusion_figure(matrices[chosen_row], height=520)
                st.plotly_chart(figure, width="stretch", key=f"results_cm_chart_{side}")
        st.caption("Row-normalised: where each true class's pixels went, in percent; the diagonal is recall.")

with seeds:
    groups = seed_groups([row for row in result_rows if row.get("label") in rows])
    if not groups:
        st.info(
            "No variant among the chosen rows was trained with two or more seeds on the same data. Train one "
            "again with `seed=1` (`python -m train run VARIANT seed=1 --out ...`) and evaluate both."
        )
    else:
        st.dataframe(seed_frame(groups), hide_index=True, width="stretch", key="results_seed_table")
        st.caption("Mean ± sample standard deviation over the seeds, in IoU points.")

with efficiency:
    st.markdown(
        "The report's Tables 1 and 2 (Cityscapes-trained networks at 512 x 1024 on a P100 GPU). Measure "
        "this machine on the **Benchmark** page."
    )
    efficiency_table = profile_frame([]).drop(columns=["± ms"])
    st.dataframe(
        common.for_display(efficiency_table, {"mIoU": ".2f", "latency ms": ".2f", "FPS": ".1f"}),
        width="stretch",
    )

st.subheader("Export a study")
st.caption(
    "One HTML file to present from (works offline; printed from a browser, a page per section): the chosen "
    "checkpoints beside the report, charts, efficiency measured here, images through every checkpoint, FDA "
    "and DACS panels. The same as `python -m train report`."
)
folders = [e for e in common.checkpoints() if e.format == "folder"]
if not folders:
    st.info("A study needs at least one checkpoint folder (see Home).")
    st.stop()
study_names = st.multiselect(
    "Checkpoints in the study",
    [e.name for e in folders],
    default=[e.name for e in folders][:2],
    key="study_checkpoints",
)
left, right = st.columns(2)
samples = left.number_input("Procedural target samples to show", 0, 8, 2, key="study_samples")
photos = right.file_uploader(
    "Photos to show (optional)",
    type=common.IMAGE_TYPES,
    accept_multiple_files=True,
    key="study_photos",
    max_upload_size=common.image_upload_limit_mb(),
)
if st.button("Build the study", key="study_build", disabled=not study_names):
    pictures = [
        StudyImage(f"sample_{i}", *common.sample("target", i), f"procedural target val sample {i}")
        for i in range(int(samples))
    ]
    for photo in photos or []:
        image = common.read_image(photo)
        if image is not None:
            pictures.append(StudyImage(Path(photo.name).stem, image, None, f"uploaded photo {photo.name}"))
    by_folder = {e.name: e for e in folders}
    with st.spinner("Building the study (measuring the networks' latency here) ..."):
        try:
            st.session_state["study_html"] = build_study(
                [by_folder[n].path for n in study_names],
                common.checkpoint_root(),
                pictures,
                device=common.device(),
            )
        except (ValueError, OSError) as exc:
            st.error(common.literal(exc))
if st.session_state.get("study_html"):
    st.download_button(
        "Download the study (HTML)",
        st.session_state["study_html"].encode("utf-8"),
        "segdemo_study.html",
        "text/html",
        key="study_download",
    )
