"""A corrupt image or a label with unknown values in the middle of a real-layout tree: reported with its
path, then either the run stops ("stop", the default) or the sample is skipped with a warning ("skip").
Never a silently wrong label."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segdemo import synthetic
from segdemo.checkpoints import default_metadata, save_checkpoint
from segdemo.datasets import GTA5, BadSampleWarning, Cityscapes, DatasetError, collate_usable
from segdemo.labels import IGNORE_INDEX, NUM_CLASSES
from segdemo.models import build_model
from train.__main__ import main

TINY = ["gta5_size=64x32", "cityscapes_size=64x32", "batch_size=2", "log_every=1", "iterations=4"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clean_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("procedural")
    synthetic.generate(root, seed=5, n_source=8, n_target_train=8, n_target_val=4, size=(64, 32))
    return root


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def paint_value(path: Path, value: int) -> None:
    """Rewrite a label PNG with one pixel set to ``value`` (same mode, so only the value is wrong)."""
    with Image.open(path) as label:
        mode, palette = label.mode, label.getpalette()
        values = np.array(label)
    values[5, 7] = value
    out = Image.fromarray(values, mode="L")
    if mode == "P":
        out = out.convert("P")
        out.putpalette(palette)
    out.save(path)


@pytest.fixture(scope="module")
def bad_tree(clean_tree, tmp_path_factory) -> dict:
    """The clean tree with, in the middle of each set, a truncated image and a label holding unknown
    values."""
    root = tmp_path_factory.mktemp("bad") / "data"
    shutil.copytree(clean_tree, root)
    gta5 = GTA5(root / "gta5")
    cs_train = Cityscapes(root / "cityscapes", "train")
    cs_val = Cityscapes(root / "cityscapes", "val")
    truncate(gta5.files[3][0])
    paint_value(gta5.files[5][1], 200)  # label ids stop at 34
    truncate(cs_train.files[4][0])
    paint_value(cs_train.files[2][1], 77)  # trainIds are 0-18 or 255
    paint_value(cs_val.files[1][1], 42)
    return {
        "root": root,
        "gta5": {3: gta5.files[3][0], 5: gta5.files[5][1]},
        "train": {4: cs_train.files[4][0], 2: cs_train.files[2][1]},
        "val": {1: cs_val.files[1][1]},
    }


def datasets(root: Path, policy: str) -> dict:
    return {
        "gta5": GTA5(root / "gta5", on_bad_sample=policy),
        "train": Cityscapes(root / "cityscapes", "train", on_bad_sample=policy),
        "val": Cityscapes(root / "cityscapes", "val", on_bad_sample=policy),
    }


@pytest.mark.parametrize("name", ["gta5", "train", "val"])
def test_stop_names_the_bad_file(bad_tree, name):
    dataset = datasets(bad_tree["root"], "stop")[name]
    for index, path in bad_tree[name].items():
        with pytest.raises(DatasetError) as info:
            dataset[index]
        message = str(info.value)
        assert str(path) in message
        assert "truncated or corrupt" in message or "unexpected value" in message
    good = next(i for i in range(len(dataset)) if i not in bad_tree[name])
    assert dataset[good][1].shape == (32, 64)


@pytest.mark.parametrize("name", ["gta5", "train", "val"])
def test_skip_warns_with_the_path_once_and_leaves_the_sample_out(bad_tree, clean_tree, name):
    dataset = datasets(bad_tree["root"], "skip")[name]
    clean = datasets(clean_tree, "stop")[name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [dataset[i] for i in range(len(dataset))] + [dataset[i] for i in bad_tree[name]]  # twice
    messages = [str(w.message) for w in caught if issubclass(w.category, BadSampleWarning)]
    assert len(messages) == len(bad_tree[name])  # once per bad file, however often it is asked for
    for path in bad_tree[name].values():
        assert sum(str(path) in m for m in messages) == 1
    bad_images = {dataset.files[i][0] for i in bad_tree[name]}
    assert set(dataset.skipped) == bad_images
    for index, item in enumerate(items[: len(dataset)]):
        if index in bad_tree[name]:
            assert item is None  # left out: nothing takes its place, so no sample is seen twice
            continue
        image, label = item
        assert set(label.unique().tolist()) <= set(range(NUM_CLASSES)) | {IGNORE_INDEX}  # never a wrong label
        expected_image, expected_label = clean[index]
        assert torch.equal(image, expected_image) and torch.equal(label, expected_label), index
    # In a loader, a batch with a bad sample is one sample smaller and holds every other sample once.
    batches = list(torch.utils.data.DataLoader(dataset, batch_size=len(dataset), collate_fn=collate_usable))
    assert len(batches) == 1 and batches[0][0].shape[0] == len(dataset) - len(bad_tree[name])


def test_skip_with_nothing_usable_and_an_unknown_policy(tmp_path, clean_tree):
    root = tmp_path / "gta5"
    shutil.copytree(clean_tree / "gta5", root)
    for image in sorted((root / "images").iterdir()):
        truncate(image)
    dataset = GTA5(root, on_bad_sample="skip")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadSampleWarning)
        assert all(dataset[i] is None for i in range(len(dataset)))
        assert collate_usable([dataset[0], dataset[1]]) is None
        # A run on it stops in one line rather than training on nothing.
        code = main(
            [
                "run",
                "bisenet_gta5",
                "--gta5",
                str(root),
                "--cityscapes",
                str(clean_tree / "cityscapes"),
                "--out",
                str(tmp_path / "ck"),
                "--device",
                "cpu",
                *TINY,
                "num_workers=0",
                "bad_samples=skip",
            ]
        )
    assert code == 2
    with pytest.raises(ValueError, match="on_bad_sample must be one of"):
        GTA5(root, on_bad_sample="ignore")


def run(bad_tree, out: Path, *extra: str) -> int:
    root = bad_tree["root"]
    return main(
        [
            "run",
            "bisenet_gta5",
            "--gta5",
            str(root / "gta5"),
            "--cityscapes",
            str(root / "cityscapes"),
            "--out",
            str(out),
            "--device",
            "cpu",
            *TINY,
            *extra,
        ]
    )


def test_train_run_stops_at_a_corrupt_image_read_in_a_loader_worker(bad_tree, tmp_path, capsys):
    assert run(bad_tree, tmp_path / "ck", "num_workers=2") == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after the progress bar
    # One line naming the file, not the worker's traceback.
    assert last.startswith("error: cannot decode ") and "Traceback" not in err
    assert str(bad_tree["gta5"][3]) in last
    assert not (tmp_path / "ck" / "model.safetensors").exists()


def test_train_run_skips_bad_samples_when_asked(bad_tree, tmp_path):
    with pytest.warns(BadSampleWarning) as record:
        assert run(bad_tree, tmp_path / "ck", "num_workers=0", "bad_samples=skip") == 0
    warned = "\n".join(str(w.message) for w in record)
    # Every bad GTA5 pair (the training set) and the bad val label (evaluated at the end) is named.
    for path in [*bad_tree["gta5"].values(), *bad_tree["val"].values()]:
        assert str(path) in warned
    assert (tmp_path / "ck" / "model.safetensors").is_file()


def test_train_run_refuses_an_unknown_bad_samples_value(bad_tree, tmp_path, capsys):
    assert run(bad_tree, tmp_path / "ck", "bad_samples=ignore") == 2
    assert "bad_samples must be stop or skip, not 'ignore'" in capsys.readouterr().err


def test_train_evaluate_names_a_bad_val_label(bad_tree, tmp_path, capsys):
    torch.manual_seed(0)
    save_checkpoint(
        build_model("bisenet").eval(), tmp_path / "ck", default_metadata("bisenet", input_size=[32, 64])
    )
    code = main(
        [
            "evaluate",
            str(tmp_path / "ck"),
            "--cityscapes",
            str(bad_tree["root"] / "cityscapes"),
            "--device",
            "cpu",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert str(bad_tree["val"][1]) in err and "unexpected value(s) 42" in err
