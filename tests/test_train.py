"""The training package on a tiny procedural tree: every variant, resume, CLI, evaluation, DDP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from conftest import REPO, TINY

from segdemo import synthetic
from segdemo.checkpoints import load_model, read_metadata, write_metadata
from segdemo.jobs import PROGRESS_FILE
from train.__main__ import main
from train.config import apply_overrides, get_variant, variants
from train.data import build_data, describe_data
from train.engine import Trainer, build_optimizer, build_scheduler
from train.errors import TrainingError
from train.resume import read_progress


def tiny_config(variant: str, *extra: str):
    return apply_overrides(get_variant(variant), [*TINY, "iterations=2", *extra])


def test_list_names_the_eight_variants(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.strip().splitlines()] == [
        "deeplabv2_cityscapes",
        "bisenet_cityscapes",
        "bisenet_gta5",
        "bisenet_gta5_aug1",
        "bisenet_gta5_aug2",
        "bisenet_gta5_aug12",
        "bisenet_gta5_fda",
        "bisenet_gta5_dacs",
    ]


def test_variants_carry_the_report_settings():
    table = variants()
    assert all(c.epochs == 50 and c.optimizer == "adam" and c.lr == 1e-3 for c in table.values())
    assert table["bisenet_gta5"].gta5_size == (1280, 720)
    assert table["bisenet_cityscapes"].cityscapes_size == (1024, 512)
    assert table["deeplabv2_cityscapes"].head_lr_mult == 10.0
    assert table["bisenet_gta5_fda"].method == "fda" and table["bisenet_gta5_fda"].fda_beta == 0.01
    assert table["bisenet_gta5_aug12"].augment == "aug12"
    # FDA and DACS build on Aug1+2, as the report compares them with it.
    assert table["bisenet_gta5_dacs"].method == "dacs" and table["bisenet_gta5_dacs"].augment == "aug12"


def test_overrides_parse_and_reject():
    config = apply_overrides(
        get_variant("bisenet_gta5"), ["optimizer=sgd", "lr=2.5e-4", "gta5_size=640x360", "amp=false"]
    )
    assert (config.optimizer, config.lr, config.gta5_size, config.amp) == ("sgd", 2.5e-4, (640, 360), False)
    with pytest.raises(ValueError, match="bad override 'colour=red'"):
        apply_overrides(config, ["colour=red"])
    with pytest.raises(ValueError, match="bad value for lr"):
        apply_overrides(config, ["lr=fast"])
    with pytest.raises(ValueError, match="optimizer must be adam or sgd"):
        apply_overrides(config, ["optimizer=rmsprop"])
    with pytest.raises(ValueError, match="multiples of 8"):
        apply_overrides(config, ["gta5_size=100x50"])


def _learning_rates(config, steps: int, total: int = 100) -> list[list[float]]:
    from segdemo.models import build_model

    optimizer = build_optimizer(config, build_model(config.model))
    scheduler = build_scheduler(config, optimizer, total)
    rates = []
    for _ in range(steps):
        rates.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return rates


def test_poly_schedule_per_parameter_group():
    config = get_variant("bisenet_gta5")
    rates = _learning_rates(config, 51)
    assert rates[0] == [1e-3, 1e-3]
    assert rates[50] == pytest.approx([1e-3 * 0.5**0.9] * 2)
    assert _learning_rates(config.replace(schedule="constant"), 51)[50] == [1e-3, 1e-3]
    # DeepLabV2 trains its classifier with 10x the backbone's learning rate, under the same decay.
    deeplab = _learning_rates(get_variant("deeplabv2_cityscapes"), 51)
    assert deeplab[0] == pytest.approx([1e-3, 1e-2]) and deeplab[50] == pytest.approx(
        [1e-3 * 0.5**0.9, 1e-2 * 0.5**0.9]
    )


def test_ohem_averages_the_hard_labelled_pixels_and_keeps_at_least_a_sixteenth():
    from train.engine import pixel_cross_entropy

    # 64 pixels, two classes: 60 easy (the true class at probability ~0.88), 4 hard (~0.12), 8 ignored.
    logits = torch.zeros(1, 2, 8, 9)
    logits[0, 0] = 2.0
    label = torch.zeros(1, 8, 9, dtype=torch.long)
    label[0, 0, :4] = 1
    label[0, 7, 1:] = 255
    per_pixel = torch.nn.functional.cross_entropy(logits, label, ignore_index=255, reduction="none")
    hard, easy = per_pixel[label == 1], per_pixel[label == 0]
    assert pixel_cross_entropy(logits, label) == pytest.approx(per_pixel[label != 255].mean().item())
    assert pixel_cross_entropy(logits, label, 0.7) == pytest.approx(hard.mean().item())
    # Fewer hard pixels than 1/16 of the labelled ones (64 // 16 = 4): the hardest four, easy ones included.
    label[0, 0, 2:4] = 0
    two_hard = pixel_cross_entropy(logits, label, 0.7)
    assert two_hard == pytest.approx((2 * hard[0] + 2 * easy[0]).item() / 4)
    # The gradient reaches only the kept pixels; nothing labelled gives a zero loss that still backpropagates.
    logits.requires_grad_(True)
    pixel_cross_entropy(logits, label, 0.7).backward()
    assert (logits.grad.abs().sum(dim=1) > 0).sum() == 4
    empty = pixel_cross_entropy(logits, torch.full_like(label, 255), 0.7)
    assert empty.item() == 0.0 and empty.requires_grad


def test_rare_class_sampling_draws_the_images_of_rare_classes_more_often():
    from segdemo.labels import BUILDING, MOTORCYCLE, ROAD
    from train.data import RCS_MIN_SHARE, EpochSampler, rare_class_weights

    # Ten images of 1,000 labelled pixels: road and building everywhere, a motorcycle in images 8 and 9, a
    # sliver of one (below RCS_MIN_SHARE) in image 7, and image 6 holding nothing labelled.
    counts = torch.zeros(10, 19, dtype=torch.int64)
    counts[:, ROAD], counts[:, BUILDING] = 700, 300
    counts[8:, ROAD], counts[8:, MOTORCYCLE] = 650, 50
    counts[7, ROAD], counts[7, MOTORCYCLE] = 699, 1
    assert 1 / 1000 < RCS_MIN_SHARE < 50 / 1000
    counts[6] = 0
    images, classes = rare_class_weights(counts, 0.01)
    assert images.sum().item() == pytest.approx(1.0) and classes.sum().item() == pytest.approx(1.0)
    assert classes[MOTORCYCLE] > classes[BUILDING] > classes[ROAD] > 0
    assert classes[classes > 0].numel() == 3  # classes no image has get nothing
    assert images[6] == 0  # nothing labelled: never drawn
    assert images[8] == images[9] > 10 * images[7]  # the sliver does not count image 7 as a motorcycle's
    # A high temperature draws the three classes alike, so the images get the weight of the ones they hold.
    flat_images, flat_classes = rare_class_weights(counts, 1e6)
    assert flat_classes[[ROAD, BUILDING, MOTORCYCLE]] == pytest.approx(torch.full((3,), 1 / 3).double())
    assert flat_images[8] > flat_images[0]
    with pytest.raises(TrainingError, match="no image has a labelled class"):
        rare_class_weights(torch.zeros(4, 19, dtype=torch.int64), 0.01)

    # The sampler draws by those weights, with replacement, the same order for the same (seed, epoch) and
    # the rest of it when started mid-epoch; each of two ranks takes every other draw.
    sampler = EpochSampler(10, 2, seed=5, weights=images)
    epoch = list(sampler)
    assert len(epoch) == 10 and 6 not in epoch and epoch == list(sampler)
    assert sum(i in (8, 9) for i in epoch) > 2  # a uniform draw would give them 2 of 10
    sampler.set_epoch(0, skip_steps=2)
    assert list(sampler) == epoch[4:]
    sampler.set_epoch(1)
    assert list(sampler) != epoch
    ranks = [list(EpochSampler(10, 1, seed=5, rank=r, world=2, weights=images)) for r in (0, 1)]
    assert [i for pair in zip(*ranks, strict=True) for i in pair] == epoch
    with pytest.raises(ValueError, match="one value per image"):
        EpochSampler(10, 2, seed=0, weights=images[:5])


def test_rare_class_sampling_trains_and_counts_the_labels_it_trains_at(tiny_data, tmp_path, capsys):
    from train.data import class_pixel_counts

    gta5, cityscapes = tiny_data / "gta5", tiny_data / "cityscapes"
    config = tiny_config("bisenet_cityscapes", "rcs_temperature=0.01")
    data = build_data(config, gta5, cityscapes)
    counts = class_pixel_counts(data.labeled)
    in_memory = build_data(config.replace(in_memory=True), gta5, cityscapes)
    assert torch.equal(class_pixel_counts(in_memory.labeled), counts)
    # three ranks count every third image each; their tables add up to the whole one
    shares = [class_pixel_counts(data.labeled, rank=r, world=3) for r in range(3)]
    assert torch.equal(sum(shares), counts) and shares[1][0].sum() == 0
    for index in range(len(data.labeled)):
        label = data.labeled[index][1]
        assert counts[index].sum() == (label != 255).sum()  # every labelled pixel, at the training size
    trainer = Trainer(config, data, tmp_path / "rcs", device="cpu", progress=False)
    assert trainer.labeled_weights is not None and trainer.labeled_weights.sum().item() == pytest.approx(1.0)
    assert "rare class sampling: classes drawn most often" in capsys.readouterr().out
    assert read_metadata(trainer.run())["config"]["rcs_temperature"] == 0.01


@pytest.mark.parametrize("variant", list(variants()))
def test_every_variant_trains_a_few_steps(tiny_data, tmp_path, variant):
    config = tiny_config(variant)
    gta5, cityscapes = tiny_data / "gta5", tiny_data / "cityscapes"
    data = build_data(config, gta5, cityscapes)
    trainer = Trainer(
        config,
        data,
        tmp_path / variant,
        device="cpu",
        progress=False,
        train_data_info=describe_data(config, gta5, cityscapes),
    )
    before = [p.detach().clone() for p in trainer.model.parameters() if p.requires_grad]
    trainer.run()
    after = [p.detach() for p in trainer.model.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(before, after))  # it learned something
    model, meta = load_model(tmp_path / variant)
    assert meta["variant"] == variant and meta["steps"] == 2
    assert meta["train_data"]["kind"] == "procedural"
    assert meta["metrics"]["eval_data"].startswith("procedural")
    assert 0.0 <= meta["metrics"]["miou"] <= 100.0 and len(meta["metrics"]["iou"]) == 19
    assert (tmp_path / variant / "tb").is_dir()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 64)).shape == (1, 19, 32, 64)


def test_resume_continues_the_same_schedule(tiny_data, tmp_path):
    gta5, cityscapes = tiny_data / "gta5", tiny_data / "cityscapes"
    config = tiny_config("bisenet_gta5_dacs", "iterations=4", "checkpoint_every=1")

    straight = Trainer(
        config, build_data(config, gta5, cityscapes), tmp_path / "a", device="cpu", progress=False
    )
    straight.run()

    first = Trainer(
        config, build_data(config, gta5, cityscapes), tmp_path / "b", device="cpu", progress=False
    )
    first.run(stop_after=2)
    assert read_progress(tmp_path / "b")[1]["step"] == 2
    assert not (tmp_path / "b" / "model.safetensors").exists()  # not finished: no final model yet
    resumed = Trainer(
        config,
        build_data(config, gta5, cityscapes),
        tmp_path / "b",
        device="cpu",
        resume=True,
        progress=False,
    )
    assert resumed.step == 2
    resumed.run()
    assert resumed.step == straight.step == 4
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert read_metadata(tmp_path / "a")["metrics"] == read_metadata(tmp_path / "b")["metrics"]


def test_resume_refuses_a_changed_config(tiny_data, tmp_path):
    gta5, cityscapes = tiny_data / "gta5", tiny_data / "cityscapes"
    config = tiny_config("bisenet_gta5")
    Trainer(config, build_data(config, gta5, cityscapes), tmp_path, device="cpu", progress=False).run(
        stop_after=1
    )
    changed = config.replace(lr=0.5)
    with pytest.raises(Exception, match="lr"):
        Trainer(
            changed,
            build_data(changed, gta5, cityscapes),
            tmp_path,
            device="cpu",
            resume=True,
            progress=False,
        )


def test_cli_run_evaluate_and_errors(tiny_data, tmp_path, capsys):
    gta5, cityscapes = str(tiny_data / "gta5"), str(tiny_data / "cityscapes")
    out = tmp_path / "ck"
    code = main(
        [
            "run",
            "bisenet_gta5",
            "--gta5",
            gta5,
            "--cityscapes",
            cityscapes,
            "--out",
            str(out),
            "--device",
            "cpu",
            *TINY,
            "iterations=1",
        ]
    )
    assert code == 0 and (out / "model.safetensors").is_file()
    capsys.readouterr()
    assert main(["evaluate", str(out), "--cityscapes", cityscapes, "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "| bisenet_gta5 | procedural cityscapes-layout val, 4 images |" in printed
    assert "| bisenet_gta5 (report) | real cityscapes val (the report, P100) | 15.12 |" in printed
    assert "not on Cityscapes" in printed
    # Missing data, unknown variant, bad override: exit code 2 and one clear line.
    assert main(["run", "bisenet_gta5", "--cityscapes", cityscapes, "--out", str(tmp_path / "x")]) == 2
    assert "pass --gta5 DIR" in capsys.readouterr().err
    assert (
        main(["run", "unet", "--gta5", gta5, "--cityscapes", cityscapes, "--out", str(tmp_path / "x")]) == 2
    )
    assert "unknown variant 'unet'" in capsys.readouterr().err
    assert (
        main(
            [
                "run",
                "bisenet_gta5",
                "--gta5",
                str(tmp_path / "nowhere"),
                "--cityscapes",
                cityscapes,
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "nowhere" in capsys.readouterr().err


def test_teacher_scores_a_checkpoints_pseudo_labels_and_refuses_bad_input(tiny_data, tmp_path, capsys):
    cityscapes = str(tiny_data / "cityscapes")
    out = tmp_path / "ck"
    run = ["run", "bisenet_gta5", "--gta5", str(tiny_data / "gta5"), "--cityscapes", cityscapes]
    assert main([*run, "--out", str(out), "--device", "cpu", *TINY, "iterations=1"]) == 0
    capsys.readouterr()
    teacher = ["teacher", str(out), "--cityscapes", cityscapes, "--batch-size", "4", "--device", "cpu"]
    assert main(teacher) == 0
    printed = capsys.readouterr().out
    assert "as DACS's teacher on 8 train images" in printed  # 256 asked, the tiny tree has 8
    assert "(procedural data, not Cityscapes)" in printed and "each batch's own statistics" in printed
    rows = re.findall(
        r"^\| (0\.5|0\.9|0\.968 \(DACS\)) \| ([\d.]+) \| ([\d.]+|n/a) \|$", printed, re.MULTILINE
    )
    assert [r[0] for r in rows] == ["0.5", "0.9", "0.968 (DACS)"]
    covered = [float(r[1]) for r in rows]
    assert all(0 <= c <= 100 for c in covered) and covered == sorted(covered, reverse=True)
    assert re.search(r"^\| road \| [\d.]+ \|", printed, re.MULTILINE)  # a class the tiny scenes hold
    assert main([*teacher, "--statistics", "running", "--images", "4"]) == 0
    assert "on 4 train images" in capsys.readouterr().out
    # One clear line and exit 2: a batch too small for batch statistics, no data, no checkpoint.
    assert main([*teacher, "--images", "1", "--batch-size", "1"]) == 2
    assert "at least 2 images" in capsys.readouterr().err
    assert main(["teacher", str(out), "--cityscapes", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["teacher", str(tmp_path / "none"), "--cityscapes", cityscapes]) == 2
    assert "none" in capsys.readouterr().err


def test_mbt_ensemble_evaluation(tiny_data, tmp_path, capsys):
    gta5, cityscapes = tiny_data / "gta5", tiny_data / "cityscapes"
    paths = []
    for beta in ("0.01", "0.05"):
        config = tiny_config("bisenet_gta5_fda", f"fda_beta={beta}", "iterations=1")
        out = tmp_path / beta
        Trainer(config, build_data(config, gta5, cityscapes), out, device="cpu", progress=False).run()
        paths.append(str(out))
    assert main(["evaluate", *paths, "--cityscapes", str(cityscapes), "--device", "cpu"]) == 0
    assert "MBT(bisenet_gta5_fda, bisenet_gta5_fda)" in capsys.readouterr().out


def test_profile_cli(capsys):
    assert main(["profile", "bisenet", "--size", "64x128", "--runs", "2", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert "| bisenet | 1x3x64x128 | cpu" in out and "12.07M" in out and "| bisenet (report) |" in out


def test_torchrun_two_cpu_processes(tiny_data, tmp_path):
    """DistributedDataParallel with the gloo backend: two ranks, one writer; rare class sampling counts the
    labels between the ranks."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29531",
        "-m",
        "train",
        "run",
        "bisenet_gta5",
        "--gta5",
        str(tiny_data / "gta5"),
        "--cityscapes",
        str(tiny_data / "cityscapes"),
        "--out",
        str(out),
        "--device",
        "cpu",
        *TINY,
        "iterations=2",
        "rcs_temperature=0.01",
    ]
    result = subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    meta = read_metadata(out)
    assert meta["steps"] == 2 and meta["config"]["batch_size"] == 2
    assert result.stdout.count("checkpoint:") == 1  # only rank 0 writes and reports
    assert result.stdout.count("rare class sampling:") == 1 and "8 of 8 images can be drawn" in result.stdout


