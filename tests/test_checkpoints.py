import json
import pickle
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import REPO, assert_same_logits, fixed_input

from benchmarks.baseline import TemplateBiSeNet, TemplateDeepLabV2, randomize_
from segdemo.checkpoints import (
    CheckpointError,
    default_metadata,
    load_model,
    read_metadata,
    save_checkpoint,
    update_metadata,
)
from segdemo.models import build_model


@pytest.fixture(scope="module")
def template_bisenet():
    return randomize_(TemplateBiSeNet(), seed=1).eval()


def _logits(model, x):
    with torch.no_grad():
        return model(x)


def test_our_checkpoint_round_trip(tmp_path):
    model = randomize_(build_model("bisenet"), seed=2).eval()
    meta = default_metadata("bisenet", variant="bisenet_gta5", train_data={"kind": "procedural"}, steps=7)
    save_checkpoint(model, tmp_path / "ck", meta)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["meta.json", "model.safetensors"]
    loaded, loaded_meta = load_model(tmp_path / "ck")
    assert not loaded.training
    x = fixed_input(1, 3, 64, 128)
    assert torch.equal(_logits(loaded, x), _logits(model, x))
    assert loaded_meta["variant"] == "bisenet_gta5" and loaded_meta["steps"] == 7
    assert loaded_meta["classes"][0] == "road" and len(loaded_meta["classes"]) == 19
    # Pointing at the weights file works too.
    again, _ = load_model(tmp_path / "ck" / "model.safetensors")
    assert torch.equal(_logits(again, x), _logits(model, x))


def test_update_metadata_merges_fields(tmp_path):
    save_checkpoint(build_model("bisenet"), tmp_path / "ck", default_metadata("bisenet"))
    update_metadata(tmp_path / "ck", metrics={"miou": 41.5})
    meta = read_metadata(tmp_path / "ck")
    assert meta["metrics"] == {"miou": 41.5} and meta["model"] == "bisenet"
    assert not list((tmp_path / "ck").glob("*.tmp"))


@pytest.mark.parametrize("wrap", ["bare", "module", "state_dict", "model"])
def test_template_bisenet_pth_gives_the_template_outputs(tmp_path, template_bisenet, wrap):
    state = template_bisenet.state_dict()
    if wrap == "module":
        obj = {"module." + k: v for k, v in state.items()}
    elif wrap in ("state_dict", "model"):
        obj = {wrap: state, "epoch": 50}
    else:
        obj = state
    path = tmp_path / f"bisenet_{wrap}.pth"
    torch.save(obj, path)
    model, meta = load_model(path)
    x = fixed_input(1, 3, 64, 128)
    assert_same_logits(_logits(model, x), _logits(template_bisenet, x))
    assert meta["model"] == "bisenet" and meta["variant"] == "template import"


def test_template_deeplab_pth_gives_the_template_outputs(tmp_path):
    ref = randomize_(TemplateDeepLabV2(), seed=4).eval()
    path = tmp_path / "deeplab.pth"
    torch.save({"module." + k: v for k, v in ref.state_dict().items()}, path)
    model, meta = load_model(path)
    x = fixed_input(1, 3, 48, 80)
    assert_same_logits(_logits(model, x), _logits(ref, x))
    assert meta["model"] == "deeplabv2"


def test_wrong_class_count_is_refused(tmp_path):
    path = tmp_path / "ten.pth"
    torch.save(TemplateBiSeNet(num_classes=10).state_dict(), path)
    with pytest.raises(CheckpointError, match="10 classes"):
        load_model(path)
    save_checkpoint(
        build_model("bisenet", 10), tmp_path / "ours10", default_metadata("bisenet", num_classes=10)
    )
    with pytest.raises(CheckpointError, match="10 classes"):
        load_model(tmp_path / "ours10")


def test_unknown_and_missing_keys_are_named(tmp_path, template_bisenet):
    state = dict(template_bisenet.state_dict())
    state["decoder.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match="1 unknown.*decoder.extra.weight"):
        load_model(tmp_path / "extra.pth")
    state = dict(template_bisenet.state_dict())
    del state["attention_refinement_module1.conv.bias"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="1 missing.*attention_refinement_module1.conv.bias"):
        load_model(tmp_path / "missing.pth")
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="neither a BiSeNet nor a DeepLabV2"):
        load_model(tmp_path / "other.pth")


def test_truncated_files_are_refused(tmp_path, template_bisenet):
    torch.save(template_bisenet.state_dict(), tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot load .*cut.pth"):
        load_model(tmp_path / "cut.pth")
    save_checkpoint(build_model("bisenet"), tmp_path / "ck", default_metadata("bisenet"))
    weights = tmp_path / "ck" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot read .*model.safetensors"):
        load_model(tmp_path / "ck")


def test_missing_or_broken_metadata(tmp_path):
    save_checkpoint(build_model("bisenet"), tmp_path / "ck", default_metadata("bisenet"))
    (tmp_path / "ck" / "meta.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(tmp_path / "ck")
    (tmp_path / "ck" / "meta.json").unlink()
    with pytest.raises(CheckpointError, match="has no meta.json"):
        load_model(tmp_path / "ck")
    (tmp_path / "ck" / "meta.json").write_text(json.dumps({"model": "unet", "num_classes": 19}))
    with pytest.raises(CheckpointError, match="unknown model 'unet'"):
        load_model(tmp_path / "ck")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("input_size", [500, 1000], "multiples of 8"),
        ("input_size", [0, 0], "multiples of 8 from 8"),
        ("input_size", [60000, 60000], "to 4096"),
        ("input_size", "512x1024", "is not [height, width]"),
        ("mean", [0.5, 0.5], "mean [0.5, 0.5] is not three finite numbers"),
        ("std", [0.2, 0.0, 0.2], "above 0"),
        ("num_classes", 10, "10 classes"),
    ],
)
def test_unusable_metadata_is_refused_when_listed_and_when_loaded(tmp_path, field, value, message):
    from segdemo.catalogue import describe_checkpoint

    save_checkpoint(build_model("bisenet"), tmp_path / "ck", default_metadata("bisenet", **{field: value}))
    info = describe_checkpoint(tmp_path / "ck", tmp_path)
    assert info.error and message in info.error  # listed with its reason, so never offered as usable
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_model(tmp_path / "ck")


