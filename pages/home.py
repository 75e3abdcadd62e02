"""Home: the question, the checkpoints present, the device, and how to get (more) checkpoints."""

import streamlit as st

from pages import common
from segdemo import jobs
from segdemo.catalogue import (
    import_template_checkpoint,
    imported_checkpoints,
    remove_imported_checkpoint,
    uploads_size,
)
from segdemo.checkpoints import TEMPLATE_SUFFIXES, CheckpointError
from segdemo.profiles import DEFAULT_PROFILE, DEMO_PROFILES, describe_time_left
from segdemo.results import checkpoints_frame

common.ensure_navigation()

root = common.checkpoint_root()

st.title("Synthetic-to-real semantic segmentation")
st.markdown(
    "Can a network trained only on **video-game images** (GTA5, where every pixel's label comes for free) "
    "segment **real street photos** (Cityscapes)? Trained naively, BiSeNet drops from 52.5 % mIoU (trained "
    "on Cityscapes) to 15.1 %. This app explores how much of that gap **augmentation** (flips, colour), "
    "**FDA** (Fourier domain adaptation) and **DACS** (cross-domain class mixing) recover: 23.1 %, 26.4 % "
    "and 32.1 % in the report."
)

entries = common.checkpoints(usable_only=False)
usable = [e for e in entries if e.usable]
left, middle, right = st.columns(3)
left.metric("Usable checkpoints", len(usable))
middle.metric("Device", common.device())
right.metric("Evaluated", sum(1 for e in usable if e.miou is not None))
st.caption(f"Device: {common.device_label()} · checkpoint folder: `{root}`")

st.subheader("Checkpoints")
if entries:
    st.dataframe(
        checkpoints_frame(entries),
        hide_index=True,
        width="stretch",
        column_config={"mIoU": st.column_config.NumberColumn("mIoU", format="%.2f")},
    )
    st.caption(
        "**Training data** says what each checkpoint learnt from: *procedural* = the embedded procedural "
        "street scenes, *real* = GTA5 / Cityscapes. An mIoU **measured on procedural data is not a "
        "Cityscapes number**; the Results page keeps the two apart."
    )
else:
    st.info(
        f"No checkpoints in `{root}` yet. Everything else already works: **FDA** and **DACS** show the "
        "adaptation methods on procedural samples, **Results** shows the report's numbers and **Benchmark** "
        "measures speed. To segment images, build the demo checkpoints below (CPU, no data set needed) or "
        "import a course-template `.pth`."
    )


def _start_demo() -> None:
    try:
        pid = jobs.start_demo(root, profile=st.session_state.get("demo_profile", DEFAULT_PROFILE))
    except jobs.JobError as exc:
        st.session_state["demo_error"] = str(exc)
    else:
        st.session_state["demo_error"] = None
        st.session_state["demo_pid"] = pid


def _stop_demo() -> None:
    jobs.stop_demo(root)


def demo_panel() -> None:
    """The demo job's state; re-run every two seconds while it is running (see below)."""
    status = jobs.demo_status(root)
    if status.running and not st.session_state.get("demo_watching"):
        # Just started from this fragment: rerun the page so the fragment polls (run_every).
        st.session_state["demo_watching"] = True
        st.rerun(scope="app")
    if status.running:
        progress = status.progress or {}
        detail = ""
        if progress.get("variant"):
            detail = (
                f" · variant {int(progress.get('index', 0)) + 1} of {progress.get('count')}: "
                f"{progress['variant']}, step {progress.get('step', 0)} of {progress.get('total', '?')}"
            )
        left = describe_time_left(progress.get("seconds_left"))
        if left:
            detail += f" · training {left} (estimated from this machine's pace)"
        st.progress(status.fraction, text=f"{status.message} — {status.fraction:.0%}{detail}")
        st.button(
            "Stop the demo",
            key="demo_stop",
            on_click=_stop_demo,
            help="Finished checkpoints are kept; starting again continues where it stopped.",
        )
        seen = st.session_state.get("demo_seen_finished", 0)
        if len(status.finished) > seen:
            # A variant has just finished: refresh the whole page so its checkpoint is listed.
            st.session_state["demo_seen_finished"] = len(status.finished)
            st.rerun(scope="app")
    else:
        if st.session_state.get("demo_watching"):
            st.session_state["demo_watching"] = False
            st.rerun(scope="app")  # the job just ended: list its checkpoints, stop polling
        if status.state == "done":
            st.success("The demo checkpoints are built (results measured on procedural data).")
        elif status.state == "failed":
            st.error(f"The demo failed: {status.message}")
        elif status.state == "stopped":
            st.warning(f"The demo was stopped ({status.message}).")
        st.button(
            "Build the demo checkpoints" if not usable else "Build / complete the demo checkpoints",
            key="demo_start",
            type="primary" if not usable else "secondary",
            on_click=_start_demo,
            help=f"Runs `{' '.join(jobs.demo_command(root, profile=profile)[1:])}` in the background.",
        )
    if st.session_state.get("demo_error"):
        st.error(st.session_state["demo_error"])
    tail = jobs.log_tail(root)
    if tail:
        with st.expander("Demo log"):
            st.code(tail, language=None)