def test_init_from_starts_both_student_and_teacher_from_a_checkpoint(tiny_data, tmp_path):
    gta5, cityscapes = tiny_data / "gta5", tiny_data / "cityscapes"
    source = tiny_config("bisenet_gta5")
    Trainer(
        source, build_data(source, gta5, cityscapes), tmp_path / "src", device="cpu", progress=False
    ).run()
    kept, _ = load_model(tmp_path / "src")

    config = tiny_config("bisenet_gta5_dacs", f"init_from={tmp_path / 'src'}")
    trainer = Trainer(
        config, build_data(config, gta5, cityscapes), tmp_path / "dacs", device="cpu", progress=False
    )
    for name, value in kept.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[name], value), name
        assert torch.equal(trainer.teacher.state_dict()[name], value), name
    trainer.run()
    assert read_metadata(tmp_path / "dacs")["config"]["init_from"] == str(tmp_path / "src")

    for bad, message in (
        (tiny_config("deeplabv2_cityscapes", f"init_from={tmp_path / 'src'}"), "holds a bisenet"),
        (tiny_config("bisenet_gta5", f"init_from={tmp_path / 'nothing'}"), "init_from="),
    ):
        with pytest.raises(TrainingError, match=message):
            Trainer(bad, build_data(bad, gta5, cityscapes), tmp_path / "bad", device="cpu", progress=False)


