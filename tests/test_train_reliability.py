"""The training CLI when things go wrong: SIGKILL at random moments, SIGINT / SIGTERM, NaN and inf, unsafe
resume files. Every run is ``python -m train run``'s own ``main()`` in a separate process (killed for real),
on a tiny procedural tree at 64 x 32.

Separate processes are forked from a forkserver that has imported torch and ``train`` once: a fresh
interpreter would spend most of its life importing, and twenty of them would make the test slow.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import pickle
import random
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from conftest import TINY as TINY_RUN

from segdemo.checkpoints import load_model, read_metadata
from train.__main__ import main
from train.resume import named_folder, resume_folder

if TYPE_CHECKING:  # the helper's annotation only; the tests import train.engine where they use it
    from train.engine import Trainer

TOTAL = 24  # steps of every run here: 3 epochs of the 8-image tree at batch size 2
TINY = [*TINY_RUN, f"iterations={TOTAL}"]
KILLS = 20


pytestmark = pytest.mark.usefixtures("one_thread")


def run_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "run",
        "bisenet_gta5",
        "--gta5",
        str(data / "gta5"),
        "--cityscapes",
        str(data / "cityscapes"),
        "--out",
        str(out),
        "--device",
        "cpu",
        *TINY,
        *extra,
    ]


def _run_cli(argv: list[str], log: str) -> None:
    """Child process: ``python -m train`` with ``argv``, output to ``log``, exit code as the CLI's."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    torch.set_num_threads(
        1
    )  # the same maths in every run, so resumed and uninterrupted runs compare bit for bit
    sys.exit(main(argv))


Launch = Callable[[list[str], Path], multiprocessing.Process]


@pytest.fixture(scope="module")
def launch() -> Launch:
    """Start ``python -m train <argv>`` in a child process writing to a log file; returns the process."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(
        [
            "torch",
            "torch.utils.tensorboard",
            "tqdm",
            "train.__main__",
            "train.engine",
            "train.config",
            "segdemo.checkpoints",
            "segdemo.synthetic",
            "train.resume",
            __name__,
        ]
    )

    def start(argv: list[str], log: Path) -> multiprocessing.Process:
        log.touch()
        process = context.Process(target=_run_cli, args=(argv, str(log)), daemon=True)
        process.start()
        return process

    return start


def finish(process: multiprocessing.Process, log: Path, timeout: float = 300) -> int:
    process.join(timeout)
    assert process.exitcode is not None, f"still running after {timeout} s:\n{log.read_text()[-2000:]}"
    return process.exitcode


def wait_for_step(step: int, process: multiprocessing.Process, log: Path) -> None:
    """Wait until the run's progress bar has shown ``step`` (0: the training loop has started)."""
    deadline = time.monotonic() + 120
    while steps_shown(log) < step:
        if process.exitcode is not None or not process.is_alive():
            raise AssertionError(
                f"the run ended (exit {process.exitcode}) before step {step}:\n{log.read_text()[-2000:]}"
            )
        assert time.monotonic() < deadline, f"no step {step} within 120 s:\n{log.read_text()[-2000:]}"
        time.sleep(0.02)


def steps_shown(log: Path) -> int:
    """The last step count the progress bar printed ("12/24"), -1 before the training loop."""
    found = re.findall(rf"(\d+)/{TOTAL} \[", log.read_text(errors="replace"))
    return int(found[-1]) if found else -1


def check_resume_state(out: Path) -> int:
    """The state ``--resume`` continues from loads, and its weights, optimiser and progress are all of the
    same step; returns it. ``out/last`` names a complete state: that one, or the one before it when the kill
    fell between writing the new folder and renaming ``last`` (then the newer folder is found by itself)."""
    last = resume_folder(out)
    named = named_folder(out)
    assert last is not None and named is not None, "no complete state after a save"
    assert (named / "progress.json").is_file(), f"out/last names {named.name}, which is not complete"
    progress = json.loads((last / "progress.json").read_text())
    named_step = json.loads((named / "progress.json").read_text())["step"]
    assert named == last or named_step < progress["step"], (
        f"out/last names {named.name}, but {last.name} was chosen to resume from"
    )
    model, meta = load_model(last)
    assert meta["steps"] == progress["step"], "the weights and progress.json are of different steps"
    state = torch.load(last / "trainer.pt", map_location="cpu", weights_only=True)
    adam_steps = {int(s["step"]) for s in state["optimizer"]["state"].values() if "step" in s}  # not SGD
    assert adam_steps <= {progress["step"]}, (
        f"optimiser at steps {adam_steps}, progress at {progress['step']}"
    )
    assert all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point())
    return int(progress["step"])


