"""Prediction: a checkpoint's label map and confidence for an image, at the image's own size.

:class:`Segmenter` is the public entry (the pattern of segment-anything's ``SamPredictor``)::

    from segdemo.inference import Segmenter
    segmenter = Segmenter.from_checkpoint("checkpoints/bisenet_gta5_dacs")
    prediction = segmenter.segment(image)  # PIL image or H x W x 3 uint8 array
    prediction.train_ids, prediction.confidence

It runs the network in its fast exact inference form (:func:`segdemo.models.fast.runner_for`), which the
plain eager module from :func:`segdemo.checkpoints.load_model` is not. :func:`predict` is the same for a
``(model, meta)`` pair already in memory.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from segdemo.checkpoints import load_model
from segdemo.images import rgb_image
from segdemo.models.fast import runner_for
from segdemo.normalization import normalize

__all__ = ["EXACT_UPSAMPLE_MAX_PIXELS", "Prediction", "Segmenter", "predict", "predict_many", "preprocess"]

EXACT_UPSAMPLE_MAX_PIXELS = 2**19
"""Up to this many original pixels (0.5 MP, e.g. 1024 x 512) the logits are upsampled before the
argmax (exact); above it only the class map and confidence are (see :func:`predict`). Measured on
2 CPU cores, 2048 x 1024 photo, BiSeNet at 128 x 256: 0.78 s exact vs 0.13 s cheap, 99.7 % equal labels."""


@dataclass
class Prediction:
    """One model's answer for one image, at the image's original size."""

    train_ids: np.ndarray
    """H x W uint8 trainIds 0-18."""
    confidence: np.ndarray
    """H x W float32, the largest softmax probability of each pixel (1/19 .. 1)."""
    seconds: float
    """Wall time of :func:`predict`: preprocessing, forward pass and postprocessing."""
    input_size: tuple[int, int]
    """(H, W) the model ran at."""
    device: str = "cpu"
    """Where the forward pass ran."""
    backend: str = "plain"
    """What ran the network (see :data:`segdemo.models.fast.BACKENDS`): "onnxruntime", "eager" or "plain"."""


def _input_size(value: Any) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"input_size must be [height, width], got {value!r}") from exc
    if height < 1 or width < 1:
        raise ValueError(f"input_size must be positive, got {value!r}")
    return height, width


def preprocess(
    image: Image.Image | np.ndarray, input_size: Sequence[int], mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """``1 x 3 x H x W`` float32 tensor: resized to ``input_size`` = (H, W), ``(x/255 - mean) / std``.

    Resizing uses Pillow's bilinear filter (antialiased when shrinking), as the training data
    pipeline does, so the model sees images like those it was trained on.
    """
    height, width = _input_size(input_size)
    if len(mean) != 3 or len(std) != 3 or any(float(s) == 0 for s in std):
        raise ValueError(f"mean and std must be 3 numbers each (std non-zero), got {mean!r} / {std!r}")
    rgb = rgb_image(image)
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1) / 255.0
    return normalize(x, mean, std).unsqueeze(0).contiguous()


def _model_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        device = torch.device(device)
        model.to(device)  # in place; a no-op when the model is already there
        return device
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _labels_at_size(
    logits: torch.Tensor, size: tuple[int, int], exact_max_pixels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(class map uint8, max softmax probability float32), both ``size``, from ``1 x C x h x w`` logits."""
    height, width = size
    exact = tuple(logits.shape[-2:]) != size and height * width <= exact_max_pixels
    if exact:
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    top, ids = logits.max(dim=1)
    # max softmax = exp(0) / sum(exp(l - max)); avoids materialising the full softmax.
    confidence = 1.0 / torch.exp(logits - top.unsqueeze(1)).sum(dim=1)
    if tuple(ids.shape[-2:]) != size:
        # Cheap path: only 1 + 1 channels are resized instead of C. Nearest keeps class ids valid
        # (never a blend of two ids); boundaries get the model-resolution staircase, whose steps
        # are as wide as the ratio of the two sizes. Resized as uint8, a quarter of float32.
        ids = F.interpolate(ids.unsqueeze(1).to(torch.uint8), size=size, mode="nearest-exact").squeeze(1)
        confidence = F.interpolate(confidence.unsqueeze(1), size=size, mode="bilinear", align_corners=False)
        confidence = confidence.squeeze(1)
    return ids[0].to(torch.uint8), confidence[0].to(torch.float32)


