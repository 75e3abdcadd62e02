"""What GPU users' runs depend on, proved on the CPU: the AMP dtype per card, resuming on another machine,
every
method field doing what it says, no host synchronisation inside a step, DACS's memory, and fast loaders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY

from train import data as train_data
from train import engine
from train.config import apply_overrides, get_variant
from train.data import Batches, build_data, loader_workers
from train.engine import Trainer, amp_dtype_for, training_precision
from train.errors import TrainingError
from train.resume import named_folder, read_progress

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(variant: str, *extra: str):
    return apply_overrides(get_variant(variant), [*TINY, "iterations=2", *extra])


def trainer_for(config, data: Path, out: Path, **kwargs) -> Trainer:
    gta5, cityscapes = data / "gta5", data / "cityscapes"
    return Trainer(config, build_data(config, gta5, cityscapes), out, device="cpu", progress=False, **kwargs)


# ---------------------------------------------------------------------------------------------- AMP


@pytest.mark.parametrize(
    "card, capability, dtype",
    [
        ("P100", (6, 0), torch.float16),
        ("V100", (7, 0), torch.float16),
        ("T4", (7, 5), torch.float16),
        ("A100", (8, 0), torch.bfloat16),
        ("RTX 4090", (8, 9), torch.bfloat16),
        ("H100", (9, 0), torch.bfloat16),
    ],
)
def test_amp_dtype_by_compute_capability(card, capability, dtype):
    assert amp_dtype_for(capability) == dtype, card


def test_a_t4_gets_float16_even_where_torch_says_bfloat16_is_supported(monkeypatch):
    # On a T4 torch.cuda.is_bf16_supported() is True (it counts emulation); the trainer must not believe it.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    cuda = torch.device("cuda")
    config = get_variant("bisenet_gta5")
    assert training_precision(config, cuda) == torch.float16
    assert training_precision(config.replace(amp_dtype="bf16"), cuda) == torch.bfloat16  # forced
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert training_precision(config, cuda) == torch.bfloat16
    assert training_precision(config.replace(amp_dtype="fp16"), cuda) == torch.float16
    assert training_precision(config.replace(amp=False), cuda) == torch.float32


def test_amp_on_the_cpu_and_bad_dtypes():
    cpu = torch.device("cpu")
    config = get_variant("bisenet_gta5")
    assert training_precision(config, cpu) == torch.float32  # auto: float32 on a CPU
    assert training_precision(config.replace(amp_dtype="bf16"), cpu) == torch.bfloat16
    with pytest.raises(TrainingError, match="fp16 needs a CUDA device"):
        training_precision(config.replace(amp_dtype="fp16"), cpu)
    with pytest.raises(ValueError, match="amp_dtype must be one of"):
        apply_overrides(config, ["amp_dtype=fp8"])


def test_a_float16_run_has_a_loss_scaler_and_others_a_fixed_scale_of_one(tiny_data, tmp_path, monkeypatch):
    trainer = trainer_for(tiny_config("bisenet_gta5"), tiny_data, tmp_path / "a")
    assert trainer.scaler.is_enabled() and trainer.scaler.get_scale() == 1.0
    monkeypatch.setattr(engine, "training_precision", lambda config, device: torch.float16)
    scaled = trainer_for(tiny_config("bisenet_gta5"), tiny_data, tmp_path / "b")
    assert scaled.scaler.get_scale() == 2.0**16


# ------------------------------------------------------------------------ resuming on another machine


def test_resume_from_float32_in_bfloat16_continues_and_says_so(tiny_data, tmp_path, capsys):
    config = tiny_config("bisenet_gta5_dacs", "iterations=4", "amp=false")
    trainer_for(config, tiny_data, tmp_path).run(stop_after=2)
    capsys.readouterr()
    resumed = trainer_for(config.replace(amp=True, amp_dtype="bf16"), tiny_data, tmp_path, resume=True)
    assert resumed.step == 2 and resumed.precision == torch.bfloat16
    assert "resuming a run trained in float32 in bfloat16" in capsys.readouterr().out
    resumed.run()
    assert read_progress(tmp_path)[1]["step"] == 4 and read_progress(tmp_path)[1]["precision"] == "bfloat16"


def test_resume_of_a_state_with_an_empty_scaler_and_no_schedule_state(tiny_data, tmp_path):
    # Earlier versions saved {} for a disabled GradScaler and set the learning rate by hand (no scheduler).
    config = tiny_config("bisenet_gta5", "iterations=4")
    trainer_for(config, tiny_data, tmp_path).run(stop_after=2)
    state_file = named_folder(tmp_path) / "trainer.pt"
    state = torch.load(state_file, weights_only=True)
    state["scaler"] = {}
    del state["scheduler"]
    torch.save(state, state_file)
    resumed = trainer_for(config, tiny_data, tmp_path, resume=True)
    assert resumed.scheduler.last_epoch == 2 and resumed.scaler.get_scale() == 1.0
    resumed.run()
    assert resumed.step == 4


def test_resume_with_another_number_of_processes_says_what_differs(tiny_data, tmp_path):
    config = tiny_config("bisenet_gta5", "iterations=4")
    trainer_for(config, tiny_data, tmp_path).run(stop_after=2)
    progress_file = named_folder(tmp_path) / "progress.json"
    progress = json.loads(progress_file.read_text())
    progress["world_size"] = 2
    progress_file.write_text(json.dumps(progress))
    with pytest.raises(TrainingError) as info:
        trainer_for(config, tiny_data, tmp_path, resume=True)
    message = str(info.value)
    assert "\n" not in message and "trained on 2 process(es)" in message and "has 1" in message
    assert "--nproc_per_node 2" in message


# ---------------------------------------------------------------------- every field does what it says

# (variant, field, the default's value in the runs compared, another value); each changes what a run learns.
METHOD_FIELDS = [
    ("bisenet_gta5_fda", "fda_beta", "0.01", "0.2"),
    ("bisenet_gta5_fda", "fda_entropy_weight", "0", "0.5"),
    ("bisenet_gta5_fda", "fda_eta", "2.0", "1.0"),
    ("bisenet_gta5_dacs", "dacs_threshold", "0.968", "0.0"),
    ("bisenet_gta5_dacs", "dacs_ema", "0.99", "0.2"),
    ("bisenet_gta5_dacs", "dacs_color_jitter", "0.2", "0.0"),
    ("bisenet_gta5_dacs", "dacs_blur", "true", "false"),
    ("bisenet_gta5_dacs", "dacs_teacher_bn", "batch", "running"),
    ("bisenet_gta5_dacs", "dacs_weight", "share", "pixel"),
]


@pytest.fixture(scope="module")
def trained_state(tiny_data, tmp_path_factory):
    """The student's (and teacher's) weights after a 2-step run with these fields; runs are shared."""
    runs: dict[str, dict[str, torch.Tensor]] = {}

    def state(variant: str, *fields: str) -> dict[str, torch.Tensor]:
        config = tiny_config(variant, *fields)
        key = json.dumps(config.as_dict(), sort_keys=True)  # the same settings, however they were spelt
        if key not in runs:
            trainer = trainer_for(config, tiny_data, tmp_path_factory.mktemp("run"))
            trainer.run()
            runs[key] = {f"student.{k}": v for k, v in trainer.model.state_dict().items()}
            if trainer.teacher is not None:
                runs[key].update({f"teacher.{k}": v for k, v in trainer.teacher.state_dict().items()})
        return runs[key]

    return state


def test_a_run_is_reproducible(trained_state, tiny_data, tmp_path):
    for variant in ("bisenet_gta5_fda", "bisenet_gta5_dacs"):
        trainer = trainer_for(tiny_config(variant), tiny_data, tmp_path / variant)
        trainer.run()
        again = {f"student.{k}": v for k, v in trainer.model.state_dict().items()}
        first = trained_state(variant)
        assert all(torch.equal(first[k], again[k]) for k in again), variant


@pytest.mark.parametrize("variant, field, default, other", METHOD_FIELDS, ids=[f[1] for f in METHOD_FIELDS])
def test_every_method_field_changes_the_run(trained_state, variant, field, default, other):
    # fda_eta only enters through the entropy loss, so that run has the entropy term on; the teacher's
    # pseudo-labels only count where it is confident, which an untrained teacher never is at 0.968.
    # dacs_weight differs only where some of an image's pixels are that sure and some are not: at 0.12 the
    # 2-step teacher is sure of 30-83% of each image's pixels (measured on an Intel Xeon).
    base = {
        "fda_eta": ["fda_entropy_weight=0.5"],
        "dacs_teacher_bn": ["dacs_threshold=0"],
        "dacs_weight": ["dacs_threshold=0.12"],
    }.get(field, [])
    first = trained_state(variant, *base, f"{field}={default}")
    changed = trained_state(variant, *base, f"{field}={other}")
    assert any(not torch.equal(first[k], changed[k]) for k in first), f"{field}={other} changed nothing"


# ------------------------------------------------------------------------------------- the step itself


def test_a_step_reads_nothing_back_from_the_device(tiny_data, tmp_path, monkeypatch):
    """Between logging steps nothing is read from tensors (on a GPU each read waits for the queue to drain):
    no .item(), bool(), float(), int(), .tolist(), nonzero() or indexing by a boolean mask (its result's size
    is data) inside a training step, for every method and for the hard-example-mined loss."""
    reads: list[str] = []
    inside = [False]
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "nonzero"):
        original = getattr(torch.Tensor, name)

        def recorded(self, *args, _name=name, _original=original, **kwargs):
            if inside[0]:
                reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, recorded)
    real_getitem = torch.Tensor.__getitem__

    def getitem(self, index):
        parts = index if isinstance(index, tuple) else (index,)
        if inside[0] and any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts):
            reads.append("boolean mask")
        return real_getitem(self, index)

    monkeypatch.setattr(torch.Tensor, "__getitem__", getitem)
    real_step = Trainer._train_step

    def step(self, *args):
        inside[0] = True
        try:
            return real_step(self, *args)
        finally:
            inside[0] = False

    real_next = Batches.__next__

    def next_batch(self):  # the loader's own bookkeeping (indices, worker seeds) is host data: not counted
        inside[0], was = False, inside[0]
        try:
            return real_next(self)
        finally:
            inside[0] = was

    monkeypatch.setattr(Trainer, "_train_step", step)
    monkeypatch.setattr(Batches, "__next__", next_batch)
    for variant, extra in (
        ("bisenet_gta5_aug12", []),
        ("bisenet_gta5_aug12", ["ohem_threshold=0.7"]),
        ("bisenet_gta5_fda", ["fda_entropy_weight=0.005"]),
        ("bisenet_gta5_dacs", []),
    ):
        trainer_for(
            tiny_config(variant, "iterations=3", "log_every=3", *extra),
            tiny_data,
            tmp_path / "-".join([variant, *extra]),
        ).run()
        assert reads == [], f"{variant} {extra}: {sorted(set(reads))}"


def _peak_saved_bytes(run) -> int:
    """The most bytes autograd held for backward passes at any one time while ``run()`` ran."""
    live, peak = [0], [0]

    class Saved:
        def __init__(self, tensor: torch.Tensor) -> None:
            self.tensor, self.size = tensor, tensor.numel() * tensor.element_size()
            live[0] += self.size
            peak[0] = max(peak[0], live[0])

        def __del__(self) -> None:
            live[0] -= self.size

    with torch.autograd.graph.saved_tensors_hooks(Saved, lambda saved: saved.tensor):
        run()
    return peak[0]


def test_dacs_holds_one_forward_pass_for_backward_at_a_time(tiny_data, tmp_path):
    config = tiny_config("bisenet_gta5_dacs", "batch_size=4", "gta5_size=128x64", "cityscapes_size=128x64")
    trainer = trainer_for(config, tiny_data, tmp_path)
    trainer.model.train()
    data = trainer.data
    labeled = Batches(data.labeled, config, 0, 0, 0, 1)
    target = Batches(data.target, config, 1, 0, 0, 1)
    images, labels = trainer._labeled_batch(next(labeled))
    target_images = trainer._to_device(next(target)[0])
    supervised = _peak_saved_bytes(lambda: trainer.supervised_step(images, labels))
    dacs = _peak_saved_bytes(lambda: trainer.dacs_step(images, labels, target_images))
    # Two student passes (source and mixed) with one backward at the end would hold about twice as much.
    assert supervised > 0 and dacs < 1.3 * supervised, (dacs, supervised)


# ------------------------------------------------------------------------------------------- loaders


def test_loader_workers_default_to_the_cores_this_process_has(monkeypatch):
    config = get_variant("bisenet_gta5")
    monkeypatch.setattr(train_data, "available_cores", lambda: 8)
    assert loader_workers(config) == 7  # one core left to the training process
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun: four training processes share the machine
    assert loader_workers(config) == 1
    monkeypatch.setattr(train_data, "available_cores", lambda: 1)
    assert loader_workers(config) == 0
    assert loader_workers(config.replace(num_workers=3)) == 3


def test_batches_are_the_same_with_persistent_workers_across_epochs_and_from_a_resume(tiny_data):
    config = tiny_config("bisenet_gta5_aug12")
    data = build_data(config, tiny_data / "gta5", tiny_data / "cityscapes")
    in_process = Batches(data.labeled, config, 5, 0, 0, 1)
    workers = Batches(data.labeled, config.replace(num_workers=2), 5, 0, 0, 1)
    assert workers.loader.persistent_workers and workers.loader.num_workers == 2
    first = [next(in_process) for _ in range(10)]  # 8 images, batch 2: 4 steps an epoch, 2.5 epochs
    second = [next(workers) for _ in range(10)]
    for a, b in zip(first, second):
        assert a[0].dtype == torch.uint8 and all(torch.equal(x, y) for x, y in zip(a, b))
    resumed = Batches(data.labeled, config, 5, 6, 0, 1)  # resumed at step 6
    for a in first[6:]:
        assert all(torch.equal(x, y) for x, y in zip(a, next(resumed)))
    assert workers.wait_seconds > 0


def test_the_training_form_is_channels_last_with_a_fused_optimiser(tiny_data, tmp_path):
    trainer = trainer_for(tiny_config("bisenet_gta5"), tiny_data, tmp_path / "a")
    conv = trainer.model.context_path.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert trainer.optimizer.defaults["fused"] is True
    plain = trainer_for(tiny_config("bisenet_gta5", "channels_last=false"), tiny_data, tmp_path / "b")
    assert plain.model.context_path.conv1.weight.is_contiguous()


def test_loaders_hand_over_uint8_and_the_target_images_come_without_labels(tiny_data):
    data = build_data(tiny_config("bisenet_gta5_dacs"), tiny_data / "gta5", tiny_data / "cityscapes")
    image, label = data.labeled[0]
    assert image.dtype == torch.uint8 and label.dtype == torch.uint8 and data.labeled.has_labels
    (target,) = data.target[0]  # FDA and DACS use no target labels: none are read
    assert target.dtype == torch.uint8 and not data.target.has_labels
    assert data.val.has_labels and data.val[0][0].dtype == torch.uint8
