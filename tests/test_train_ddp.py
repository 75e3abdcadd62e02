"""Training under torch.distributed, as torchrun runs it: two CPU processes with the gloo backend.

Each method (supervised, FDA with its entropy loss, DACS) trains, stops half-way and resumes to the same
result
as an uninterrupted run; ranks draw their own augmentations; evaluation is shared out and summed; DeepLabV2's
frozen BatchNorm stays frozen with sync_bn; SIGTERM to one rank saves once and ends every rank.

The processes are forked from a forkserver that has imported torch and ``train`` once (see
tests/test_train_reliability.py for why).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY

WORLD = 2


@pytest.fixture(scope="module")
def context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(
        [
            "torch",
            "torch.distributed",
            "torch.utils.tensorboard",
            "tqdm",
            "train.__main__",
            "train.engine",
            "segdemo.synthetic",
            __name__,
        ]
    )
    return context


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_rank(rank: int, port: int, log: str) -> None:
    """The environment torchrun gives a worker, output to ``log``, one thread."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    torch.set_num_threads(1)


def _methods_worker(rank: int, port: int, data: str, out: str, log: str) -> None:
    """Each method: an uninterrupted run, and a run stopped after 1 of 2 steps then resumed; rank draws."""
    _as_rank(rank, port, log)
    from segdemo.evaluation import evaluate
    from segdemo.labels import IGNORE_INDEX
    from train.config import apply_overrides, get_variant
    from train.data import build_data
    from train.distributed import init_distributed
    from train.engine import Trainer

    init_distributed()
    results = {}
    for variant, extra in (
        ("bisenet_gta5_aug12", []),
        ("bisenet_gta5_fda", ["fda_entropy_weight=0.005"]),
        ("bisenet_gta5_dacs", []),
    ):
        config = apply_overrides(get_variant(variant), [*TINY, "iterations=2", *extra])
        data_ = build_data(config, Path(data) / "gta5", Path(data) / "cityscapes")
        Trainer(config, data_, Path(out) / variant / "straight", device="cpu", progress=False).run()
        Trainer(config, data_, Path(out) / variant / "resumed", device="cpu", progress=False).run(
            stop_after=1
        )
        resumed = Trainer(
            config, data_, Path(out) / variant / "resumed", device="cpu", resume=True, progress=False
        )
        step_after_load = resumed.step
        resumed.run()
        # The same images on both ranks: what each rank's augmentation does to them.
        images = torch.linspace(0, 1, 2 * 3 * 32 * 64).view(2, 3, 32, 64)
        labels = torch.zeros(2, 32, 64, dtype=torch.long)
        augmented = resumed.augment(images, labels, resumed._generator(1))[0]
        matrix = evaluate(resumed.model, data_.val, "cpu", mean=data_.labeled.mean, std=data_.labeled.std)
        results[variant] = {
            "step_after_load": step_after_load,
            "augmented_sum": float(augmented.sum()),
            "eval_pixels": int(matrix.matrix.sum()),
            # The procedural val labels ignore the camera car's bonnet: count what is labelled.
            "labelled_pixels": sum(int((label != IGNORE_INDEX).sum()) for _, label in data_.val),
            "miou": float(matrix.miou()),
        }
    Path(out, f"rank{rank}.json").write_text(json.dumps(results))