@pytest.fixture
def small_batches(monkeypatch):
    """The demo's profiles with batches of 4: the tiny data sets hold 8 labeled images."""
    import dataclasses

    from segdemo.profiles import DEMO_PROFILES

    for name, profile in DEMO_PROFILES.items():
        monkeypatch.setitem(DEMO_PROFILES, name, dataclasses.replace(profile, batch_size=4))


def test_demo_trains_what_a_variant_starts_from_and_reuses_only_matching_checkpoints(
    tiny_data, tmp_path, capsys, small_batches
):
    from segdemo.profiles import DEFAULT_PROFILE, DEMO_PROFILES
    from train.demo import DEMO_INIT, run_demo

    threads = torch.get_num_threads()
    out = tmp_path / "ck"
    try:
        rows = run_demo(tiny_data, out, only=["bisenet_gta5_dacs"], scale=0.005, size=(64, 32))
        printed = capsys.readouterr().out
        # DACS starts from the Aug1+2 checkpoint, so the demo trains that first.
        assert [row["variant"] for row in rows] == [DEMO_INIT["bisenet_gta5_dacs"], "bisenet_gta5_dacs"]
        assert "PROCEDURAL" in printed
        meta = read_metadata(out / "bisenet_gta5_dacs")
        assert meta["config"]["init_from"] == str(out / "bisenet_gta5_aug12")
        steps = max(1, round(DEMO_PROFILES[DEFAULT_PROFILE].steps["bisenet_gta5_dacs"] * 0.005))
        assert meta["steps"] == steps and meta["input_size"] == [32, 64]

        run_demo(tiny_data, out, only=["bisenet_gta5_dacs"], scale=0.005, size=(64, 32))
        assert capsys.readouterr().out.count("already trained, skipping") == 2
        # Other settings: trained again, not mistaken for the kept checkpoints.
        run_demo(tiny_data, out, only=["bisenet_gta5_aug12"], scale=0.005, size=(64, 40))
        assert "already trained" not in capsys.readouterr().out
        assert read_metadata(out / "bisenet_gta5_aug12")["input_size"] == [40, 64]
        # A checkpoint of an older generator's scenes: trained again on today's.
        meta = read_metadata(out / "bisenet_gta5_aug12")
        assert meta["train_data"]["generator"] == synthetic.GENERATOR_VERSION
        write_metadata(
            out / "bisenet_gta5_aug12", {**meta, "train_data": {**meta["train_data"], "generator": 1}}
        )
        run_demo(tiny_data, out, only=["bisenet_gta5_aug12"], scale=0.005, size=(64, 40))
        assert "already trained" not in capsys.readouterr().out
        assert (
            read_metadata(out / "bisenet_gta5_aug12")["train_data"]["generator"]
            == synthetic.GENERATOR_VERSION
        )
    finally:
        torch.set_num_threads(threads)


