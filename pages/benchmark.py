"""Benchmark: parameters, FLOPs and latency of a network on this device, beside the report's Table 1/2."""

import plotly.express as px
import streamlit as st
import torch

from pages import common
from segdemo.results import profile_frame, run_profile

common.ensure_navigation()

SIZES = {
    "128 x 256": (128, 256),
    "256 x 512": (256, 512),
    "512 x 1024 (the report's)": (512, 1024),
    "64 x 128 (tiny)": (64, 128),
}

st.title("Benchmark")
st.markdown(
    "Parameters, FLOPs (fvcore: one multiply-add counts as one, as in the report) and the latency of one "
    "forward pass (batch 1, eval mode, after warm-up runs) of a freshly built network. Weights do not "
    "change the timing, so no checkpoint is needed."
)

left, middle, right = st.columns(3)
model = left.selectbox(
    "Network",
    ["bisenet", "deeplabv2"],
    key="bench_model",
    format_func={"bisenet": "BiSeNet (ResNet-18)", "deeplabv2": "DeepLabV2 (ResNet-101)"}.get,
)
size_name = middle.selectbox("Input size (height x width)", list(SIZES), key="bench_size")
devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
device = right.selectbox("Device", devices, index=len(devices) - 1, key="bench_device")
left, right = st.columns(2)
runs = left.slider("Timed runs", 1, 30, 5, key="bench_runs")
warmup = right.slider("Warm-up runs", 0, 5, 2, key="bench_warmup")
height, width = SIZES[size_name]
if device == "cpu" and model == "deeplabv2" and height * width >= 256 * 512:
    st.warning(
        "DeepLabV2 on a CPU at this size takes seconds per run; fewer runs or a smaller size is quicker."
    )

history = st.session_state.setdefault("bench_history", [])
if st.button("Run the benchmark", type="primary", key="bench_run"):
    bar = st.progress(0.0, text="starting ...")
    with st.spinner(f"Profiling {model} at {height} x {width} on {device} ..."):
        try:
            row = run_profile(
                model,
                height,
                width,
                device=device,
                runs=runs,
                warmup=warmup,
                progress=lambda text, fraction: bar.progress(min(fraction, 1.0), text=text),
            )
        except (RuntimeError, ValueError) as exc:  # e.g. out of memory
            st.error(f"The benchmark failed: {exc}")
        else:
            history.append(row)
            bar.progress(
                1.0, text=f"done: {row['latency_ms']:.1f} ± {row['std_ms']:.1f} ms, {row['fps']:.1f} FPS"
            )

table = profile_frame(history)
st.dataframe(
    common.for_display(table, {"latency ms": ".2f", "± ms": ".2f", "FPS": ".1f", "mIoU": ".2f"}),
    width="stretch",
)
st.caption(
    "The report's rows were measured at 512 x 1024 on a P100 GPU. BiSeNet has 12.07M parameters here; the "
    "report's 12.58M also counts ResNet-18's unused ImageNet classifier. Latency grows with the input size, "
    "so compare runs at the same size."
)
if history:
    figure = px.bar(
        table.reset_index(),
        x="row",
        y="latency ms",
        error_y="± ms",
        labels={"row": ""},
        log_y=True,
        title="Latency per forward pass (log scale)",
    )
    st.plotly_chart(figure, width="stretch", key="bench_chart")
    if st.button("Clear the measurements", key="bench_clear"):
        history.clear()
        st.rerun()
else:
    st.caption(f"Press the button to measure on this device: {common.device_label()}.")
