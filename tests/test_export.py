"""``python -m train export``: the ONNX file runs in ONNX Runtime with PyTorch's logits; clear errors."""

from __future__ import annotations

import json

import onnx
import onnxruntime as ort
import pytest
import torch
from test_fast_inference import trained_like

from segdemo.checkpoints import default_metadata, load_model, save_checkpoint
from train.__main__ import main
from train.export import ExportError, export_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt") / "bisenet_small"
    save_checkpoint(
        trained_like("bisenet", seed=5),
        folder,
        default_metadata("bisenet", input_size=[64, 128], variant="bisenet_gta5"),
    )
    return folder


def test_export_writes_a_graph_onnxruntime_runs_with_pytorchs_logits(checkpoint, capsys):
    assert main(["export", str(checkpoint)]) == 0
    out = checkpoint / "model.onnx"
    assert "max |logit difference|" in capsys.readouterr().out

    graph = onnx.load(out)
    onnx.checker.check_model(graph)
    props = {p.key: json.loads(p.value) for p in graph.metadata_props}
    assert props["input_size"] == [64, 128] and props["model"] == "bisenet" and len(props["classes"]) == 19

    model, _ = load_model(checkpoint)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, 64, 128, generator=torch.Generator().manual_seed(7))  # batch size is free
    (logits,) = session.run(["logits"], {"image": x.numpy()})
    with torch.inference_mode():
        expected = model(x)
    assert logits.shape == (2, 19, 64, 128)
    assert expected.std() > 0.1 and (torch.from_numpy(logits) - expected).abs().max() <= 1e-3


def test_export_to_another_size_and_file(checkpoint, tmp_path):
    report = export_checkpoint(checkpoint, tmp_path / "sub" / "small.onnx", (32, 64))
    assert report.path.is_file() and report.input_size == (32, 64) and report.max_abs_diff <= 1e-3
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [3, 32, 64]


def test_export_errors_are_one_line_messages(checkpoint, tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing")]) == 2
    assert f"checkpoint {tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    not_a_checkpoint = tmp_path / "notes.txt"
    not_a_checkpoint.write_text("hello")
    assert main(["export", str(not_a_checkpoint)]) == 2
    assert "unknown checkpoint type" in capsys.readouterr().err
    with pytest.raises(ExportError, match="multiple of 8"):
        export_checkpoint(checkpoint, tmp_path / "x.onnx", (60, 100))
    with pytest.raises(ExportError, match="is a folder"):
        export_checkpoint(checkpoint, tmp_path)
    assert not list(tmp_path.glob("*.onnx"))