def test_demo_set_changes_the_named_variants_only_and_refuses_bad_fields(
    tiny_data, tmp_path, capsys, small_batches
):
    from train.__main__ import main
    from train.demo import demo_config

    out = tmp_path / "ck"
    args = ["demo", "--data", str(tiny_data), "--out", str(out), "--scale", "0.005", "--size", "32x64"]
    threads = torch.get_num_threads()
    try:
        assert main([*args, "--only", "bisenet_gta5_dacs", "--set", "lr=5e-4", "dacs_threshold=0.5"]) == 0
        assert "lr=5e-4 dacs_threshold=0.5 for bisenet_gta5_dacs" in capsys.readouterr().out
        dacs = read_metadata(out / "bisenet_gta5_dacs")["config"]
        assert dacs["lr"] == 5e-4 and dacs["dacs_threshold"] == 0.5
        start = read_metadata(out / "bisenet_gta5_aug12")["config"]  # what DACS starts from: the demo's
        assert start["lr"] == demo_config("bisenet_gta5_aug12").lr != 5e-4
        # The demo's own settings again: the kept start is reused, the changed DACS is trained afresh.
        assert main([*args, "--only", "bisenet_gta5_dacs"]) == 0
        printed = capsys.readouterr().out
        assert printed.count("already trained, skipping") == 1 and "bisenet_gta5_dacs: 1 steps" in printed
        assert read_metadata(out / "bisenet_gta5_dacs")["config"]["lr"] == demo_config("bisenet_gta5_dacs").lr
        # Refused before anything is trained or written.
        for bad, message in (("colour=red", "bad override"), ("lr=fast", "bad value for lr")):
            assert main([*args, "--out", str(tmp_path / "bad"), "--set", bad]) == 2
            assert message in capsys.readouterr().err
            assert not (tmp_path / "bad").exists()
    finally:
        torch.set_num_threads(threads)


