"""segdemo.adabn: BatchNorm statistics recomputed on target images, nothing else touched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segdemo.adabn import batchnorm_layers, never_learnt_statistics, recompute_batchnorm
from segdemo.models import build_model


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))


def test_statistics_are_the_average_over_the_batches_and_nothing_else_changes():
    net = _net()
    conv, bn = net[0], net[1]
    before = {
        k: v.clone() for k, v in net.state_dict().items() if "running" not in k and "num_batches" not in k
    }
    generator = torch.Generator().manual_seed(1)
    batches = [torch.randn(3, 3, 8, 8, generator=generator) * s + s for s in (1.0, 3.0)]
    with torch.no_grad():
        features = [conv(b) for b in batches]
    assert recompute_batchnorm(net, iter(batches)) == 6
    # Equal batches: the plain average of the batch means is the mean over all their pixels.
    mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in features]).mean(0)
    var = torch.stack([f.transpose(0, 1).flatten(1).var(dim=1) for f in features]).mean(0)
    torch.testing.assert_close(bn.running_mean, mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var, var, rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.1 and not net.training  # its own momentum back, eval mode
    after = {k: v for k, v in net.state_dict().items() if k in before}
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_the_statistics_move_towards_the_target_images():
    net = _net()
    shifted = [torch.rand(4, 3, 8, 8) + 5.0 for _ in range(2)]  # a far brighter "domain"
    bn = net[1]
    assert torch.equal(bn.running_mean, torch.zeros(4))
    recompute_batchnorm(net, shifted)
    with torch.no_grad():
        expected = net[0](torch.cat(shifted)).mean(dim=(0, 2, 3))
    torch.testing.assert_close(bn.running_mean, expected, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # eval mode now: normalised by the new statistics, the target features are centred
        centred = bn(net[0](torch.cat(shifted))).mean(dim=(0, 2, 3))
    assert centred.abs().max() < 0.05


def test_bisenet_keeps_its_weights_and_gets_new_statistics(one_thread):
    model = build_model("bisenet").eval()
    layers = batchnorm_layers(model)
    assert len(layers) > 10
    weights = {
        k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k
    }
    old = [layer.running_mean.clone() for layer in layers]
    images = torch.rand(2, 3, 32, 64)
    assert recompute_batchnorm(model, [images]) == 2
    assert not model.training
    assert all(not torch.equal(a, layer.running_mean) for a, layer in zip(old, layers, strict=True))
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items() if k in weights)
    assert torch.isfinite(model(images)).all()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="no BatchNorm"):
        recompute_batchnorm(nn.Conv2d(3, 2, 1), [torch.rand(2, 3, 4, 4)])
    with pytest.raises(ValueError, match="no batches"):
        recompute_batchnorm(_net(), [])
    net = _net()
    with pytest.raises(ValueError, match="N >= 2"):
        recompute_batchnorm(net, [torch.rand(1, 3, 4, 4)])
    assert net[1].momentum == 0.1 and not net.training


def test_frozen_batchnorm_of_deeplabv2_is_recomputed_too(one_thread):
    # DeepLabV2 keeps every BatchNorm in eval mode while training; AdaBN must still recompute them.
    model = build_model("deeplabv2").eval()
    layers = batchnorm_layers(model)
    images = torch.rand(2, 3, 32, 32) + 1.0
    recompute_batchnorm(model, [images])
    assert not any(layer.training for layer in layers)
    first = model.bn1
    with torch.no_grad():
        expected = model.conv1(images).mean(dim=(0, 2, 3))
    torch.testing.assert_close(first.running_mean, expected, rtol=1e-4, atol=1e-5)


class _WithAuxiliaryHead(nn.Module):
    """A network whose training form also runs an auxiliary head with its own BatchNorm (as DeepLabV3's and
    PSPNet's do); its inference form does not."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.aux = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))

    def forward(self, x: torch.Tensor):
        features = self.body(x)
        return (features, self.aux(features)) if self.training else features


def test_layers_the_inference_form_skips_keep_their_statistics():
    torch.manual_seed(0)
    model = _WithAuxiliaryHead().train()
    with torch.no_grad():
        model(torch.rand(4, 3, 8, 8))  # a training pass: the auxiliary head's statistics move off 0 and 1
    aux_before = {k: v.clone() for k, v in model.aux.state_dict().items()}
    body_before = model.body[1].running_mean.clone()
    recompute_batchnorm(model, [torch.rand(4, 3, 8, 8) + 2.0])
    assert all(torch.equal(aux_before[k], v) for k, v in model.aux.state_dict().items())
    assert not torch.equal(body_before, model.body[1].running_mean)
    assert not model.training


def test_never_learnt_statistics_tells_frozen_batchnorm_from_learnt(one_thread):
    x = torch.rand(2, 3, 32, 32)
    bisenet = build_model("bisenet")
    assert never_learnt_statistics(bisenet)  # as built: mean 0, variance 1
    with torch.no_grad():
        bisenet.train()(x)
    assert not never_learnt_statistics(bisenet)
    deeplab = build_model("deeplabv2")
    with torch.no_grad():
        deeplab.train()(x)  # its BatchNorm stays frozen while training
    assert never_learnt_statistics(deeplab)
    assert not never_learnt_statistics(nn.Conv2d(3, 2, 1))  # no BatchNorm at all
