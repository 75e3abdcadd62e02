"""Inference-only forms of the two networks: the same logits (within float rounding), less work.

What changes, and why each step is exact (``docs/benchmarks.md`` measures each one separately):

* **BatchNorm folded into the convolution before it.** In eval mode BN is a per-channel affine map
  ``y = a * x + c``, so ``bn(conv(x))`` is one convolution with scaled weights and a bias. One memory
  pass over every feature map fewer.
* **BiSeNet's classifier before the x8 upsampling.** The final 1x1 conv is a per-pixel affine map and
  bilinear interpolation takes, per output pixel, weights that sum to 1 (bias included), so the two
  commute: the classifier runs on 1/64 of the pixels. The auxiliary heads never run (eval only).
* **channels_last** memory layout, which oneDNN (CPU) and cuDNN (GPU) convolve fastest.
* **ONNX Runtime** on the CPU: the folded graph exported once and run by ONNX Runtime, which fuses
  conv + ReLU / add and picks its own blocked layout; about 3x the speed of eager PyTorch here.

:func:`runner_for` is what :func:`segdemo.inference.predict` uses: the fastest exact form for a
model, built once per model, input size and device (rebuilt if the weights change in place).
"""

from __future__ import annotations

import copy
import io
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from itertools import chain

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from segdemo.models.bisenet import (
    AttentionRefinementModule,
    BiSeNet,
    ContextPath,
    ConvBlock,
)
from segdemo.models.deeplabv2 import Bottleneck, DeepLabV2

__all__ = [
    "BACKENDS",
    "InferenceBiSeNet",
    "LowPrecisionModel",
    "OnnxRuntimeModel",
    "export_onnx",
    "fold_batchnorm",
    "onnxruntime_available",
    "prepare_for_inference",
    "resolve_backend",
    "runner_for",
]

BACKENDS = ("auto", "onnxruntime", "eager", "plain", "bfloat16")
"""``auto``: ONNX Runtime on the CPU when installed, else ``eager``; ``onnxruntime``: the folded graph
in ONNX Runtime (CPU only); ``eager``: :func:`prepare_for_inference` in PyTorch; ``plain``: the model as
is. ``bfloat16``: the eager form in bfloat16, **approximate** (logits differ by ~0.1, a few labels flip;
``docs/benchmarks.md`` gives the mIoU change) and opt-in only: fast on GPUs and on CPUs with bf16
instructions (AVX512-BF16, AMX), slow elsewhere."""

ONNX_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "logits"

Runner = Callable[[Tensor], Tensor]


# ---------------------------------------------------------------------------------------------
# BatchNorm folding
# ---------------------------------------------------------------------------------------------

# (conv, bn) attribute pairs of every module type of the two networks that applies a BN straight
# after a conv. Listed by hand rather than guessed from registration order, which says nothing
# about the data flow.
_CONV_BN_PAIRS: dict[type, tuple[tuple[str, str], ...]] = {
    ConvBlock: (("conv1", "bn"),),
    ContextPath: (("conv1", "bn1"),),
    AttentionRefinementModule: (("conv", "bn"),),
    Bottleneck: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
    DeepLabV2: (("conv1", "bn1"),),
}


