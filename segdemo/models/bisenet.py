"""BiSeNet with a ResNet-18 context path (Yu et al., 2018), laid out as the course template has it.

Module names follow the template's ``state_dict`` (see ``shared/reference``) so its checkpoints load
with a plain rename (``saptial_path`` -> ``spatial_path``; the template's duplicate
``context_path.features.*`` aliases and the unused ImageNet classifier are dropped).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet18


class ConvBlock(nn.Sequential):
    """3x3 conv (no bias) -> BN -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)


class SpatialPath(nn.Sequential):
    """Three stride-2 conv blocks: keeps 1/8 resolution with 256 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.convblock1 = ConvBlock(3, 64)
        self.convblock2 = ConvBlock(64, 128)
        self.convblock3 = ConvBlock(128, 256)


class ContextPath(nn.Module):
    """ResNet-18 trunk returning the 1/16 and 1/32 features and the global mean of the latter."""

    def __init__(self) -> None:
        super().__init__()
        trunk = resnet18(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            trunk.layer1,
            trunk.layer2,
            trunk.layer3,
            trunk.layer4,
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        feature16 = self.layer3(x)
        feature32 = self.layer4(feature16)
        tail = feature32.mean(dim=(2, 3), keepdim=True)
        return feature16, feature32, tail


class AttentionRefinementModule(nn.Module):
    """Channel attention from the global average: pool -> 1x1 conv (bias) -> BN -> sigmoid -> scale."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        attention = torch.sigmoid(self.bn(self.conv(F.adaptive_avg_pool2d(x, 1))))
        return x * attention


class FeatureFusionModule(nn.Module):
    """Concatenate both paths, conv-BN-ReLU to C channels, then a squeeze-excite style residual."""

    def __init__(self, num_classes: int, in_channels: int = 1024) -> None:
        super().__init__()
        self.convblock = ConvBlock(in_channels, num_classes, stride=1)
        self.conv1 = nn.Conv2d(num_classes, num_classes, 1)
        self.conv2 = nn.Conv2d(num_classes, num_classes, 1)

    def forward(self, spatial: Tensor, context: Tensor) -> Tensor:
        feature = self.convblock(torch.cat((spatial, context), dim=1))
        attention = F.adaptive_avg_pool2d(feature, 1)
        attention = torch.sigmoid(self.conv2(F.relu(self.conv1(attention))))
        return feature * attention + feature


class BiSeNet(nn.Module):
    """BiSeNet (ResNet-18). Eval: ``model(x)`` -> logits N x C x H x W at the input size.

    Train: ``(logits, aux16, aux32)``, the auxiliary heads' logits also at the input size.
    Input sides must be multiples of 8 (the template's constraint: the x8 upsampling of the 1/8
    spatial path must land on the input size); inference code resizes to such a size.
    """

    def __init__(self, num_classes: int = 19) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.spatial_path = SpatialPath()
        self.context_path = ContextPath()
        self.attention_refinement_module1 = AttentionRefinementModule(256)
        self.attention_refinement_module2 = AttentionRefinementModule(512)
        self.supervision1 = nn.Conv2d(256, num_classes, 1)
        self.supervision2 = nn.Conv2d(512, num_classes, 1)
        self.feature_fusion_module = FeatureFusionModule(num_classes, 1024)
        self.conv = nn.Conv2d(num_classes, num_classes, 1)

    def fuse(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Both paths fused at 1/8 resolution: ``(fused, feature16, feature32)``, the last two refined and
        upsampled to 1/8 (the auxiliary heads' inputs)."""
        spatial = self.spatial_path(x)
        feature16, feature32, tail = self.context_path(x)
        feature16 = self.attention_refinement_module1(feature16)
        feature32 = self.attention_refinement_module2(feature32) * tail
        size = spatial.shape[-2:]
        feature16 = F.interpolate(feature16, size=size, mode="bilinear", align_corners=False)
        feature32 = F.interpolate(feature32, size=size, mode="bilinear", align_corners=False)
        fused = self.feature_fusion_module(spatial, torch.cat((feature16, feature32), dim=1))
        return fused, feature16, feature32

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        fused, feature16, feature32 = self.fuse(x)
        logits = self.conv(F.interpolate(fused, scale_factor=8, mode="bilinear", align_corners=False))
        if not self.training:
            return logits
        out_size = x.shape[-2:]
        aux16 = F.interpolate(
            self.supervision1(feature16), size=out_size, mode="bilinear", align_corners=False
        )
        aux32 = F.interpolate(
            self.supervision2(feature32), size=out_size, mode="bilinear", align_corners=False
        )
        return logits, aux16, aux32

    def backbone_parameters(self) -> list[nn.Parameter]:
        """The ImageNet-initialised trunk (for per-group learning rates)."""
        return list(self.context_path.parameters())

    def head_parameters(self) -> list[nn.Parameter]:
        """Everything trained from scratch."""
        backbone = {id(p) for p in self.backbone_parameters()}
        return [p for p in self.parameters() if id(p) not in backbone]


def template_key_to_ours(key: str) -> str | None:
    """Map a course-template BiSeNet state-dict key to ours; None for entries we do not keep."""
    if key.startswith("context_path.features."):
        return None  # aliases of context_path.conv1/bn1/layer* plus the unused ImageNet classifier
    if key.startswith("saptial_path."):
        return "spatial_path." + key[len("saptial_path.") :]
    return key