def predict(
    model: nn.Module,
    meta: Mapping[str, Any],
    image: Image.Image | np.ndarray,
    device: str | torch.device | None = None,
    *,
    exact_max_pixels: int = EXACT_UPSAMPLE_MAX_PIXELS,
    backend: str = "auto",
) -> Prediction:
    """Segment one image with a model in eval mode and its checkpoint metadata.

    The image (PIL in any mode, or an ``H x W x 3`` uint8 RGB array) is resized to
    ``meta["input_size"]``, normalised with ``meta["mean"]``/``meta["std"]`` and run under
    ``torch.inference_mode``. Back at the original size:

    * up to ``exact_max_pixels`` original pixels the logits are upsampled bilinearly and then
      arg-maxed (exact);
    * above that, a C-channel full-resolution tensor (19 x 4 bytes per pixel, 3 GB at 40 MP) is
      too costly, so argmax and max probability are taken at model resolution and only those are
      resized: the class map with nearest neighbour, the confidence bilinearly.

    ``device``: where to run; ``None`` = where the model's weights are. Passing a device moves
    the model there (in place).

    ``backend``: how the network runs (:func:`segdemo.models.fast.runner_for`). The default
    ``"auto"`` runs BiSeNet and DeepLabV2 in their exact inference form (BN folded, BiSeNet's
    classifier at 1/8 resolution), in ONNX Runtime on the CPU: the same logits within 1e-3, about 3x
    faster on the CPU. The first call per model and input size builds that form (about a second
    for BiSeNet, a few for DeepLabV2); ``"plain"`` runs ``model`` itself; ``"bfloat16"`` is a faster
    approximate form, opt-in (its mIoU change is in ``docs/benchmarks.md``).
    """
    start = time.perf_counter()
    if model.training:
        raise ValueError("the model is in training mode; call model.eval() first (load_model does)")
    rgb = rgb_image(image)
    width, height = rgb.size
    input_size = _input_size(meta["input_size"])
    if meta.get("model") == "bisenet" and (input_size[0] % 8 or input_size[1] % 8):
        raise ValueError(
            f"BiSeNet needs an input size that is a multiple of 8, the checkpoint says {input_size}"
        )
    dev = _model_device(model, device)
    runner, used = runner_for(model, input_size, dev, backend)
    x = preprocess(rgb, input_size, meta["mean"], meta["std"]).to(dev)
    with torch.inference_mode():
        out = runner(x)
        logits = (out[0] if isinstance(out, (tuple, list)) else out).float()
        ids, confidence = _labels_at_size(logits, (height, width), exact_max_pixels)
        train_ids = ids.cpu().numpy()  # .cpu() also waits for the GPU, so the timing is honest
        conf = confidence.cpu().numpy()
    return Prediction(
        train_ids=train_ids,
        confidence=conf,
        seconds=time.perf_counter() - start,
        input_size=input_size,
        device=str(dev),
        backend=used,
    )


def predict_many(
    models_with_meta: Sequence[tuple[nn.Module, Mapping[str, Any]]],
    image: Image.Image | np.ndarray,
    device: str | torch.device | None = None,
    backend: str = "auto",
) -> list[Prediction]:
    """:func:`predict` with each ``(model, meta)`` on the same image, in order (for side-by-side views)."""
    rgb = rgb_image(image)  # convert once, not once per model
    return [predict(model, meta, rgb, device, backend=backend) for model, meta in models_with_meta]


class Segmenter:
    """A checkpoint ready to segment images: the network (run in its fast exact inference form) and its
    metadata.

    ``Segmenter.from_checkpoint(path)`` loads one of our checkpoint folders or a course-template ``.pth``;
    ``segment(image)`` returns a :class:`Prediction` at the image's own size. ``backend`` is as in
    :func:`predict`.
    """

    def __init__(
        self,
        model: nn.Module,
        meta: Mapping[str, Any],
        device: str | torch.device | None = None,
        backend: str = "auto",
    ) -> None:
        self.model = model.eval()
        self.meta = dict(meta)
        self.device = torch.device(device) if device is not None else None
        self.backend = backend

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device = "cpu", backend: str = "auto"
    ) -> Segmenter:
        """Load a checkpoint (raises :class:`segdemo.checkpoints.CheckpointError` with the reason if it
        cannot)."""
        model, meta = load_model(path, device=device)
        return cls(model, meta, device, backend)

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) the network runs at: every image is resized to it and the prediction back."""
        return _input_size(self.meta["input_size"])

    def segment(self, image: Image.Image | np.ndarray) -> Prediction:
        """Label map and confidence for one image (PIL in any mode, or an ``H x W (x 3)`` uint8 array)."""
        return predict(self.model, self.meta, image, self.device, backend=self.backend)

    def warm_up(self) -> None:
        """Build the inference form and pay the first pass's one-off costs (kernel selection, allocations)
        now, so that they are not counted in the first image's time."""
        height, width = self.input_size
        self.segment(np.zeros((height, width, 3), dtype=np.uint8))
