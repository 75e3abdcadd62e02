"""DACS: ClassMix a source image onto a target image, with the teacher's pseudo-label and weights."""

import streamlit as st

from pages import common
from segdemo.dacs import CONFIDENCE_THRESHOLD, mask_image, mix_preview, present_classes, weight_image
from segdemo.labels import CLASS_NAMES, colorize

common.ensure_navigation()

st.title("DACS: cross-domain mixed sampling")
st.markdown(
    "DACS pastes the pixels of **half of the classes** of a labelled source image onto an unlabelled target "
    "image. The mixed image is labelled with the source label where pasted and with the **teacher's "
    "pseudo-label** elsewhere; those target pixels are weighted by the share of the teacher's pixels that "
    "are confident (max probability ≥ the threshold)."
)

left, right = st.columns(2)
with left:
    source = common.image_input("dacs_source", "Source image and label", "source", with_label=True)
with right:
    target = common.image_input("dacs_target", "Target image", "target")
if source is None or target is None:
    st.stop()
if source.label is None:
    st.info("The source needs its label map: upload the label PNG too, or use a procedural sample.")
    st.stop()

present = present_classes(source.label)
if not present:
    st.error("The source label holds no class (only ignore pixels); nothing can be pasted.")
    st.stop()
left, middle, right = st.columns([2, 3, 3])
mode = left.radio("Classes to paste", ["Random half (as DACS)", "Choose classes"], key="dacs_mode")
classes = None
seed = 0
if mode == "Random half (as DACS)":
    seed = int(middle.number_input("Seed", 0, 1_000_000, 0, key="dacs_seed"))
else:
    names = middle.multiselect(
        "Source classes to paste",
        common.class_names(present),
        default=common.class_names(present[::2]),
        key="dacs_classes",
    )
    if not names:
        middle.warning("No class selected: nothing is pasted, the mixed image is the target.")
    classes = [CLASS_NAMES.index(n) for n in names]
with right:
    teacher = common.pick_checkpoint("dacs_checkpoint", "Teacher checkpoint (for the pseudo-label)")
    threshold = st.slider(
        "Confidence threshold", 0.5, 0.999, CONFIDENCE_THRESHOLD, 0.001, format="%.3f", key="dacs_threshold"
    )
prediction = common.predict_with(teacher, target.image) if teacher is not None else None
if teacher is None:
    st.info(
        "The pseudo-label needs a teacher checkpoint: without one the target part of the mixed label is "
        "shown as ignore (black) and there is no weight map."
    )

mix = mix_preview(
    source.image,
    source.label,
    target.image,
    classes=classes,
    seed=seed,
    pseudo_label=None if prediction is None else prediction.train_ids,
    confidence=None if prediction is None else prediction.confidence,
    threshold=threshold,
)
pasted = ", ".join(common.class_names(mix.classes)) or "none"
st.markdown(f"**Pasted classes** ({len(mix.classes)} of {len(present)}): {pasted}")

columns = st.columns(4)
columns[0].image(source.image, caption=f"source: {common.literal(source.name)}", width="stretch")
columns[1].image(colorize(source.label), caption="source label", width="stretch")
columns[2].image(mix.target, caption=f"target: {common.literal(target.name)}", width="stretch")
if prediction is not None:
    columns[3].image(
        colorize(prediction.train_ids),
        caption=f"pseudo-label ({common.literal(teacher.name)})",
        width="stretch",
    )
else:
    columns[3].caption("pseudo-label: needs a teacher checkpoint")

columns = st.columns(4)
columns[0].image(
    mask_image(source.image, mix.mask),
    caption=f"class mask ({mix.mask.mean():.0%} of the pixels)",
    width="stretch",
)
columns[1].image(mix.image, caption="mixed image", width="stretch")
columns[2].image(colorize(mix.label), caption="mixed label (black: ignore)", width="stretch")
if mix.weight is not None:
    columns[3].image(
        weight_image(mix.weight),
        width="stretch",
        caption=(
            f"loss weight: 1 on pasted pixels, {mix.confident_fraction:.2f} elsewhere (the teacher's "
            "confident share)"
        ),
    )
else:
    columns[3].caption("weight map: needs a teacher checkpoint")