@pytest.fixture(scope="module")
def uninterrupted(tiny_data, launch, tmp_path_factory) -> Path:
    """The same run with no interruption (saving less often: that must not change the result)."""
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    log = out.parent / "run.log"
    assert finish(launch(run_args(tiny_data, out), log), log) == 0, log.read_text()[-2000:]
    return out


def assert_same_run(resumed: Path, reference: Path) -> None:
    """Same final weights, step count, learning-rate schedule, optimiser state and metrics."""
    model_a, meta_a = load_model(resumed)
    model_b, meta_b = load_model(reference)
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(a, b), name
    assert meta_a["steps"] == meta_b["steps"] == TOTAL
    assert meta_a["metrics"] == meta_b["metrics"] and meta_a["history"] == meta_b["history"]
    progress = json.loads((named_folder(resumed) / "progress.json").read_text())
    assert progress["step"] == progress["total"] == TOTAL
    state_a = torch.load(named_folder(resumed) / "trainer.pt", weights_only=True)
    state_b = torch.load(named_folder(reference) / "trainer.pt", weights_only=True)
    # The last learning rate set is the poly schedule's value at the final step; Adam counted every step.
    assert [g["lr"] for g in state_a["optimizer"]["param_groups"]] == [
        g["lr"] for g in state_b["optimizer"]["param_groups"]
    ]
    assert {int(s["step"]) for s in state_a["optimizer"]["state"].values()} == {TOTAL}


def test_sigkill_at_20_random_moments_then_resume_matches_an_uninterrupted_run(
    tiny_data, launch, uninterrupted, tmp_path
):
    out = tmp_path / "run"
    rng = random.Random(20)  # seeded: the same moments every time
    step_seconds = 0.3  # one step's time (compute and save), refined from what the progress bar shows
    saved_before, resumed_from, killed_while_training = False, set(), 0
    for kill in range(KILLS):
        resume = resume_folder(out) is not None
        log = tmp_path / f"kill{kill:02d}.log"
        process = launch(
            run_args(tiny_data, out, "checkpoint_every=1", *(["--resume"] if resume else [])), log
        )
        if kill % 4 == 3:
            time.sleep(rng.uniform(0.0, 1.0))  # during start-up: model building, resume loading
        else:
            # In the training loop, 0-2 steps in, at a random point of a step: computing, or half-way
            # through writing the state of the step the bar has just shown.
            wait_for_step(0, process, log)
            start, started = steps_shown(log), time.monotonic()
            target = start + rng.randint(0, 2)
            wait_for_step(min(target, TOTAL), process, log)
            if target > start:
                step_seconds = (time.monotonic() - started) / (target - start)
            time.sleep(rng.uniform(0.0, step_seconds))
            killed_while_training += process.is_alive()
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it had finished: the forkserver, its parent, has already reaped it
        code = finish(process, log)
        assert code in (-signal.SIGKILL, 0), f"kill {kill}: exit {code}\n{log.read_text()[-2000:]}"
        if saved_before or (out / "last").exists():
            saved_before = True
            resumed_from.add(check_resume_state(out))  # the latest state survives every kill and loads
        print(
            f"kill {kill}: resumed={resume} shown={steps_shown(log)} exit={code} saved={sorted(resumed_from)}"
        )
    # Most kills hit a running training loop, and the run came back from many different states.
    assert killed_while_training >= KILLS // 2 and len(resumed_from) >= 5, (
        killed_while_training,
        resumed_from,
    )

    log = tmp_path / "final.log"
    code = finish(launch(run_args(tiny_data, out, "checkpoint_every=1", "--resume"), log), log)
    assert code == 0, log.read_text()[-2000:]
    assert_same_run(out, uninterrupted)
    # No half-written state is left behind: one state folder, the one out/last names.
    assert list(out.glob(".last-*")) == [named_folder(out)]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_and_sigterm_save_exit_cleanly_and_resume(tiny_data, launch, uninterrupted, tmp_path, sig):
    out = tmp_path / "run"
    log = tmp_path / "first.log"
    # No periodic saves: whatever is in last/ afterwards was saved because of the signal.
    process = launch(run_args(tiny_data, out, "checkpoint_every=1000"), log)
    wait_for_step(3, process, log)
    os.kill(process.pid, sig)
    assert finish(process, log) == 130
    text = log.read_text()
    assert f"stopped ({sig.name}); state saved: resume with the same command plus --resume" in text
    assert "Traceback" not in text
    stopped_at = check_resume_state(out)
    assert 3 <= stopped_at < TOTAL
    assert not (out / "model.safetensors").exists()  # not finished: no final model is claimed

    log = tmp_path / "resumed.log"
    assert finish(launch(run_args(tiny_data, out, "checkpoint_every=1000", "--resume"), log), log) == 0
    assert f"{stopped_at}/{TOTAL}" in log.read_text()  # it continued from there
    assert_same_run(out, uninterrupted)