def test_demo_seeds_train_into_their_own_folders_and_print_mean_and_spread(
    tiny_data, tmp_path, capsys, small_batches
):
    from segdemo.results import seed_groups
    from train.demo import demo_folder, run_demo

    threads = torch.get_num_threads()
    out = tmp_path / "ck"
    try:
        rows = run_demo(tiny_data, out, only=["bisenet_gta5"], scale=0.005, size=(64, 32), seeds=2, threads=1)
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert [(row["variant"], row["seed"]) for row in rows] == [("bisenet_gta5", 0), ("bisenet_gta5", 1)]
    # Seed 0 where the app looks first, seed 1 beside it: neither replaces the other.
    assert demo_folder(out, seed=0) == out and demo_folder(out, seed=1) == out / "seed1"
    assert demo_folder(out, "full", 2) == out / "full" / "seed2"
    assert read_metadata(out / "bisenet_gta5")["config"]["seed"] == 0
    assert read_metadata(out / "seed1" / "bisenet_gta5")["config"]["seed"] == 1
    (group,) = seed_groups(rows)
    assert group["seeds"] == [0, 1] and group["input_size"] == (32, 64)
    mean, std = group["miou"]
    assert mean == pytest.approx((rows[0]["miou"] + rows[1]["miou"]) / 2)
    assert "Mean ± std over the seeds" in printed and f"{mean:.2f} ± {std:.2f}" in printed
    # After seed 0, the training time left is estimated from this machine's pace; none is left at the end.
    assert re.search(
        r"bisenet_gta5: mIoU [\d.]+ in \d+ s; training (about \d+ min|under a minute) left", printed
    )
    assert json.loads((out / PROGRESS_FILE).read_text())["seconds_left"] == 0


