import pytest
import torch
from conftest import assert_same_logits, fixed_input, read_state_dict_listing

from benchmarks.baseline import TemplateBiSeNet, TemplateDeepLabV2, randomize_
from segdemo.models import BackboneInitError, build_model
from segdemo.models.bisenet import template_key_to_ours
from segdemo.profiling import count_flops, count_parameters, measure_latency


def test_template_reference_matches_the_shared_listings(shared_dir):
    # The reference nets used below must be the template's networks, key for key and shape for shape.
    for net, tsv in (
        (TemplateBiSeNet(), "template_bisenet_r18_state_dict.tsv"),
        (TemplateDeepLabV2(), "template_deeplabv2_r101_state_dict.tsv"),
    ):
        listing = read_state_dict_listing(shared_dir / "reference" / tsv)
        ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        assert ours == listing


def test_our_state_dicts_are_the_template_keys_after_renaming(shared_dir):
    listing = read_state_dict_listing(shared_dir / "reference" / "template_bisenet_r18_state_dict.tsv")
    mapped = {template_key_to_ours(k): s for k, s in listing.items() if template_key_to_ours(k) is not None}
    assert {k: tuple(v.shape) for k, v in build_model("bisenet").state_dict().items()} == mapped
    listing = read_state_dict_listing(shared_dir / "reference" / "template_deeplabv2_r101_state_dict.tsv")
    assert {k: tuple(v.shape) for k, v in build_model("deeplabv2").state_dict().items()} == listing


@pytest.mark.parametrize("name, params", [("bisenet", 12_068_672), ("deeplabv2", 43_901_068)])
def test_parameter_counts(name, params):
    assert count_parameters(build_model(name)) == params


@pytest.mark.parametrize("name, gflops", [("bisenet", 25.78), ("deeplabv2", 374.7)])
def test_fvcore_flops_at_512x1024_match_the_report(name, gflops):
    assert round(count_flops(build_model(name), 512, 1024) / 1e9, 2 if name == "bisenet" else 1) == gflops


def test_bisenet_outputs_in_eval_and_train():
    model = build_model("bisenet", num_classes=19)
    x = fixed_input(2, 3, 64, 128)
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 19, 64, 128)
    model.train()
    outs = model(x)
    assert isinstance(outs, tuple) and len(outs) == 3
    assert all(o.shape == (2, 19, 64, 128) for o in outs)


def test_deeplab_output_size_and_frozen_bn():
    model = build_model("deeplabv2", num_classes=7)
    x = fixed_input(1, 3, 65, 97)  # odd sizes exercise the ceil-mode pooling and the final resize
    model.train()
    bn = model.layer1[0].bn1
    before = bn.running_mean.clone()
    out = model(x)
    assert out.shape == (1, 7, 65, 97)
    assert torch.equal(bn.running_mean, before)  # frozen statistics
    assert not bn.training and not bn.weight.requires_grad
    assert all(p.requires_grad for p in model.head_parameters())


@pytest.mark.parametrize("name, template", [("bisenet", TemplateBiSeNet), ("deeplabv2", TemplateDeepLabV2)])
def test_same_weights_same_logits_as_the_template(name, template):
    ref = randomize_(template()).eval()
    state = ref.state_dict()
    if name == "bisenet":
        state = {template_key_to_ours(k): v for k, v in state.items() if template_key_to_ours(k) is not None}
    model = build_model(name).eval()
    model.load_state_dict(state)
    x = fixed_input(1, 3, 96, 160)
    with torch.no_grad():
        assert_same_logits(model(x), ref(x))


def test_unknown_model_and_bad_class_count():
    with pytest.raises(ValueError, match="unknown model 'unet'"):
        build_model("unet")
    with pytest.raises(ValueError, match="num_classes"):
        build_model("bisenet", num_classes=0)


def test_backbone_init_from_a_torchvision_file(tmp_path):
    from torchvision.models import resnet18

    imagenet = randomize_(resnet18(weights=None), seed=3)
    path = tmp_path / "resnet18.pth"
    torch.save(imagenet.state_dict(), path)
    model = build_model("bisenet", pretrained_backbone=path)
    assert torch.equal(model.context_path.layer3[1].conv2.weight, imagenet.layer3[1].conv2.weight)
    assert torch.equal(model.context_path.bn1.running_var, imagenet.bn1.running_var)


def test_backbone_init_from_the_template_deeplab_init_file(tmp_path):
    # The template's DeepLab init file carries an extra leading key component ("Scale.").
    source = randomize_(build_model("deeplabv2"), seed=5)
    init = {"Scale." + k: v for k, v in source.state_dict().items() if not k.startswith("layer6.")}
    path = tmp_path / "DeepLab_resnet_pretrained_imagenet.pth"
    torch.save(init, path)
    model = build_model("deeplabv2", pretrained_backbone=path)
    assert torch.equal(model.layer4[2].conv3.weight, source.layer4[2].conv3.weight)
    assert not torch.equal(model.layer6.conv2d_list[0].weight, source.layer6.conv2d_list[0].weight)


def test_backbone_init_errors_are_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(BackboneInitError, match="never downloads.*resnet18-f37072fd.pth"):
        build_model("bisenet", pretrained_backbone="imagenet")
    with pytest.raises(BackboneInitError, match="does not exist"):
        build_model("bisenet", pretrained_backbone=tmp_path / "nope.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(BackboneInitError, match="does not fit the bisenet backbone"):
        build_model("bisenet", pretrained_backbone=wrong)


def test_latency_measurement_reports_runs():
    lat = measure_latency(build_model("bisenet"), 64, 128, warmup=1, runs=3)
    assert lat.runs == 3 and lat.mean_ms > 0 and lat.fps > 0 and lat.device.startswith("cpu")