def _sync_bn_worker(rank: int, port: int, data: str, out: str, log: str) -> None:
    _as_rank(rank, port, log)
    from torch import nn

    from train.config import apply_overrides, get_variant
    from train.data import build_data
    from train.distributed import init_distributed
    from train.engine import Trainer
    from train.errors import TrainingError

    init_distributed()
    config = apply_overrides(get_variant("deeplabv2_cityscapes"), [*TINY, "iterations=1", "sync_bn=true"])
    data_ = build_data(config, Path(data) / "gta5", Path(data) / "cityscapes")
    trainer = Trainer(config, data_, Path(out) / "deeplab", device="cpu", progress=False)
    norms = [m for m in trainer.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    before = [m.running_var.clone() for m in norms]
    trainer.run()
    report = {
        "sync": sum(isinstance(m, nn.SyncBatchNorm) for m in norms),
        "norms": len(norms),
        "running_stats_changed": sum(not torch.equal(b, m.running_var) for b, m in zip(before, norms)),
        "trainable_norm_parameters": sum(p.requires_grad for m in norms for p in m.parameters()),
    }
    # BiSeNet's BatchNorms train: synchronised, which PyTorch does on GPUs only; here a clear refusal.
    bisenet = apply_overrides(get_variant("bisenet_cityscapes"), [*TINY, "iterations=1", "sync_bn=true"])
    try:
        Trainer(bisenet, data_, Path(out) / "bisenet", device="cpu", progress=False)
    except TrainingError as exc:
        report["bisenet"] = str(exc)
    Path(out, f"rank{rank}.json").write_text(json.dumps(report))


def _cli_worker(rank: int, port: int, argv: list[str], log: str) -> None:
    _as_rank(rank, port, log)
    from train.__main__ import main

    sys.exit(main(argv))


def _run_ranks(context, target, args: tuple, tmp_path: Path, timeout: float = 300) -> list:
    port = _free_port()
    logs = [tmp_path / f"rank{rank}.log" for rank in range(WORLD)]
    processes = [
        context.Process(target=target, args=(rank, port, *args, str(logs[rank])), daemon=True)
        for rank in range(WORLD)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout)
    for process, log in zip(processes, logs):
        assert process.exitcode == 0, (
            f"exit {process.exitcode}:\n{log.read_text()[-3000:] if log.exists() else ''}"
        )
    return processes


def test_each_method_trains_resumes_and_evaluates_on_two_ranks(context, tiny_data, tmp_path):
    from segdemo.checkpoints import load_model, read_metadata

    out = tmp_path / "out"
    _run_ranks(context, _methods_worker, (str(tiny_data), str(out)), tmp_path)
    ranks = [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(WORLD)]
    for variant, result in ranks[0].items():
        other = ranks[1][variant]
        assert result["step_after_load"] == other["step_after_load"] == 1
        # Rank 0 wrote the checkpoints; the resumed run ends where the uninterrupted one did.
        straight, _ = load_model(out / variant / "straight")
        resumed, meta = load_model(out / variant / "resumed")
        for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
            assert torch.equal(a, b), f"{variant}: {name}"
        assert meta["steps"] == 2 and read_metadata(out / variant / "straight")["metrics"] == meta["metrics"]
        # Each rank its own augmentation of the same images.
        assert result["augmented_sum"] != other["augmented_sum"], variant
        # Evaluation shared out between the ranks and summed: every val pixel counted once, the same scores.
        assert result["eval_pixels"] == other["eval_pixels"] == result["labelled_pixels"]
        assert result["labelled_pixels"] > 4 * 32 * 64 // 2
        assert result["miou"] == other["miou"]


def test_sync_bn_leaves_deeplab_frozen(context, tiny_data, tmp_path):
    out = tmp_path / "out"
    _run_ranks(context, _sync_bn_worker, (str(tiny_data), str(out)), tmp_path)
    report = json.loads((out / "rank0.json").read_text())
    assert (
        report["norms"] > 100 and report["sync"] == 0
    )  # nothing to synchronise: the statistics never change
    assert report["running_stats_changed"] == 0 and report["trainable_norm_parameters"] == 0
    assert "sync_bn=true needs CUDA devices" in report["bisenet"]


def test_sync_batchnorm_converts_what_trains_and_frozen_stays_frozen_anyway():
    from torch import nn

    from segdemo.models import build_model
    from train.distributed import sync_batchnorm

    bisenet = sync_batchnorm(build_model("bisenet"))
    assert any(isinstance(m, nn.SyncBatchNorm) for m in bisenet.modules())
    deeplab = build_model("deeplabv2")
    assert sync_batchnorm(deeplab) is deeplab  # every BatchNorm frozen: left as it is
    # Even converted by hand, DeepLabV2's BatchNorms stay in eval mode (running statistics, never updated).
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(build_model("deeplabv2")).train()
    norms = [m for m in converted.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert norms and not any(m.training for m in norms)


def test_sigterm_to_one_rank_saves_once_and_ends_every_rank(context, tiny_data, tmp_path):
    from train.resume import named_folder, read_progress

    out = tmp_path / "run"
    argv = [
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
        "iterations=400",
        "checkpoint_every=1000",
    ]
    port = _free_port()
    logs = [tmp_path / f"rank{rank}.log" for rank in range(WORLD)]
    processes = [
        context.Process(target=_cli_worker, args=(rank, port, argv, str(logs[rank])), daemon=True)
        for rank in range(WORLD)
    ]
    for process in processes:
        process.start()
    deadline = time.monotonic() + 120
    while not re.search(
        r"\b([3-9]|\d\d+)/400 \[", logs[0].read_text(errors="replace") if logs[0].exists() else ""
    ):
        assert time.monotonic() < deadline and all(p.is_alive() for p in processes), (
            logs[0].read_text()[-2000:] if logs[0].exists() else "no log"
        )
        time.sleep(0.05)
    os.kill(processes[1].pid, signal.SIGTERM)  # rank 1 only
    for process in processes:
        process.join(120)
    assert [p.exitcode for p in processes] == [130, 130], [log.read_text()[-1500:] for log in logs]
    for log in logs:
        assert "stopped" in log.read_text() and "Traceback" not in log.read_text()
    states = list(out.glob(".last-*"))
    assert states == [named_folder(out)]  # saved once, by rank 0
    step = read_progress(out)[1]["step"]
    assert 3 <= step < 400