def test_the_time_left_comes_from_this_machines_pace_and_each_variants_cost():
    from segdemo.profiles import describe_time_left, seconds_left

    cost = {"dacs": 2.0}
    assert seconds_left(cost, [], None, [("a", 100)]) is None  # nothing timed yet
    assert seconds_left(cost, [], ("a", 100, 0, 10, 5.0), [("a", 100)]) is None
    # Half-way through a run at 0.1 s per image: 5 s of it left, then a plain variant at the same pace and a
    # DACS run at twice it.
    current = ("a", 100, 5, 10, 5.0)
    assert seconds_left(cost, [], current, [("b", 100), ("dacs", 100)]) == pytest.approx(5 + 10 + 20)
    # A variant timed before costs what it cost then, whatever its relative cost says.
    finished = [("a", 100, 10.0), ("dacs", 100, 50.0)]
    assert seconds_left(cost, finished, None, [("dacs", 200)]) == pytest.approx(100)
    assert seconds_left(cost, finished, None, []) == 0
    assert describe_time_left(719) == "about 12 min left" and describe_time_left(30) == "under a minute left"
    assert describe_time_left(None) == describe_time_left("soon") == describe_time_left(-5) == ""


def test_demo_generates_only_the_data_each_variant_needs_before_it(
    tmp_path, capsys, small_batches, monkeypatch
):
    from train import demo

    monkeypatch.setattr(
        demo, "DEMO_DATA", {"n_source": 8, "n_target_train": 8, "n_target_val": 4, "size": (64, 32)}
    )
    data, out = tmp_path / "data", tmp_path / "ck"
    threads = torch.get_num_threads()
    try:
        # Source only needs no target train images: the first checkpoint does not wait for them.
        demo.run_demo(data, out, only=["bisenet_gta5"], scale=0.005, size=(64, 32), threads=1)
        assert "generating source, target_val in" in capsys.readouterr().out
        assert synthetic.is_complete(data, ["source", "target_val"]) and not synthetic.is_complete(data)
        demo.run_demo(data, out, only=["bisenet_cityscapes"], scale=0.005, size=(64, 32), threads=1)
        assert "generating target_train in" in capsys.readouterr().out  # the val images are kept
        assert synthetic.is_complete(data)
    finally:
        torch.set_num_threads(threads)
    assert json.loads((out / PROGRESS_FILE).read_text())["state"] == "done"


def test_demo_profiles_and_what_the_demo_refuses(tiny_data, tmp_path, monkeypatch):
    from segdemo import profiles
    from train import demo

    default = demo.demo_config("bisenet_gta5")
    full = demo.demo_config("bisenet_gta5", profile="full")
    assert default.gta5_size == profiles.DEMO_SIZE == (128, 64) and full.gta5_size == (256, 128)
    assert full.iterations == default.iterations  # the same schedule, four times the pixels
    # ... except for the two target-trained networks, which get longer to learn the thin classes
    for name in ("bisenet_cityscapes", "deeplabv2_cityscapes"):
        assert demo.demo_config(name, profile="full").iterations > demo.demo_config(name).iterations
    # the full profile's loss mines the hard pixels, for every variant; the default's is plain cross-entropy
    assert all(
        demo.demo_config(name, profile="full").ohem_threshold == 0.7 for name in profiles.DEMO_VARIANTS
    )
    assert all(demo.demo_config(name).ohem_threshold == 0.0 for name in profiles.DEMO_VARIANTS)
    # its target-trained networks draw their images by rare class sampling; no other run does
    assert {
        name for name in profiles.DEMO_VARIANTS if demo.demo_config(name, profile="full").rcs_temperature > 0
    } == {"bisenet_cityscapes", "deeplabv2_cityscapes"}
    assert all(demo.demo_config(name).rcs_temperature == 0.0 for name in profiles.DEMO_VARIANTS)
    assert default.in_memory and default.channels_last and default.batch_size == 16
    assert not default.amp  # float32 unless bfloat16 is asked for (run_demo asks where the CPU has it)
    bf16 = demo.demo_config("bisenet_gta5", bfloat16=True)
    assert bf16.amp and bf16.amp_dtype == "bf16"
    assert set(profiles.DEMO_PROFILES) == {"default", "full"}
    assert all(set(p.steps) == set(profiles.DEMO_VARIANTS) for p in profiles.DEMO_PROFILES.values())

    monkeypatch.setattr(demo, "native_bfloat16", lambda: False)
    with pytest.raises(ValueError, match="no bfloat16 instructions"):
        demo.run_demo(tiny_data, tmp_path / "ck", only=["bisenet_gta5"], bfloat16=True)
    with pytest.raises(ValueError, match="unknown profile"):
        demo.run_demo(tiny_data, tmp_path / "ck", profile="huge")
    with pytest.raises(ValueError, match="seeds"):
        demo.run_demo(tiny_data, tmp_path / "ck", seeds=0)
    with pytest.raises(ValueError, match="threads"):
        demo.run_demo(tiny_data, tmp_path / "ck", threads=0)
    assert not (tmp_path / "ck").exists()  # refused before anything was written


