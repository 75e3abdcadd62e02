"""segdemo.models.fast: the inference forms give the plain networks' logits, and predict uses them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from segdemo.checkpoints import default_metadata
from segdemo.inference import predict
from segdemo.models import build_model, fast
from segdemo.models.fast import (
    InferenceBiSeNet,
    OnnxRuntimeModel,
    export_onnx,
    fold_batchnorm,
    prepare_for_inference,
    runner_for,
)
from segdemo.profiling import count_flops
from segdemo.synthetic import render_scene, scene_rng

TOLERANCE = 1e-3  # the bound on |logit difference| for an exact path


def trained_like(name: str, seed: int = 0) -> nn.Module:
    """A network whose BatchNorms hold non-trivial statistics and affine parameters, as after training
    (fresh BNs are the identity, which would let a wrong folding pass unnoticed)."""
    torch.manual_seed(seed)
    model = build_model(name)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def bisenet() -> nn.Module:
    return trained_like("bisenet")


@pytest.fixture(scope="module")
def deeplab() -> nn.Module:
    return trained_like("deeplabv2")


def _inputs(height: int, width: int, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", ["bisenet", "deeplabv2"])
def test_eager_inference_form_gives_the_same_logits(name, bisenet, deeplab):
    model = bisenet if name == "bisenet" else deeplab
    x = _inputs(96, 160, batch=2)
    with torch.inference_mode():
        expected = model(x)
        fast = prepare_for_inference(model)
        got = fast(x)
        got_nchw = prepare_for_inference(model, channels_last=False)(x)
    assert expected.std() > 0.1  # logits that vary, so an equality below means something
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= TOLERANCE
    assert (got_nchw - expected).abs().max() <= TOLERANCE
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert not model.training and any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # untouched


@pytest.mark.parametrize("name", ["bisenet", "deeplabv2"])
def test_onnxruntime_form_gives_the_same_logits(name, bisenet, deeplab):
    model = bisenet if name == "bisenet" else deeplab
    x = _inputs(64, 96)
    runner = OnnxRuntimeModel(export_onnx(model, (64, 96)))
    with torch.inference_mode():
        assert (runner(x) - model(x)).abs().max() <= TOLERANCE


def test_inference_bisenet_skips_the_auxiliary_heads_and_does_fewer_flops(bisenet):
    fast = InferenceBiSeNet(bisenet)
    assert not hasattr(fast, "supervision1") and not hasattr(fast, "supervision2")
    # BN is gone and the 19 -> 19 classifier runs on 1/64 of the pixels: fewer operations.
    assert count_flops(fast, 128, 256) < count_flops(bisenet, 128, 256)


def test_folding_refuses_layouts_it_does_not_know():
    unknown = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="cannot fold"):
        fold_batchnorm(unknown)
    with pytest.raises(TypeError, match="BiSeNet and DeepLabV2"):
        prepare_for_inference(nn.Conv2d(3, 19, 1))


def test_runner_is_built_once_and_rebuilt_when_the_weights_change(bisenet):
    model = trained_like("bisenet", seed=3)
    x = _inputs(64, 128)
    first, backend = runner_for(model, (64, 128), "cpu")
    assert backend == "onnxruntime"
    assert runner_for(model, (64, 128), "cpu")[0] is first
    assert runner_for(model, (64, 128), "cpu", backend="eager")[1] == "eager"
    model.load_state_dict(bisenet.state_dict())  # new weights, written in place
    updated, _ = runner_for(model, (64, 128), "cpu")
    with torch.inference_mode():
        assert (updated(x) - bisenet(x)).abs().max() <= TOLERANCE
    assert runner_for(model, (64, 128), "cpu", backend="plain") == (model, "plain")


def test_unknown_networks_run_as_they_are_and_bad_backends_are_refused(bisenet):
    other = nn.Conv2d(3, 19, 1).eval()
    assert runner_for(other, (8, 8), "cpu") == (other, "plain")
    with pytest.raises(ValueError, match="knows BiSeNet and DeepLabV2"):
        runner_for(other, (8, 8), "cpu", backend="eager")
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        runner_for(bisenet, (8, 8), "cpu", backend="tensorrt")
    with pytest.raises(ValueError, match="runs on the CPU"):
        runner_for(bisenet, (8, 8), "cuda", backend="onnxruntime")


def test_predict_uses_the_fast_form_by_default_and_agrees_with_the_plain_model(bisenet):
    image, _ = render_scene(scene_rng(0, "target", "val", 0), "target", (200, 100))
    meta = default_metadata("bisenet", input_size=[64, 128])
    fast = predict(bisenet, meta, image)
    plain = predict(bisenet, meta, image, backend="plain")
    eager = predict(bisenet, meta, image, backend="eager")
    assert (fast.backend, plain.backend, eager.backend) == ("onnxruntime", "plain", "eager")
    # Logits within 1e-3 can only flip a label where the top two classes are within 1e-3.
    assert np.mean(fast.train_ids == plain.train_ids) > 0.999
    assert np.mean(eager.train_ids == plain.train_ids) > 0.999
    np.testing.assert_allclose(fast.confidence, plain.confidence, atol=1e-3)


def test_bfloat16_backend_is_close_but_approximate(bisenet):
    x = _inputs(64, 128)
    runner, backend = runner_for(bisenet, (64, 128), "cpu", backend="bfloat16")
    with torch.inference_mode():
        expected, got = bisenet(x), runner(x)
    assert backend == "bfloat16" and got.dtype == torch.float32 and got.shape == expected.shape
    # bfloat16 keeps 8 bits of mantissa: about 1 % of the logits' scale, and most labels.
    assert (got - expected).abs().max() <= 0.05 * expected.abs().max()
    assert (got.argmax(1) == expected.argmax(1)).float().mean() > 0.9


def test_auto_falls_back_to_pytorch_when_the_onnx_export_fails(monkeypatch):
    model = trained_like("bisenet", seed=4)

    def broken_export(*_args, **_kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(fast, "export_onnx", broken_export)
    with pytest.warns(UserWarning, match="exporter exploded"):
        runner, backend = runner_for(model, (64, 128), "cpu")
    assert backend == "eager" and runner_for(model, (64, 128), "cpu") == (runner, "eager")
    x = _inputs(64, 128)
    with torch.inference_mode():
        assert (runner(x) - model(x)).abs().max() <= TOLERANCE
    with pytest.raises(RuntimeError, match="exporter exploded"):
        runner_for(trained_like("bisenet", seed=5), (64, 128), "cpu", backend="onnxruntime")