st.subheader("Build the demo checkpoints")
st.markdown(
    "`python -m train demo` trains every variant of the report (source-only, Aug1, Aug2, Aug1+2, FDA, DACS, "
    "and the Cityscapes-trained references) on the procedural two-domain data on this machine's CPU. The "
    "source-only baseline comes first (FDA and DACS start from the Aug1+2 checkpoint, see docs/results.md). "
    "Each finished variant appears above as soon as it is written, and a stopped demo resumes where it was."
)
profile = st.radio(
    "Demo profile",
    list(DEMO_PROFILES),
    format_func=lambda name: f"{name}: {DEMO_PROFILES[name].summary}",
    key="demo_profile",
    help="The full profile writes into its own folder (full/), next to the default's checkpoints.",
)
running = jobs.is_running(root)
if running:
    st.session_state["demo_watching"] = True
st.fragment(run_every=2.0 if running else None)(demo_panel)()

st.subheader("Import a course-template checkpoint")
limit_mb, quota_mb = common.checkpoint_upload_limit_mb(), common.uploads_quota_mb()
upload = st.file_uploader(
    "A BiSeNet or DeepLabV2 state dict from the course template (`.pth`); it is checked, then kept in "
    f"`{root / 'uploads'}`",
    type=[s.lstrip(".") for s in TEMPLATE_SUFFIXES],
    key="home_upload",
    max_upload_size=limit_mb,
)
st.caption(
    f"At most {limit_mb} MB a file; the imported checkpoints may take {quota_mb} MB in all (now "
    f"{uploads_size(root) / 2**20:.0f} MB)."
)
if upload is not None:
    done = st.session_state.setdefault("home_imported", {})
    if upload.file_id not in done:
        try:
            path, meta = import_template_checkpoint(
                upload.getvalue(), upload.name, root, max_bytes=limit_mb * 2**20, quota_bytes=quota_mb * 2**20
            )
        except CheckpointError as exc:
            message = f"{common.literal(upload.name)} was not imported: {common.literal(exc)}"
            done[upload.file_id] = ("error", message)
        else:
            message = (
                f"Imported {common.literal(upload.name)} as {common.literal(path.name)} ({meta['model']})."
            )
            done[upload.file_id] = ("ok", message)
            st.rerun()  # list it in the table above
    kind, text = done[upload.file_id]
    (st.success if kind == "ok" else st.error)(text)
imported = imported_checkpoints(root)
if imported:
    left, right = st.columns([3, 1])
    chosen = left.selectbox("Imported checkpoints", [p.name for p in imported], key="home_remove_choice")
    if right.button("Remove it", key="home_remove"):
        try:
            remove_imported_checkpoint(root / "uploads" / chosen, root)
        except CheckpointError as exc:
            st.error(common.literal(exc))
        else:
            st.session_state["home_removed"] = chosen
            st.rerun()
if st.session_state.get("home_removed"):
    st.success(f"Removed {common.literal(st.session_state.pop('home_removed'))}.")

st.subheader("More checkpoints")
st.markdown("With the real data sets (see the README and `docs/training.md`):")
st.code(
    "make demo                                     # the procedural demo, from a shell\n.venv/bin/python "
    "-m train list                # the eight variants of the report\n.venv/bin/python -m train run "
    "bisenet_gta5_dacs --gta5 /data/GTA5 --cityscapes /data/Cityscapes \\\n    --out "
    "checkpoints/bisenet_gta5_dacs\n.venv/bin/python -m train evaluate checkpoints/bisenet_gta5_dacs "
    "--cityscapes /data/Cityscapes",
    language="bash",
)