def test_demo_trains_in_bfloat16_by_default_only_where_it_is_faster(
    tiny_data, tmp_path, monkeypatch, small_batches, capsys
):
    from train import demo

    threads = torch.get_num_threads()

    def trained_in_bfloat16(out, **kwargs) -> bool:
        demo.run_demo(tiny_data, out, only=["bisenet_gta5"], scale=0.005, size=(64, 32), threads=1, **kwargs)
        saved = read_metadata(out / "bisenet_gta5")["config"]
        assert saved["amp_dtype"] == ("bf16" if saved["amp"] else "auto")
        return saved["amp"]

    try:
        monkeypatch.setattr(demo, "native_bfloat16", lambda: True)
        for faster in (True, False):
            monkeypatch.setattr(demo, "bfloat16_trains_faster", lambda faster=faster: faster)
            assert trained_in_bfloat16(tmp_path / str(faster)) is faster
            # the instructions are there but slower: the banner says why it trains in float32
            assert ("bfloat16 trains slower on this CPU" in capsys.readouterr().out) is not faster
        # Asked for explicitly: bfloat16 where the CPU has the instructions even if it is not faster there
        # (an Intel Xeon with AVX512-BF16 and no AMX), float32 also where bfloat16 is faster.
        assert trained_in_bfloat16(tmp_path / "asked", bfloat16=True)
        monkeypatch.setattr(demo, "bfloat16_trains_faster", lambda: True)
        assert not trained_in_bfloat16(tmp_path / "f32", bfloat16=False)
    finally:
        torch.set_num_threads(threads)
    from train.__main__ import build_parser

    # The command line: no flag leaves the choice to the CPU, --no-bfloat16 asks for float32.
    parse = build_parser().parse_args
    assert [parse(["demo", *flag]).bfloat16 for flag in ([], ["--bfloat16"], ["--no-bfloat16"])] == [
        None,
        True,
        False,
    ]


def test_demo_threads_leave_busy_cores_alone(monkeypatch):
    from train import demo

    busy = demo.busy_cores(0.05)  # measured on this machine: between none and every CPU it has
    assert 0.0 <= busy <= (os.cpu_count() or 1) + 0.01
    monkeypatch.setattr(demo, "available_cores", lambda: 2)
    for load, threads in ((0.0, 2), (0.4, 2), (0.9, 1), (1.6, 1), (7.0, 1)):
        monkeypatch.setattr(demo, "busy_cores", lambda load=load: load)
        assert demo.demo_threads() == threads, load
    monkeypatch.setattr(demo, "available_cores", lambda: 16)
    monkeypatch.setattr(demo, "busy_cores", lambda: 3.2)
    assert demo.demo_threads() == 13


def test_in_memory_data_hand_over_the_same_batches(tiny_data, tmp_path):
    from train.data import Batches, InMemory

    gta5, cityscapes = tiny_data / "gta5", tiny_data / "cityscapes"
    config = get_variant("bisenet_gta5").replace(gta5_size=(64, 32), cityscapes_size=(64, 32), batch_size=4)
    from_disk = build_data(config.replace(num_workers=0), gta5, cityscapes)
    in_memory = build_data(config.replace(num_workers=0, in_memory=True), gta5, cityscapes)
    assert isinstance(in_memory.labeled, InMemory) and not isinstance(in_memory.val, InMemory)
    assert in_memory.labeled.mean == from_disk.labeled.mean  # the wrapped data set's attributes
    disk_batches = Batches(from_disk.labeled, config, 0, 3, 0, 1)  # from step 3: across an epoch's end
    memory_batches = Batches(in_memory.labeled, config, 0, 3, 0, 1)
    for _ in range(3):
        for a, b in zip(next(disk_batches), next(memory_batches), strict=True):
            assert torch.equal(a, b)
    with pytest.raises(TrainingError, match="would take more than"):
        InMemory(from_disk.labeled, max_bytes=10_000)  # 8 images of 64x32 take 65 KB


def test_evaluation_at_the_labels_full_resolution_and_the_recorded_protocol(tiny_data, tmp_path, capsys):
    from segdemo.datasets import Cityscapes
    from segdemo.evaluation import evaluate

    gta5, cityscapes = str(tiny_data / "gta5"), str(tiny_data / "cityscapes")
    out = tmp_path / "ck"
    # Trained and scored at 32x16 while the val labels are 64x32: full resolution scores every native pixel.
    assert (
        main(
            [
                "run",
                "bisenet_gta5",
                "--gta5",
                gta5,
                "--cityscapes",
                cityscapes,
                "--out",
                str(out),
                "--device",
                "cpu",
                *TINY,
                "gta5_size=32x16",
                "cityscapes_size=32x16",
                "iterations=1",
                "eval_full_resolution=true",
            ]
        )
        == 0
    )
    metrics = read_metadata(out)["metrics"]
    assert metrics["eval_kind"] == "procedural" and metrics["protocol"]["input_size"] == [32, 16]
    assert metrics["protocol"]["labels"] == "native resolution, predictions upsampled"

    model, meta = load_model(out)
    native = Cityscapes(cityscapes, "val", size=(32, 16), label_size="native", as_uint8=True)
    counted = int(evaluate(model, native, "cpu", mean=meta["mean"], std=meta["std"]).matrix.sum())
    labelled = sum(int((native.load_raw(i)[1] != 255).sum()) for i in range(len(native)))
    assert counted == labelled and labelled > 4 * 32 * 16  # every native labelled pixel, once

    capsys.readouterr()
    assert main(["evaluate", str(out), "--cityscapes", cityscapes, "--device", "cpu"]) == 0
    assert read_metadata(out)["metrics"]["protocol"]["labels"] == "resized to the input size (nearest)"
    assert (
        main(["evaluate", str(out), "--cityscapes", cityscapes, "--device", "cpu", "--full-resolution"]) == 0
    )
    assert read_metadata(out)["metrics"]["protocol"]["labels"].startswith("native")


