"""FDA: swap the low-frequency Fourier amplitude of a source image for a target image's."""

import streamlit as st

from pages import common
from segdemo.fda import fda_preview
from segdemo.viz import OVERLAY_ALPHA, disagreement, overlay

common.ensure_navigation()

st.title("FDA: Fourier domain adaptation")
st.markdown(
    "FDA gives a game image the *look* of a real photo without changing its *content*: the low frequencies "
    "of the Fourier amplitude (overall colour, lighting, contrast) are copied from a target image, the "
    "phase (edges, shapes, hence the labels) stays the source's. **β** sets the size of the swapped window: "
    "a square of 2b+1 frequencies with b = ⌊β · min(H, W)⌋. The report trained with β = 0.01."
)

left, right = st.columns(2)
with left:
    source = common.image_input("fda_source", "Source image", "source")
with right:
    target = common.image_input("fda_target", "Target image (style donor)", "target")
if source is None or target is None:
    st.stop()

beta = st.slider("β", 0.0, 0.15, 0.01, 0.005, format="%.3f", key="fda_beta")
zoom = st.toggle("Zoom the spectra on the low frequencies (4x)", key="fda_zoom")
preview = fda_preview(source.image, target.image, beta, zoom=4.0 if zoom else 1.0)
b = preview.b
window = f"{2 * b + 1} x {2 * b + 1} frequencies swapped" if beta > 0 else "nothing swapped (β = 0)"

columns = st.columns(3)
columns[0].image(source.image, caption=f"source: {common.literal(source.name)}", width="stretch")
columns[1].image(
    preview.target, caption=f"target: {common.literal(target.name)} (resized to the source)", width="stretch"
)
columns[2].image(
    preview.result, caption=f"source in the target's style, β = {beta:.3f} ({window})", width="stretch"
)

st.subheader("Log-amplitude spectra")
st.caption(
    "Zero frequency in the centre; the red box is the swapped window (viridis: dark = weak, yellow = strong)."
)
columns = st.columns(3)
for column, key in zip(columns, ("source", "target", "result")):
    column.image(preview.spectra[key], caption=f"{key} spectrum", width="stretch")

st.subheader("What a model sees")
entry = common.pick_checkpoint(
    "fda_checkpoint", "Checkpoint (optional)", help="Segment the source before and after translation."
)
if entry is None:
    st.caption("Choose a checkpoint to compare its prediction on the source before and after FDA.")
    st.stop()
before = common.predict_with(entry, source.image)
after = common.predict_with(entry, preview.result)
if before is None or after is None:
    st.stop()
_, changed = disagreement(before.train_ids, after.train_ids)
columns = st.columns(2)
columns[0].image(
    overlay(source.image, before.train_ids, OVERLAY_ALPHA),
    caption="prediction on the source",
    width="stretch",
)
columns[1].image(
    overlay(preview.result, after.train_ids, OVERLAY_ALPHA),
    caption="prediction after translation",
    width="stretch",
)
st.metric("Pixels whose class changed", f"{changed:.1%}")