class _CreatesAFile:
    """Unpickling this calls open(path, 'w'): loading it would write a file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_a_pickle_that_runs_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"conv.weight": _CreatesAFile(marker)}, f)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_model(path)
    assert not marker.exists()
    # Same payload in torch's zip format.
    torch.save({"state_dict": {"x": _CreatesAFile(marker)}}, tmp_path / "evil2.pth")
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "evil2.pth")
    assert not marker.exists()


def test_other_inputs(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "absent")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="unknown checkpoint type"):
        load_model(tmp_path / "notes.txt")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        load_model(tmp_path / "list.pth")
    with pytest.raises(ValueError, match="lacks"):
        save_checkpoint(build_model("bisenet"), tmp_path / "x", {"model": "bisenet"})


def test_our_checkpoint_with_another_architecture_is_refused(tmp_path):
    # BiSeNet weights under metadata that says DeepLabV2 (a folder renamed or a meta.json copied over).
    save_checkpoint(build_model("bisenet"), tmp_path / "ck", default_metadata("bisenet"))
    update_metadata(tmp_path / "ck", model="deeplabv2")
    with pytest.raises(
        CheckpointError,
        match=r"model\.safetensors does not fit the deeplabv2 architecture: "
        r"\d+ missing .*\d+ unknown",
    ):
        load_model(tmp_path / "ck")


@pytest.mark.parametrize("field", ["model", "num_classes"])
def test_metadata_without_a_required_field_is_refused(tmp_path, field):
    save_checkpoint(build_model("bisenet"), tmp_path / "ck", default_metadata("bisenet"))
    meta = read_metadata(tmp_path / "ck")
    del meta[field]
    (tmp_path / "ck" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=f"meta.json lacks the field '{field}'"):
        load_model(tmp_path / "ck")


# A fresh interpreter loads each file and reports how much its peak memory grew: VmHWM, the peak resident set
# of its own address space (ru_maxrss would start at the parent's peak: it survives exec).
_MEMORY_PROBE = """
import json, sys
import torch
from segdemo.catalogue import import_template_checkpoint
from segdemo.checkpoints import CheckpointError, load_model

def peak_kib():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    return int(fields["VmHWM"].split()[0])

out = {}
for path in sys.argv[2:]:
    before = peak_kib()
    try:
        if path.endswith(".upload"):
            with open(path, "rb") as f:
                import_template_checkpoint(f.read(), "checkpoint.pth", sys.argv[1])
        else:
            load_model(path)
        outcome = "loaded"
    except CheckpointError as exc:
        outcome = str(exc)
    out[path] = {"growth_mb": (peak_kib() - before) / 1024, "outcome": outcome}
print(json.dumps(out))
"""


def _deflated(path: Path, state: dict) -> Path:
    """``state`` saved by torch.save, then repacked with its tensors deflated: small on disk, large when
    read."""
    plain = path.with_suffix(".plain")
    torch.save(state, plain)
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as packed:
        for entry in source.infolist():
            packed.writestr(entry.filename, source.read(entry.filename))
    plain.unlink()
    return path


def test_checkpoint_files_that_claim_much_more_are_refused_before_they_are_read(tmp_path, template_bisenet):
    from safetensors.torch import save_file

    claim = 50_000_000  # floats: 200 MB when read
    deflated = _deflated(tmp_path / "zeros.pth", {"conv.weight": torch.zeros(claim)})
    assert deflated.stat().st_size < 2_000_000
    upload = tmp_path / "zeros.upload"
    upload.write_bytes(deflated.read_bytes())  # the same file through the Home page's import
    padded = tmp_path / "padded.pth"  # a real template state dict plus one huge tensor it does not need
    torch.save({**template_bisenet.state_dict(), "extra.weight": torch.zeros(claim)}, padded)
    folder = tmp_path / "ours"
    save_checkpoint(build_model("bisenet"), folder, default_metadata("bisenet"))
    tensors = {k: v.contiguous() for k, v in build_model("bisenet").state_dict().items()}
    save_file({**tensors, "extra.weight": torch.zeros(claim)}, folder / "model.safetensors")
    files = [deflated, upload, padded, folder]
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, str(tmp_path / "root"), *map(str, files)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    for path in files:
        entry = report[str(path)]
        assert entry["outcome"] != "loaded", path
        assert entry["growth_mb"] < 60, (path, entry)  # never the 200 MB the file claims
    assert "compressed" in report[str(deflated)]["outcome"] and "compressed" in report[str(upload)]["outcome"]
    assert "1 unknown (first: extra.weight)" in report[str(padded)]["outcome"]
    assert "1 unknown (first: extra.weight)" in report[str(folder)]["outcome"]
    assert not list((tmp_path / "root" / "uploads").glob("*.pth"))  # nothing kept from the refused upload