def test_evaluate_adapt_bn_scores_the_adapted_network_and_writes_nothing(tiny_data, tmp_path, capsys):
    gta5, cityscapes = str(tiny_data / "gta5"), str(tiny_data / "cityscapes")
    out = tmp_path / "ck"
    run = ["run", "bisenet_gta5", "--gta5", gta5, "--cityscapes", cityscapes, "--out", str(out)]
    assert main([*run, "--device", "cpu", *TINY, "iterations=2"]) == 0
    evaluate = ["evaluate", str(out), "--cityscapes", cityscapes, "--device", "cpu"]
    capsys.readouterr()
    assert main(evaluate) == 0
    plain = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| bisenet_gta5 |"))
    written = read_metadata(out)["metrics"]

    assert main([*evaluate, "--adapt-bn", "8"]) == 0
    printed = capsys.readouterr().out
    row = next(line for line in printed.splitlines() if line.startswith("| bisenet_gta5 + AdaBN |"))
    assert "procedural cityscapes-layout val, 4 images" in row
    assert "recomputed on the first 8 unlabelled train images" in printed
    assert "never learnt statistics" not in printed  # BiSeNet learns its BatchNorm statistics
    assert read_metadata(out)["metrics"] == written  # the checkpoint's own scores stay
    # The adapted network is another network: its scores on the target val images are not the plain ones.
    assert row.split("|")[3:] != plain.split("|")[3:]
    # An MBT ensemble is adapted in one pass over the images, each network on its own statistics: two copies
    # of one checkpoint adapt alike, so the ensemble scores as the one adapted network does.
    assert main([*evaluate[:2], str(out), *evaluate[2:], "--adapt-bn", "8"]) == 0
    mbt = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| MBT("))
    assert "+ AdaBN |" in mbt and mbt.split("|")[3:] == row.split("|")[3:]

    for extra, message in (
        (["--adapt-bn", "1"], "--adapt-bn needs at least 2 images"),
        (["--adapt-bn", "4", "--cityscapes", str(tmp_path / "nowhere")], "nowhere"),
    ):
        args = [*evaluate, *extra] if "--cityscapes" not in extra else ["evaluate", str(out), *extra]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert main(["evaluate", str(out), "--procedural", "2", "--adapt-bn", "4", "--device", "cpu"]) == 2
    assert "--adapt-bn goes with --cityscapes" in capsys.readouterr().err


def test_cache_cli_fills_what_a_run_then_reads(tiny_data, tmp_path, capsys, monkeypatch):
    from segdemo import datasets

    gta5, cityscapes = str(tiny_data / "gta5"), str(tiny_data / "cityscapes")
    cache = tmp_path / "cache"
    assert (
        main(
            [
                "cache",
                "bisenet_gta5_dacs",
                "--gta5",
                gta5,
                "--cityscapes",
                cityscapes,
                "--cache",
                str(cache),
                "--workers",
                "0",
                *TINY,
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "labeled: 8 samples" in printed and "target: 8 samples" in printed and "val: 4 samples" in printed
    assert len(list(cache.glob("*/*.npz"))) == 20

    def no_decoding(path):
        raise AssertionError(f"decoded {path}: the cache was not used")

    monkeypatch.setattr(datasets, "_read_image", no_decoding)
    assert (
        main(
            [
                "run",
                "bisenet_gta5_dacs",
                "--gta5",
                gta5,
                "--cityscapes",
                cityscapes,
                "--out",
                str(tmp_path / "ck"),
                "--device",
                "cpu",
                *TINY,
                "iterations=2",
                f"cache_dir={cache}",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "cache",
                "bisenet_gta5",
                "--gta5",
                gta5,
                "--cityscapes",
                cityscapes,
                "--cache",
                str(cache),
                "--workers",
                "0",
                *TINY,
            ]
        )
        == 0
    )  # everything already there: nothing decoded
    assert "0 new entries" in capsys.readouterr().out


def test_bad_out_folders_and_devices_get_one_line_and_exit_2(tiny_data, tmp_path, capsys):
    gta5, cityscapes = str(tiny_data / "gta5"), str(tiny_data / "cityscapes")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    cases = [
        (["--out", str(a_file)], "is a file, not a folder"),
        (["--out", "/sys/segdemo-run"], "cannot write there"),  # sysfs: not even root creates folders there
        (["--out", str(tmp_path / "ok"), "--device", "bogus"], "unknown device 'bogus'"),
    ]
    if not torch.cuda.is_available():
        cases.append((["--out", str(tmp_path / "ok"), "--device", "cuda"], "no CUDA GPU"))
    for extra, message in cases:
        code = main(
            ["run", "bisenet_gta5", "--gta5", gta5, "--cityscapes", cityscapes, *TINY, "iterations=1", *extra]
        )
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("error: ") and message in err, err
        assert "\n" not in err and "Traceback" not in err
    assert a_file.read_text() == "mine" and not (tmp_path / "ok" / "model.safetensors").exists()
    assert main(["evaluate", str(tmp_path), "--cityscapes", cityscapes, "--device", "bogus"]) == 2
    assert "unknown device 'bogus'" in capsys.readouterr().err
    assert main(["profile", "bisenet", "--size", "64x128", "--device", "bogus"]) == 2
    assert "unknown device 'bogus'" in capsys.readouterr().err