def test_a_loss_that_stays_nan_stops_the_run(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    # lr inf: the first SGD step makes every weight inf or NaN on any CPU (IEEE arithmetic), so every later
    # forward pass gives a NaN loss. Each such step is skipped; five in a row stop the run.
    code = main(
        run_args(
            tiny_data,
            out,
            "optimizer=sgd",
            "lr=inf",
            "schedule=constant",
            "checkpoint_every=1000",
            "max_nonfinite_steps=5",
        )
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert re.search(
        r"the loss was NaN or inf in 5 consecutive steps \(max_nonfinite_steps\), the last at step 6; "
        r"stopped: those steps were skipped, leaving the weights as they were\. "
        r"No checkpoint had been saved yet\.",
        err,
    ), err
    assert not (out / "last").exists() and not (out / "model.safetensors").exists()


def _nan_loss_at(monkeypatch, calls: set[int]) -> None:
    """Make the training loss NaN at these calls (1-based), as a float16 overflow or a bad batch would."""
    from train import engine

    real, count = engine.segmentation_loss, [0]

    def loss(*args, **kwargs):
        count[0] += 1
        value = real(*args, **kwargs)
        return value * float("nan") if count[0] in calls else value

    monkeypatch.setattr(engine, "segmentation_loss", loss)


@pytest.mark.parametrize("limit", [20, 3])
def test_a_few_nan_losses_are_skipped_and_the_run_goes_on(tiny_data, tmp_path, capsys, monkeypatch, limit):
    out = tmp_path / "run"
    _nan_loss_at(monkeypatch, {4, 5, 6})
    code = main(run_args(tiny_data, out, f"max_nonfinite_steps={limit}"))
    err = capsys.readouterr().err
    if limit == 3:  # three in a row are as many as allowed: stopped
        assert code == 2 and re.search(
            r"in 3 consecutive steps \(max_nonfinite_steps\), the last at step 6; stopped", err
        ), err
        return
    assert code == 0, err
    # The three steps were skipped: Adam counted 21 updates in 24 steps, and the weights stayed finite.
    state = torch.load(named_folder(out) / "trainer.pt", weights_only=True)
    assert {int(s["step"]) for s in state["optimizer"]["state"].values()} == {TOTAL - 3}
    model, meta = load_model(out)
    assert meta["steps"] == TOTAL and all(
        torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point()
    )


# How a diverging run stops: "... at step N; stopped ..." and what was kept.
STOPPED = re.compile(
    r"at step (\d+); stopped[^.]*\. "
    r"(?:The last good checkpoint \(step (\d+)\) is kept in (\S+)\.|(No checkpoint had been saved yet\.))"
)


@pytest.mark.parametrize("lr, saved_before", [("30", True), ("1e3", True), ("3e38", False)])
def test_a_diverging_run_never_saves_a_non_finite_state(tiny_data, tmp_path, capsys, lr, saved_before):
    out = tmp_path / "run"
    # lr 30 and 1e3: within a few steps either the loss turns NaN for good or BatchNorm's running variance
    # overflows in a forward pass whose loss is still finite. Which comes first depends on the CPU's float
    # kernels
    # (at lr 30, AMD EPYC: the variance; an Intel Xeon with AVX-512: the loss), so any of the stops is right:
    # the
    # weights check at a save, or the loss staying NaN to the end (or max_nonfinite_steps). lr 3e38: the
    # first SGD
    # step overflows the weights. No state with a NaN or inf may become the resume state, nor a final model.
    args = run_args(tiny_data, out, "optimizer=sgd", f"lr={lr}", "schedule=constant", "checkpoint_every=1")
    assert main(args) == 2
    err = capsys.readouterr().err
    found = STOPPED.search(err)
    assert found and "Traceback" not in err, err
    stopped_at = int(found.group(1))
    assert not (out / "model.safetensors").exists()  # no final model is claimed
    if not saved_before:
        assert found.group(4) and not (out / "last").exists()
        return
    kept = int(found.group(2))
    assert 1 <= kept <= stopped_at < TOTAL and found.group(3) == str(named_folder(out))
    assert check_resume_state(out) == kept  # loads, finite weights
    # The kept state resumes: the same command plus --resume continues from it (and diverges again, saving
    # nothing non-finite).
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"{kept}/{TOTAL}" in err and STOPPED.search(err), err
    assert kept <= check_resume_state(out) < TOTAL


class _CreatesAFile:
    """Unpickling this calls open(path, 'w'): loading it would write a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.mark.parametrize("damage", ["pickled code", "truncated", "progress.json"])
def test_resume_refuses_unsafe_or_damaged_state_with_a_clear_message(tiny_data, tmp_path, capsys, damage):
    out = tmp_path / "run"
    assert main(run_args(tiny_data, out, "iterations=2")) == 0
    marker = tmp_path / "pwned.txt"
    trainer = named_folder(out) / "trainer.pt"
    if damage == "pickled code":
        with open(trainer, "wb") as f:
            pickle.dump({"optimizer": _CreatesAFile(marker)}, f, protocol=2)
    elif damage == "truncated":
        trainer.write_bytes(trainer.read_bytes()[:5000])
    else:
        (named_folder(out) / "progress.json").write_text('{"step": ')
    capsys.readouterr()
    assert main(run_args(tiny_data, out, "iterations=2", "--resume")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --resume: ") and "Traceback" not in err
    if damage == "progress.json":
        assert "progress.json is damaged" in err
    else:
        assert "cannot load" in err and "trainer.pt" in err and "weights_only=True" in err
    assert not marker.exists()


@pytest.mark.parametrize("earlier", ["folder", "link"])
def test_resume_converts_the_state_of_an_earlier_version(tiny_data, tmp_path, earlier):
    out = tmp_path / "run"
    assert main(run_args(tiny_data, out, "iterations=2", "checkpoint_every=1")) == 0
    # Earlier versions kept a plain last/ folder, then a link to a state folder.
    state = named_folder(out)
    (out / "last").unlink()
    if earlier == "folder":
        state.rename(out / "last")
    else:
        (out / "last").symlink_to(state.name)
    assert main(run_args(tiny_data, out, "iterations=2", "--resume")) == 0
    assert (out / "last").is_file() and not (out / "last").is_symlink() and check_resume_state(out) == 2
    assert read_metadata(out)["steps"] == 2


def test_resume_takes_a_recipe_field_an_earlier_version_did_not_save_as_its_default(
    tiny_data, tmp_path, capsys
):
    out = tmp_path / "run"
    assert main(run_args(tiny_data, out, "iterations=2", "checkpoint_every=1")) == 0
    # An earlier version saved no dacs_teacher_bn or fda_eta: they count as the defaults the run had.
    progress_file = named_folder(out) / "progress.json"
    progress = json.loads(progress_file.read_text())
    for key in ("dacs_teacher_bn", "fda_eta"):
        del progress["config"][key]
    progress_file.write_text(json.dumps(progress))
    # A recipe change is refused (it would make a run that is neither the old nor the new recipe) ...
    assert main(run_args(tiny_data, out, "iterations=2", "dacs_teacher_bn=running", "--resume")) == 2
    assert "trained with dacs_teacher_bn='batch', now 'running'" in capsys.readouterr().err
    # ... while the defaults resume it.
    assert main(run_args(tiny_data, out, "iterations=2", "--resume")) == 0
    assert read_metadata(out)["steps"] == 2


def saving_trainer(tiny_data: Path, out: Path, resume: bool = False) -> Trainer:
    """A 4-step tiny BiSeNet run in this process that saves its resume state after every step."""
    from train.config import apply_overrides, get_variant
    from train.data import build_data
    from train.engine import Trainer

    config = apply_overrides(get_variant("bisenet_gta5"), [*TINY, "iterations=4", "checkpoint_every=1"])
    data = build_data(config, tiny_data / "gta5", tiny_data / "cityscapes")
    return Trainer(config, data, out, device="cpu", resume=resume, progress=False)


def test_saves_and_resumes_where_symbolic_links_are_refused(tiny_data, tmp_path, monkeypatch):
    """Google Drive as Colab mounts it, exFAT disks and some network shares refuse symbolic links (errno 95):
    the resume state must need none."""

    def refuse(*_args, **_kwargs):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "symlink", refuse)  # Path.symlink_to goes through it too
    out = tmp_path / "drive" / "run"
    saving_trainer(tiny_data, out).run(stop_after=2)
    assert (out / "last").is_file() and not (out / "last").is_symlink()
    assert check_resume_state(out) == 2
    resumed = saving_trainer(tiny_data, out, resume=True)
    assert resumed.step == 2
    resumed.run()
    assert check_resume_state(out) == 4 and read_metadata(out)["steps"] == 4
    assert list(out.glob(".last-*")) == [named_folder(out)]


def test_killed_after_a_state_is_complete_but_before_last_names_it_resumes_from_that_state(
    tiny_data, tmp_path, monkeypatch
):
    """The one moment no rename can close: the new folder is complete, ``last`` still names the one before.
    ``--resume`` must continue from the newer state, and the next save tidies the older one away."""
    from train import resume

    out = tmp_path / "run"
    saving_trainer(tiny_data, out).run(stop_after=2)
    with monkeypatch.context() as patch:
        patch.setattr(resume, "commit_state", lambda *_args: None)  # killed just before the rename
        saving_trainer(tiny_data, out, resume=True).run(stop_after=1)
    assert json.loads((named_folder(out) / "progress.json").read_text())["step"] == 2
    assert check_resume_state(out) == 3
    continued = saving_trainer(tiny_data, out, resume=True)
    assert continued.step == 3
    continued.run()
    assert check_resume_state(out) == 4 and list(out.glob(".last-*")) == [named_folder(out)]


@pytest.mark.parametrize("minutes", [1e-9, 0.0])
def test_checkpoint_minutes_saves_on_a_timer_between_epoch_saves(tiny_data, tmp_path, minutes):
    from train.config import apply_overrides, get_variant
    from train.data import build_data
    from train.engine import Trainer
    from train.resume import read_progress

    assert (
        get_variant("bisenet_gta5").checkpoint_minutes == 10.0
    )  # the default: hours-long epochs save anyway
    config = apply_overrides(
        get_variant("bisenet_gta5"),
        [*TINY, "iterations=4", "checkpoint_every=1000", f"checkpoint_minutes={minutes}"],
    )
    trainer = Trainer(
        config,
        build_data(config, tiny_data / "gta5", tiny_data / "cityscapes"),
        tmp_path,
        device="cpu",
        progress=False,
    )
    seen = []

    def record(step: int, _total: int) -> None:  # called before the step's save
        seen.append(read_progress(tmp_path)[1]["step"] if resume_folder(tmp_path) else None)

    trainer.run(on_step=record)
    # 1e-9 minutes: every step's state was saved on the timer; 0: the timer is off and nothing was saved
    # early.
    assert seen == ([None, 1, 2, 3] if minutes else [None, None, None, None])


def test_a_state_is_flushed_to_the_disk_before_last_names_it(tiny_data, tmp_path, monkeypatch):
    """A power cut must not tear a state: every file of it, and its folder, reach the disk (fsync) before the
    rename that makes ``last`` name it."""
    from train.config import apply_overrides, get_variant
    from train.data import build_data
    from train.engine import Trainer

    synced: set[str] = set()
    checked: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        synced.add(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def replace(src, dst) -> None:
        src, dst = os.path.abspath(src), os.path.abspath(dst)
        if os.path.basename(dst) == "last":
            folder = Path(dst).parent / Path(src).read_text().strip()
            unsynced = [str(p) for p in [folder, *folder.iterdir()] if str(p) not in synced]
            assert not unsynced, f"not on the disk before last named {folder.name}: {unsynced}"
            checked.append(folder.name)
        real_replace(src, dst)
        if src in synced:
            synced.add(dst)  # the flushed content, now under its final name

    monkeypatch.setenv("SEGDEMO_FSYNC", "1")  # the suite turns flushing off (tests/conftest.py)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    config = apply_overrides(get_variant("bisenet_gta5_dacs"), [*TINY, "iterations=3", "checkpoint_every=1"])
    data = build_data(config, tiny_data / "gta5", tiny_data / "cityscapes")
    Trainer(config, data, tmp_path / "run", device="cpu", progress=False).run()
    assert len(checked) == 3  # steps 1 and 2, and the final state
