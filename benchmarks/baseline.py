"""Plain re-statements of the course template's two networks and of FDA: the benchmarks' baseline, the tests'
reference.

Written from the architecture description in ``shared/reference`` and the report, with the template's
module layout (its ``state_dict`` keys must equal the listings in ``shared/reference/*.tsv``): the
BiSeNet context path registers the torchvision ResNet-18 as ``features`` *and* aliases its stages,
and keeps the unused ImageNet classifier. Deliberately straightforward: no fusion, no tricks. This is
the "straightforward eager implementation" ``benchmarks/cpu_inference.py`` measures our inference path
against; ``tests/test_models.py`` checks it against the template's listings key for key.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18


class TemplateConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv1(x)))


class TemplateSpatialPath(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.convblock1 = TemplateConvBlock(3, 64)
        self.convblock2 = TemplateConvBlock(64, 128)
        self.convblock3 = TemplateConvBlock(128, 256)

    def forward(self, x):
        return self.convblock3(self.convblock2(self.convblock1(x)))


class TemplateResNet18(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = resnet18(weights=None)
        self.conv1 = self.features.conv1
        self.bn1 = self.features.bn1
        self.relu = self.features.relu
        self.maxpool1 = self.features.maxpool
        self.layer1 = self.features.layer1
        self.layer2 = self.features.layer2
        self.layer3 = self.features.layer3
        self.layer4 = self.features.layer4

    def forward(self, x):
        x = self.maxpool1(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        feature3 = self.layer3(x)
        feature4 = self.layer4(feature3)
        tail = torch.mean(feature4, 3, keepdim=True)
        tail = torch.mean(tail, 2, keepdim=True)
        return feature3, feature4, tail


class TemplateARM(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=1)
        self.bn = nn.BatchNorm2d(channels)
        self.sigmoid = nn.Sigmoid()
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))

    def forward(self, x):
        w = self.sigmoid(self.bn(self.conv(self.avgpool(x))))
        return torch.mul(x, w)


class TemplateFFM(nn.Module):
    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.convblock = TemplateConvBlock(in_channels, num_classes, stride=1)
        self.conv1 = nn.Conv2d(num_classes, num_classes, kernel_size=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(num_classes, num_classes, kernel_size=1)
        self.sigmoid = nn.Sigmoid()
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))

    def forward(self, a, b):
        feature = self.convblock(torch.cat((a, b), dim=1))
        w = self.sigmoid(self.conv2(self.relu(self.conv1(self.avgpool(feature)))))
        return torch.add(torch.mul(feature, w), feature)


class TemplateBiSeNet(nn.Module):
    def __init__(self, num_classes: int = 19) -> None:
        super().__init__()
        self.saptial_path = TemplateSpatialPath()
        self.context_path = TemplateResNet18()
        self.attention_refinement_module1 = TemplateARM(256)
        self.attention_refinement_module2 = TemplateARM(512)
        self.supervision1 = nn.Conv2d(256, num_classes, kernel_size=1)
        self.supervision2 = nn.Conv2d(512, num_classes, kernel_size=1)
        self.feature_fusion_module = TemplateFFM(num_classes, 1024)
        self.conv = nn.Conv2d(num_classes, num_classes, kernel_size=1)

    def forward(self, x):
        sx = self.saptial_path(x)
        cx1, cx2, tail = self.context_path(x)
        cx1 = self.attention_refinement_module1(cx1)
        cx2 = torch.mul(self.attention_refinement_module2(cx2), tail)
        cx1 = F.interpolate(cx1, size=sx.size()[-2:], mode="bilinear")
        cx2 = F.interpolate(cx2, size=sx.size()[-2:], mode="bilinear")
        result = self.feature_fusion_module(sx, torch.cat((cx1, cx2), dim=1))
        result = F.interpolate(result, scale_factor=8, mode="bilinear")
        return self.conv(result)


class TemplateBottleneck(nn.Module):
    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, kernel_size=3, stride=1, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        return self.relu(out + residual)


class TemplateClassifier(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv2d_list = nn.ModuleList(
            [
                nn.Conv2d(2048, num_classes, kernel_size=3, padding=d, dilation=d, bias=True)
                for d in (6, 12, 18, 24)
            ]
        )

    def forward(self, x):
        out = self.conv2d_list[0](x)
        for i in range(len(self.conv2d_list) - 1):
            out = out + self.conv2d_list[i + 1](x)
        return out


class TemplateDeepLabV2(nn.Module):
    def __init__(self, num_classes: int = 19) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)
        self.layer1 = self._make_layer(64, 3)
        self.layer2 = self._make_layer(128, 4, stride=2)
        self.layer3 = self._make_layer(256, 23, stride=1, dilation=2)
        self.layer4 = self._make_layer(512, 3, stride=1, dilation=4)
        self.layer6 = TemplateClassifier(num_classes)

    def _make_layer(self, planes, blocks, stride=1, dilation=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * 4 or dilation == 2 or dilation == 4:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * 4, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * 4),
            )
        layers = [TemplateBottleneck(self.inplanes, planes, stride, dilation=dilation, downsample=downsample)]
        self.inplanes = planes * 4
        for _ in range(1, blocks):
            layers.append(TemplateBottleneck(self.inplanes, planes, dilation=dilation))
        return nn.Sequential(*layers)

    def forward(self, x):
        h, w = x.size()[2:]
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.layer6(x)
        return F.interpolate(x, size=(h, w), mode="bilinear")


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter and BN statistic non-trivial random values (as a trained net would have)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            is_bn_scale = tensor.dim() == 1 and name.endswith(
                ("bn.weight", "bn1.weight", "bn2.weight", "bn3.weight", "1.weight")
            )
            if name.endswith("running_var") or is_bn_scale:
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                scale = 0.1 if tensor.dim() == 1 else (2.0 / max(1, tensor[0].numel())) ** 0.5
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * scale)
    return model


def reference_fda(src: np.ndarray, tgt: np.ndarray, beta: float) -> np.ndarray:
    """FDA on one 3 x H x W image with the full complex FFT, written as plainly as possible."""
    if beta == 0:
        return src.copy()
    fft_src = np.fft.fft2(src, axes=(-2, -1))
    fft_tgt = np.fft.fft2(tgt, axes=(-2, -1))
    amp_src, pha_src = np.abs(fft_src), np.angle(fft_src)
    amp_tgt = np.abs(fft_tgt)
    amp_src = np.fft.fftshift(amp_src, axes=(-2, -1))
    amp_tgt = np.fft.fftshift(amp_tgt, axes=(-2, -1))
    h, w = src.shape[-2:]
    b = int(np.floor(min(h, w) * beta))
    ch, cw = h // 2, w // 2
    amp_src[:, ch - b : ch + b + 1, cw - b : cw + b + 1] = amp_tgt[
        :, ch - b : ch + b + 1, cw - b : cw + b + 1
    ]
    amp_src = np.fft.ifftshift(amp_src, axes=(-2, -1))
    return np.real(np.fft.ifft2(amp_src * np.exp(1j * pha_src), axes=(-2, -1)))
