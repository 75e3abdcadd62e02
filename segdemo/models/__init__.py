"""The two networks of the report and their construction: ``build_model(name, num_classes)``."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from segdemo.models.bisenet import BiSeNet
from segdemo.models.deeplabv2 import DeepLabV2

MODEL_NAMES = ("bisenet", "deeplabv2")

# Where torchvision caches its ImageNet weights; looked up, never downloaded (this tool works offline).
_TORCHVISION_FILES = {"bisenet": "resnet18-f37072fd.pth", "deeplabv2": "resnet101-63fe2227.pth"}
_TORCHVISION_URLS = {
    "bisenet": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "deeplabv2": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
}


class BackboneInitError(RuntimeError):
    """The ImageNet initialisation file is missing or does not fit the backbone."""


def build_model(name: str, num_classes: int = 19, pretrained_backbone: str | Path | None = None) -> nn.Module:
    """Build ``"bisenet"`` (ResNet-18 context path) or ``"deeplabv2"`` (ResNet-101).

    ``pretrained_backbone``: a local file with ImageNet weights for the backbone (torchvision's
    ``resnet18``/``resnet101`` state dict, or the course template's DeepLab init file), or
    ``"imagenet"`` to use torchvision's cache if the file is already there. Nothing is downloaded.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    model = BiSeNet(num_classes) if name == "bisenet" else DeepLabV2(num_classes)
    if pretrained_backbone is not None:
        load_backbone(model, name, _resolve_backbone_file(name, pretrained_backbone))
    return model


def _resolve_backbone_file(name: str, source: str | Path) -> Path:
    if str(source) != "imagenet":
        path = Path(source).expanduser()
        if not path.is_file():
            raise BackboneInitError(f"ImageNet weights file {path} does not exist")
        return path
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    path = hub / _TORCHVISION_FILES[name]
    if not path.is_file():
        raise BackboneInitError(
            f"no ImageNet weights for the {name} backbone at {path}. This tool never downloads: fetch "
            f"{_TORCHVISION_URLS[name]} on a machine with internet, then pass its path (e.g. --pretrained "
            "/path/to/file.pth) or copy it to that folder. Training from scratch also works (omit "
            "--pretrained) but converges slower."
        )
    return path


def load_backbone(model: nn.Module, name: str, path: Path) -> None:
    """Copy ImageNet weights into the backbone; the segmentation head keeps its own init."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, pickle with code, not a torch file
        raise BackboneInitError(f"cannot read ImageNet weights from {path}: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BackboneInitError(f"{path} does not hold a state dict")
    prefix = "context_path." if name == "bisenet" else ""
    targets = {k: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    if name == "deeplabv2":
        targets = {k: v for k, v in targets.items() if not k.startswith("layer6.")}
    matched: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        # Accept plain torchvision keys and the template's init file, whose keys carry one extra
        # leading component (e.g. "Scale.layer1.0.conv1.weight").
        for candidate in (key, key.split(".", 1)[-1]):
            ours = prefix + candidate
            if ours in targets and tuple(targets[ours].shape) == tuple(value.shape):
                matched[ours] = value
                break
    missing = sorted(set(targets) - set(matched) - {k for k in targets if k.endswith("num_batches_tracked")})
    if missing:
        raise BackboneInitError(
            f"{path} does not fit the {name} backbone: {len(missing)} of its tensors are missing or of "
            f"another shape (first: {', '.join(missing[:3])})"
        )
    model.load_state_dict(matched, strict=False)


__all__ = ["MODEL_NAMES", "BackboneInitError", "BiSeNet", "DeepLabV2", "build_model", "load_backbone"]