def _pairs(module: nn.Module) -> tuple[tuple[str, str], ...]:
    from torchvision.models.resnet import BasicBlock

    if isinstance(module, BasicBlock):
        return (("conv1", "bn1"), ("conv2", "bn2"))
    if (
        isinstance(module, nn.Sequential)
        and len(module) == 2
        and isinstance(module[0], nn.Conv2d)
        and isinstance(module[1], nn.BatchNorm2d)
    ):
        return (("0", "1"),)  # the residual projections (``downsample``) of both ResNets
    return _CONV_BN_PAIRS.get(type(module), ())


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of a BiSeNet or DeepLabV2 with every BatchNorm folded into its conv.

    The folded BNs become :class:`torch.nn.Identity`, so the modules' own ``forward`` still runs.
    Raises ``ValueError`` if a BatchNorm is left over (a layout this function does not know).
    """
    folded = copy.deepcopy(model).eval()
    with torch.no_grad():
        for module in folded.modules():
            for conv_name, bn_name in _pairs(module):
                conv, bn = getattr(module, conv_name), getattr(module, bn_name)
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                    setattr(module, bn_name, nn.Identity())
    left = [name for name, m in folded.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ValueError(f"cannot fold these BatchNorms (unknown layout): {', '.join(left[:3])}")
    for parameter in folded.parameters():
        parameter.requires_grad_(False)
    return folded


# ---------------------------------------------------------------------------------------------
# Inference forms
# ---------------------------------------------------------------------------------------------


class InferenceBiSeNet(nn.Module):
    """BiSeNet for inference: BN folded, classifier at 1/8 resolution, no auxiliary heads.

    ``model(x)`` gives the logits of :class:`~segdemo.models.bisenet.BiSeNet` in eval mode.
    """

    def __init__(self, model: BiSeNet) -> None:
        super().__init__()
        self.net = fold_batchnorm(model)  # its auxiliary heads stay unused
        self.num_classes = self.net.num_classes
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        fused, _, _ = self.net.fuse(x)
        # 1x1 conv, then upsample: equal to the reverse order (see the module docstring), 64x cheaper.
        return F.interpolate(self.net.conv(fused), scale_factor=8, mode="bilinear", align_corners=False)


def prepare_for_inference(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """The fastest exact eager form of a BiSeNet or DeepLabV2 (a new module; ``model`` is untouched).

    BiSeNet becomes an :class:`InferenceBiSeNet`; DeepLabV2 a BN-folded copy (its classifier already
    runs at 1/8 resolution). With ``channels_last`` the weights are stored NHWC; inputs may be either
    layout (a contiguous NCHW input is converted by the first convolution).
    Other modules raise ``TypeError``.
    """
    if isinstance(model, BiSeNet):
        fast: nn.Module = InferenceBiSeNet(model)
    elif isinstance(model, DeepLabV2):
        fast = fold_batchnorm(model)
    else:
        raise TypeError(f"prepare_for_inference knows BiSeNet and DeepLabV2, not {type(model).__name__}")
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    return fast


# ---------------------------------------------------------------------------------------------
# ONNX export and ONNX Runtime
# ---------------------------------------------------------------------------------------------


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export_onnx(model: nn.Module, input_size: Sequence[int], dynamic_batch: bool = False) -> bytes:
    """The ONNX graph (bytes) of ``prepare_for_inference(model)`` for ``1 x 3 x H x W`` inputs.

    Input ``"image"`` (normalised, N x 3 x H x W float32), output ``"logits"`` (N x C x H x W).
    ``dynamic_batch`` leaves N free; H and W are fixed (the checkpoint's input size).
    """
    height, width = (int(v) for v in input_size)
    fast = prepare_for_inference(model, channels_last=False).cpu()
    example = torch.zeros(1, 3, height, width)
    buffer = io.BytesIO()
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs onnxscript
        # (not a dependency here) and exports these plain conv nets no better.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            fast,
            (example,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=ONNX_OPSET,
            dynamic_axes=axes,
            do_constant_folding=True,
            dynamo=False,
        )
    return buffer.getvalue()


class OnnxRuntimeModel:
    """An ONNX graph in an ONNX Runtime CPU session, called like the model: ``runner(x) -> logits``."""

    def __init__(self, onnx_model: bytes | str, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # Follow torch's thread setting, so one knob (torch.set_num_threads) sizes both runtimes.
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle worker threads would otherwise spin after each run, taking CPU from the app and
        # anything else on a small machine.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])

    def __call__(self, x: Tensor) -> Tensor:
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: array})[0])


class LowPrecisionModel:
    """A module run in a lower precision: inputs cast (channels_last), logits returned as float32."""

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        self.module, self.dtype = module.to(dtype), dtype

    def __call__(self, x: Tensor) -> Tensor:
        return self.module(x.to(self.dtype).contiguous(memory_format=torch.channels_last)).float()


# ---------------------------------------------------------------------------------------------
# Runners for predict(), built once per model
# ---------------------------------------------------------------------------------------------


def resolve_backend(backend: str, device: torch.device, model: nn.Module) -> str:
    """The backend ``backend`` means for ``model`` on ``device`` (``auto`` resolved; see :data:`BACKENDS`)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    known = isinstance(model, (BiSeNet, DeepLabV2))
    if backend == "auto":
        if not known:
            return "plain"
        return "onnxruntime" if device.type == "cpu" and onnxruntime_available() else "eager"
    if backend != "plain" and not known:
        raise ValueError(f"the {backend} backend knows BiSeNet and DeepLabV2, not {type(model).__name__}")
    if backend == "onnxruntime" and device.type != "cpu":
        raise ValueError(f"the onnxruntime backend runs on the CPU, not on {device}")
    return backend


def _weights_fingerprint(model: nn.Module) -> tuple:
    # _version counts in-place writes (optimiser steps, load_state_dict); data_ptr catches .to().
    return tuple((t.data_ptr(), t._version) for t in chain(model.parameters(), model.buffers()))


# model -> (key it was built for, backend used, runner); one entry per model.
_RUNNERS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, str, Runner]] = weakref.WeakKeyDictionary()
_RUNNERS_LOCK = threading.Lock()


def _build_runner(
    model: nn.Module, backend: str, input_size: tuple[int, int], device: torch.device
) -> Runner:
    if backend == "onnxruntime":
        return OnnxRuntimeModel(export_onnx(model, input_size))
    fast = prepare_for_inference(model, channels_last=True).to(device)
    if backend == "bfloat16":
        return LowPrecisionModel(fast, torch.bfloat16)
    return fast


def runner_for(
    model: nn.Module, input_size: Sequence[int], device: str | torch.device, backend: str = "auto"
) -> tuple[Runner, str]:
    """``(runner, backend name)``: a callable giving ``model``'s eval logits for ``1 x 3 x H x W`` inputs.

    Built on first use and kept (one per model) until the model is garbage-collected, or rebuilt
    when the input size, device or backend changes or the weights are modified in place. Building
    the ONNX Runtime session takes about a second for BiSeNet (export included).
    """
    device = torch.device(device)
    resolved = resolve_backend(backend, device, model)
    if resolved == "plain":
        return model, "plain"
    size = (int(input_size[0]), int(input_size[1]))
    key = (resolved, str(device), size, _weights_fingerprint(model))
    with _RUNNERS_LOCK:
        cached = _RUNNERS.get(model)
        if cached is not None and cached[0] == key:
            return cached[2], cached[1]
        used = resolved
        try:
            runner = _build_runner(model, resolved, size, device)
        except Exception as exc:
            if backend != "auto" or resolved != "onnxruntime":
                raise
            # "auto" promises a working answer: an export or ONNX Runtime failure costs speed, not the result.
            warnings.warn(
                f"ONNX Runtime unavailable for this model ({exc}); running it in PyTorch", stacklevel=2
            )
            used, runner = "eager", _build_runner(model, "eager", size, device)
        _RUNNERS[model] = (key, used, runner)
    return runner, used
