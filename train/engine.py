"""The training loop: one plain loop for every variant (supervised, FDA, DACS), CPU or GPU, DDP-ready.

Read top to bottom: data -> model -> optimiser and schedule -> loop (one ``*_step`` function per method) ->
evaluation -> checkpoints. Loader workers only decode and resize (or read the sample cache) and hand over
uint8 batches; the device converts, augments and normalises them. Everything random is drawn from
generators keyed to (seed, rank, step), and the data order to (seed, epoch), so ranks see different
augmentations and a resumed run continues exactly where it stopped. A step synchronises with the host only
at logging, saving and evaluation steps.
"""

from __future__ import annotations

import copy
import math
import os
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from segdemo.augment import BatchAugment, dacs_strong
from segdemo.checkpoints import default_metadata, save_checkpoint
from segdemo.dacs import batch_statistics, class_mix, confidence_weight, ema_update, pseudo_labels
from segdemo.evaluation import evaluate, evaluation_protocol
from segdemo.fda import entropy_loss, fda_source_to_target
from segdemo.files import atomic_write
from segdemo.labels import IGNORE_INDEX
from segdemo.models import build_model
from segdemo.normalization import normalize
from train import resume
from train.config import Config
from train.data import (
    Batches,
    Data,
    class_pixel_counts,
    describe_rare_class_sampling,
    loader_workers,
    rare_class_weights,
)
from train.distributed import sync_batchnorm
from train.errors import TrainingError

PRECISION_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def amp_dtype_for(capability: tuple[int, int]) -> torch.dtype:
    """The autocast dtype for a CUDA device of this compute capability: bfloat16 from 8.0 (A100, H100, RTX
    30xx
    and later), float16 with a loss scaler below (T4 7.5, V100 7.0, P100 6.0). Below 8.0
    ``torch.cuda.is_bf16_supported()`` may still say True, counting emulation, which is slow there."""
    return torch.bfloat16 if tuple(capability) >= (8, 0) else torch.float16


def training_precision(config: Config, device: torch.device) -> torch.dtype:
    """float32, or the autocast dtype of ``config.amp`` / ``config.amp_dtype`` on ``device``."""
    if not config.amp:
        return torch.float32
    if device.type == "cuda":
        if config.amp_dtype == "auto":
            return amp_dtype_for(torch.cuda.get_device_capability(device))
        return torch.bfloat16 if config.amp_dtype == "bf16" else torch.float16
    if config.amp_dtype == "fp16":
        raise TrainingError("amp_dtype=fp16 needs a CUDA device; on the CPU use amp_dtype=bf16 or amp=false")
    return torch.bfloat16 if config.amp_dtype == "bf16" else torch.float32


def _initial_weights(config: Config) -> dict[str, Tensor]:
    """The weights of ``config.init_from``, checked to be the same network as ``config.model``."""
    from segdemo.checkpoints import CheckpointError, load_model

    try:
        model, meta = load_model(config.init_from)
    except CheckpointError as exc:
        raise TrainingError(f"init_from={config.init_from}: {exc}") from exc
    if meta.get("model") != config.model:
        raise TrainingError(f"init_from={config.init_from} holds a {meta.get('model')}, not a {config.model}")
    return model.state_dict()


def total_steps(config: Config, labeled_size: int, world: int = 1) -> int:
    if config.iterations > 0:
        return config.iterations
    return config.epochs * max(1, labeled_size // (config.batch_size * world))


def _fused_supported(device: torch.device) -> bool:
    return device.type in ("cuda", "cpu")


def build_optimizer(
    config: Config, model: nn.Module, device: torch.device | None = None
) -> torch.optim.Optimizer:
    """Adam (or SGD) over the backbone and the head (``head_lr_mult`` x the learning rate). Fused where
    PyTorch
    has a fused kernel for the device: one kernel per step, and a step the loss scaler skips for a NaN or inf
    gradient is skipped on the device, without a host synchronisation."""
    groups = [
        {"params": [p for p in model.backbone_parameters() if p.requires_grad], "lr": config.lr},
        {
            "params": [p for p in model.head_parameters() if p.requires_grad],
            "lr": config.lr * config.head_lr_mult,
        },
    ]
    fused = {"fused": True} if device is not None and _fused_supported(device) else {}
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, **fused
        )
    return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay, **fused)


def build_scheduler(config: Config, optimizer: torch.optim.Optimizer, total: int):
    """The report's poly decay ``lr * (1 - step / total) ** power``, or a constant learning rate."""
    from torch.optim import lr_scheduler

    if config.schedule == "constant":
        return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    return lr_scheduler.PolynomialLR(optimizer, total_iters=total, power=config.poly_power)


def pixel_cross_entropy(logits: Tensor, label: Tensor, ohem_threshold: float = 0.0) -> Tensor:
    """Cross-entropy over the labelled pixels. ``ohem_threshold`` > 0: online hard example mining as in
    BiSeNet's reference training (CoinCheung's ``OhemCELoss``, 0.7 there): the mean over the pixels whose
    true class gets a probability below the threshold, and at least the 1/16 hardest labelled pixels, so
    that rare, small classes are not drowned out by the large easy ones.

    Without reading anything back from the device (a training step never does): the counts stay tensors, and
    the hardest sixteenth comes from a ``topk`` of a size fixed by the shape, masked to the count needed."""
    if ohem_threshold <= 0:
        return F.cross_entropy(logits, label, ignore_index=IGNORE_INDEX)
    # ignored pixels get a loss of 0, below every hard pixel and tied with nothing that counts
    per_pixel = F.cross_entropy(logits, label, ignore_index=IGNORE_INDEX, reduction="none").flatten()
    labelled = (label != IGNORE_INDEX).flatten().sum()
    hard = per_pixel > -math.log(ohem_threshold)
    hard_count = hard.sum()
    at_least = (labelled // 16).clamp(min=1)
    hardest = per_pixel.topk(max(1, per_pixel.numel() // 16)).values
    hardest_sum = (hardest * (torch.arange(hardest.numel(), device=hardest.device) < at_least)).sum()
    hard_mean = (per_pixel * hard).sum() / hard_count.clamp(min=1)
    return torch.where(hard_count >= at_least, hard_mean, hardest_sum / at_least)


def segmentation_loss(
    outputs: Tensor | tuple[Tensor, ...], label: Tensor, aux_weight: float, ohem_threshold: float = 0.0
) -> Tensor:
    """Cross-entropy (:func:`pixel_cross_entropy`) on the main output plus the weighted auxiliary outputs
    (BiSeNet)."""
    if isinstance(outputs, Tensor):
        return pixel_cross_entropy(outputs, label, ohem_threshold)
    main, *aux = outputs
    loss = pixel_cross_entropy(main, label, ohem_threshold)
    for out in aux:
        loss = loss + aux_weight * pixel_cross_entropy(out, label, ohem_threshold)
    return loss


def main_output(outputs: Tensor | tuple[Tensor, ...]) -> Tensor:
    return outputs if isinstance(outputs, Tensor) else outputs[0]


class Trainer:
    """Holds the run's state; ``run()`` trains to the end, saving as it goes."""

    def __init__(
        self,
        config: Config,
        data: Data,
        out_dir: str | Path,
        device: str | None = None,
        resume: bool = False,
        train_data_info: dict[str, Any] | None = None,
        progress: bool = True,
    ) -> None:
        self.config, self.data, self.out_dir = config, data, Path(out_dir)
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.is_main = self.rank == 0
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = (
                True  # fixed input sizes: let cuDNN pick its fastest kernels once
            )
        self.train_data_info = train_data_info or {}
        self.progress = progress and self.is_main
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format

        torch.manual_seed(config.seed)  # the same initial weights on every rank
        self.model = build_model(config.model, pretrained_backbone=config.pretrained or None)
        if config.init_from and not resume:
            self.model.load_state_dict(_initial_weights(config))
        if config.sync_bn and self.world > 1:
            self.model = sync_batchnorm(self.model)
            if self.device.type != "cuda" and any(
                isinstance(m, nn.SyncBatchNorm) for m in self.model.modules()
            ):
                raise TrainingError(
                    "sync_bn=true needs CUDA devices: PyTorch's SyncBatchNorm runs on GPUs only"
                )
        self.model = self.model.to(self.device, memory_format=self.memory_format)
        self.teacher = self._make_teacher() if config.method == "dacs" else None
        self.optimizer = build_optimizer(config, self.model, self.device)
        self.total = total_steps(config, len(data.labeled), self.world)
        self.scheduler = build_scheduler(config, self.optimizer, self.total)
        self.step = 0
        self.best_miou = -1.0
        self.history: list[dict[str, Any]] = []
        self.precision = training_precision(config, self.device)
        self.autocast = torch.autocast(
            self.device.type, dtype=self.precision, enabled=self.precision != torch.float32
        )
        # Always on: besides float16's loss scaling, its check for NaN and inf gradients is what skips a
        # step whose loss is not finite (see _backward). At a fixed scale of 1 (float32, bfloat16) it
        # changes no value.
        scaled = self.precision == torch.float16
        self.scaler = torch.amp.GradScaler(
            self.device.type, init_scale=2.0**16 if scaled else 1.0, growth_interval=2000 if scaled else 2**30
        )
        self.augment = BatchAugment(config.augment)
        self.mix_augment = dacs_strong(config.dacs_color_jitter, config.dacs_blur)
        # Consecutive steps whose loss was NaN or inf, and the step at which that run first reached
        # max_nonfinite_steps (-1: not yet): kept on the device, read at logging steps only.
        self.nonfinite = torch.zeros((), dtype=torch.int64, device=self.device)
        self.nonfinite_limit_step = torch.full((), -1, dtype=torch.int64, device=self.device)
        if resume:
            self._load_resume_state()
        self.ddp = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        # Stop requests and timed saves are decided together by all ranks, over the CPU (no GPU sync).
        self.control = None
        if self.world > 1:
            self.control = (
                dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else dist.group.WORLD
            )
        self.labeled_weights = self._rare_class_weights() if config.rcs_temperature > 0 else None
        self.writer = None
        self.stop_requested: str | None = None
        self.last_save = time.monotonic()
        self.seconds = 0.0  # time in the training loop, and the part of it spent waiting for data
        self.data_wait_seconds = 0.0

    # ----------------------------------------------------------------------------------------- steps
    def _generator(self, purpose: int) -> torch.Generator:
        """A generator on the training device for this step, rank and purpose (augmentation, mixing)."""
        seed = ((self.config.seed * 1_000_003 + self.step) * 1_009 + self.rank) * 7 + purpose
        return torch.Generator(device=self.device).manual_seed(seed)

    def _to_device(self, images: Tensor) -> Tensor:
        """uint8 N x 3 x H x W from a loader -> float in [0, 1] on the device."""
        return images.to(self.device, non_blocking=True).float().div_(255.0)

    def _input(self, images: Tensor) -> Tensor:
        """[0, 1] images as the network takes them: normalised, in the training memory format."""
        x = normalize(images, self.data.labeled.mean, self.data.labeled.std)
        return x.contiguous(memory_format=self.memory_format)

    def _labeled_batch(self, batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        images, labels = self._to_device(batch[0]), batch[1].to(self.device, non_blocking=True).long()
        return self.augment(images, labels, self._generator(1))

    @staticmethod
    def _at_least_two(*tensors: Tensor) -> tuple[Tensor, ...]:
        """A batch that skipped samples (bad_samples=skip) down to one is shown it twice: BatchNorm needs
        two."""
        return tuple(t.repeat(2, *[1] * (t.dim() - 1)) if t.shape[0] == 1 else t for t in tensors)

    def _no_sync(self):
        """For a backward pass whose gradients another backward pass of the same step adds to: DDP all-reduces
        once, after the last one."""
        return self.ddp.no_sync() if self.ddp is not self.model else nullcontext()

    def _backward(self, loss: Tensor) -> None:
        # A NaN or inf loss makes every gradient NaN (times NaN), so the scaler's check skips the whole
        # step: no optimiser update, no moment or step count change. Never a partial update.
        guard = torch.where(torch.isfinite(loss.detach()), 1.0, float("nan"))
        self.scaler.scale(loss * guard).backward()

    def _labelled_loss(self, images: Tensor, labels: Tensor) -> Tensor:
        outputs = self.ddp(self._input(images))
        return segmentation_loss(outputs, labels, self.config.aux_weight, self.config.ohem_threshold)

    def supervised_step(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        with self.autocast:
            loss = self._labelled_loss(images, labels)
        self._backward(loss)
        return {"loss": loss.detach()}

    def fda_step(self, images: Tensor, labels: Tensor, target: Tensor) -> dict[str, Tensor]:
        translated = fda_source_to_target(images, target, self.config.fda_beta).clamp_(0.0, 1.0)
        losses = {}
        if self.config.fda_entropy_weight > 0:
            # The target pass first, so that only one pass's activations are alive at a time.
            with self._no_sync(), self.autocast:
                ent = entropy_loss(
                    main_output(self.ddp(self._input(target))).float(), eta=self.config.fda_eta
                )
                self._backward(self.config.fda_entropy_weight * ent)
            losses["entropy"] = ent.detach()
        with self.autocast:
            seg = self._labelled_loss(translated, labels)
        self._backward(seg)
        losses["seg"] = seg.detach()
        losses["loss"] = seg.detach() + self.config.fda_entropy_weight * losses.get("entropy", 0.0)
        return losses

    def dacs_step(self, images: Tensor, labels: Tensor, target: Tensor) -> dict[str, Tensor]:
        statistics = (
            batch_statistics(self.teacher) if self.config.dacs_teacher_bn == "batch" else nullcontext()
        )
        with torch.no_grad(), self.autocast, statistics:
            teacher_logits = self.teacher(self._input(target))
        # Only what the loss needs: the pseudo-label and the confidence per pixel, not 19 probabilities.
        confidence, pseudo = pseudo_labels(teacher_logits)
        del teacher_logits
        mix = class_mix(images, labels, target, pseudo, generator=self._generator(2))
        weight = confidence_weight(
            confidence, mix.mask, self.config.dacs_threshold, per_pixel=self.config.dacs_weight == "pixel"
        )
        del confidence, pseudo
        mixed = self.mix_augment(mix.image, self._generator(3))
        valid = (mix.label != IGNORE_INDEX).float()
        # The mixed pass first, then the source pass: only one pass's activations are alive at a time, and
        # DDP all-reduces the summed gradients once, in the second pass, which reaches every parameter (the
        # mixed loss leaves BiSeNet's auxiliary heads out).
        with self._no_sync(), self.autocast:
            logits = main_output(self.ddp(self._input(mixed)))
            per_pixel = F.cross_entropy(logits, mix.label, ignore_index=IGNORE_INDEX, reduction="none")
            mixed_loss = (per_pixel * weight * valid).sum() / valid.sum().clamp(min=1.0)
            self._backward(mixed_loss)
        del logits, per_pixel
        with self.autocast:
            source_loss = self._labelled_loss(images, labels)
        self._backward(source_loss)
        target_pixels = (~mix.mask).float()
        confident = (weight * target_pixels).sum() / target_pixels.sum().clamp(min=1.0)
        return {
            "loss": source_loss.detach() + mixed_loss.detach(),
            "source": source_loss.detach(),
            "mixed": mixed_loss.detach(),
            "confident": confident,
        }

    def _rare_class_weights(self) -> Tensor:
        """Each labelled image's probability under rare class sampling, from one pass over the labels."""
        started = time.perf_counter()
        counts = class_pixel_counts(self.data.labeled, loader_workers(self.config), self.rank, self.world)
        if self.world > 1:  # each rank counted its share of the images
            dist.all_reduce(counts, group=self.control)
        weights, class_probability = rare_class_weights(counts, self.config.rcs_temperature)
        if self.is_main:
            print(
                f"{describe_rare_class_sampling(weights, class_probability)} "
                f"({len(counts)} labels counted in {time.perf_counter() - started:.1f} s)",
                flush=True,
            )
        return weights

    def _make_teacher(self) -> nn.Module:
        teacher = copy.deepcopy(self.model).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher

    def _train_step(self, labeled: Batches, target: Batches | None) -> dict[str, Tensor]:
        """One optimiser step on the next batch(es): no host synchronisation."""
        torch.manual_seed(
            (self.config.seed * 1_000_003 + self.step) * 1_009 + self.rank
        )  # anything else random
        images, labels = self._at_least_two(*self._labeled_batch(next(labeled)))
        self.optimizer.zero_grad(set_to_none=True)
        if self.config.method == "none":
            losses = self.supervised_step(images, labels)
        else:
            (target_images,) = self._at_least_two(self._to_device(next(target)[0]))
            count = min(images.shape[0], target_images.shape[0])  # pixel by pixel: as many of each
            step = self.fda_step if self.config.method == "fda" else self.dacs_step
            losses = step(images[:count], labels[:count], target_images[:count])
        self.scaler.step(self.optimizer)  # skipped on the device when a gradient is NaN or inf
        self.scaler.update(None if self.precision == torch.float16 else 1.0)
        self.scheduler.step()
        if self.teacher is not None:
            ema_update(self.teacher, self.model, self.step, momentum=self.config.dacs_ema)
        finite = torch.isfinite(losses["loss"])
        self.nonfinite = torch.where(finite, torch.zeros_like(self.nonfinite), self.nonfinite + 1)
        reached = (self.nonfinite >= self.config.max_nonfinite_steps) & (self.nonfinite_limit_step < 0)
        self.nonfinite_limit_step = torch.where(reached, self.step + 1, self.nonfinite_limit_step)
        return losses

    # ------------------------------------------------------------------------------------------ loop
    def run(self, stop_after: int | None = None, on_step: Callable[[int, int], None] | None = None) -> Path:
        """Train to the end (or stop, resumable, after ``stop_after`` more steps); ``on_step(step,
        total)``."""
        config = self.config
        stop_at = self.total if stop_after is None else min(self.total, self.step + stop_after)
        pin = self.device.type == "cuda"
        labeled = Batches(
            self.data.labeled,
            config,
            config.seed,
            self.step,
            self.rank,
            self.world,
            pin,
            self.labeled_weights,
        )
        target = (
            Batches(self.data.target, config, config.seed + 1, self.step, self.rank, self.world, pin)
            if self.data.target is not None
            else None
        )
        if self.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.writer = SummaryWriter(str(self.out_dir / "tb"), purge_step=self.step)
        steps_per_epoch = max(1, self.total // max(1, config.epochs)) if config.iterations <= 0 else 0
        save_every = config.checkpoint_every or steps_per_epoch or max(1, self.total // 10)
        check_every = min(config.log_every, config.max_nonfinite_steps)
        previous = self._install_signal_handlers()
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(
                total=self.total, initial=self.step, desc=config.variant, unit="step", dynamic_ncols=True
            )
        self.model.train()
        started, first_step, seen, looping = time.perf_counter(), self.step, 0, True
        try:
            while self.step < self.total:
                losses = self._train_step(labeled, target)
                self.step += 1
                seen += config.batch_size * self.world
                if self.step % check_every == 0 or self.step == self.total:
                    self._check_nonfinite(final=self.step == self.total)
                if self.is_main and (self.step % config.log_every == 0 or self.step == self.total):
                    self._log(losses, seen / (time.perf_counter() - started), labeled, target, bar)
                if bar is not None:
                    bar.update(1)
                if config.eval_every and self.step % config.eval_every == 0 and self.step < self.total:
                    self._evaluate_and_keep_best()
                if on_step is not None:
                    on_step(self.step, self.total)
                stop, timed_save = self._agree_on_stop_and_save()
                stopping_early = (
                    self.step == stop_at < self.total
                )  # the end itself saves after the evaluation
                if (
                    stop
                    or timed_save
                    or stopping_early
                    or (self.step % save_every == 0 and self.step < self.total)
                ):
                    self._save_resume_state()
                if stop:
                    raise KeyboardInterrupt(self.stop_requested or "stopped on another rank")
                if stopping_early:
                    return self.out_dir
            self.seconds, looping = time.perf_counter() - started, False  # the training loop alone
            self._evaluate_and_keep_best()
            self._save_resume_state()
        finally:
            if looping:
                self.seconds = time.perf_counter() - started
            self.data_wait_seconds = labeled.wait_seconds + (
                target.wait_seconds if target is not None else 0.0
            )
            if bar is not None:
                bar.close()
            if self.progress and self.step > first_step:
                print(
                    f"{self.step - first_step} steps in {self.seconds:.1f} s, "
                    f"{100 * self.data_wait_seconds / max(self.seconds, 1e-9):.0f}% of it waiting for data",
                    flush=True,
                )
            if self.writer is not None:
                self.writer.close()
            self._restore_signal_handlers(previous)
        return self.out_dir

    def _log(
        self, losses: dict[str, Tensor], rate: float, labeled: Batches, target: Batches | None, bar
    ) -> None:
        values = {name: float(value) for name, value in losses.items()}  # the host sync of a logging step
        for name, value in values.items():
            self.writer.add_scalar(f"train/{name}", value, self.step)
        lr = self.optimizer.param_groups[0]["lr"]
        self.writer.add_scalar("train/lr", lr, self.step)
        self.writer.add_scalar("train/images_per_s", rate, self.step)
        self.writer.add_scalar("train/loss_scale", self.scaler.get_scale(), self.step)
        waited = labeled.wait_seconds + (target.wait_seconds if target is not None else 0.0)
        self.writer.add_scalar("train/data_wait_s", waited, self.step)
        if bar is not None:
            bar.set_postfix(loss=f"{values['loss']:.3f}", lr=f"{lr:.2e}", img_s=f"{rate:.1f}")

    def _check_nonfinite(self, final: bool = False) -> None:
        """Stop when the loss was NaN or inf ``max_nonfinite_steps`` steps in a row (on any rank): each such
        step
        was skipped, and shorter runs of them (a float16 overflow, one bad batch) let the run go on. At the
        end,
        a run whose last step's loss was not finite saves no final model: its weights give non-finite
        losses."""
        state = torch.stack([self.nonfinite_limit_step, self.nonfinite])
        if self.world > 1:
            dist.all_reduce(state, op=dist.ReduceOp.MAX)
        limit_step, streak = (int(v) for v in state)  # the host sync of a checking step
        hint = f"{self._kept_checkpoint()} Try a lower lr (now {self.config.lr})."
        if limit_step >= 0:
            raise TrainingError(
                f"the loss was NaN or inf in {self.config.max_nonfinite_steps} consecutive steps "
                f"(max_nonfinite_steps), the last at step {limit_step}; stopped: those steps were skipped, "
                f"leaving the weights as they were. {hint}"
            )
        if final and streak:
            raise TrainingError(
                f"the loss was NaN or inf in the last {streak} step(s), the last at step {self.step}; "
                f"stopped without saving a final model: the final weights give non-finite losses. {hint}"
            )

    def _agree_on_stop_and_save(self) -> tuple[bool, bool]:
        """(stop now, save now because checkpoint_minutes passed): the same answer on every rank."""
        minutes = self.config.checkpoint_minutes
        timed = bool(minutes) and time.monotonic() - self.last_save >= 60.0 * minutes and self.is_main
        stop = self.stop_requested is not None
        if self.control is not None:
            flags = torch.tensor([int(stop), int(timed)], dtype=torch.int32)
            dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=self.control)
            stop, timed = bool(flags[0]), bool(flags[1])
        return stop, timed

    # ------------------------------------------------------------------------------------ evaluation
    def _evaluate_and_keep_best(self) -> None:
        if self.data.val is None:
            return
        # The student is the model we ship (as DACS does), also for DACS runs. Every rank scores its share.
        matrix = evaluate(
            self.model,
            self.data.val,
            self.device,
            limit=self.config.eval_limit,
            precision=self.precision,
            num_workers=loader_workers(self.config),
            mean=self.data.labeled.mean,
            std=self.data.labeled.std,
        )
        self.model.train()
        miou = 100.0 * matrix.miou()
        self.history.append({"step": self.step, "miou": round(miou, 2)})
        if self.writer is not None:
            self.writer.add_scalar("val/miou", miou, self.step)
        # Without periodic evaluation the shipped model is the final one (no selection on target labels).
        if miou > self.best_miou or not self.config.eval_every:
            self.best_miou = miou
            if self.is_main:
                summary = matrix.summary()
                meta = self._metadata(
                    metrics={
                        **self._evaluation_record(),
                        "miou": summary["miou"],
                        "pixel_accuracy": summary["pixel_accuracy"],
                        "iou": summary["iou"],
                        "confusion": matrix.matrix.cpu().tolist(),
                        "step": self.step,
                        "selected_by": "final step" if not self.config.eval_every else "best val mIoU",
                    }
                )
                save_checkpoint(self.model, self.out_dir, meta)

    def _evaluation_record(self) -> dict[str, Any]:
        """What the evaluation was measured on, and how."""
        kind = self.train_data_info.get("kind", "unknown")
        val = self.data.val
        count = min(self.config.eval_limit, len(val)) if self.config.eval_limit else len(val)
        limit = f" (first {count} images)" if self.config.eval_limit else ""
        return {
            "eval_data": f"{kind} cityscapes-layout val, {len(val)} images{limit}",
            "eval_kind": kind,
            "eval_size": list(self.config.cityscapes_size),
            "protocol": evaluation_protocol(self.config.cityscapes_size, self.config.eval_full_resolution),
        }

    def _metadata(self, **fields: Any) -> dict[str, Any]:
        h = self.config.cityscapes_size[1]
        w = self.config.cityscapes_size[0]
        return default_metadata(
            self.config.model,
            input_size=[h, w],
            mean=list(self.data.labeled.mean),
            std=list(self.data.labeled.std),
            variant=self.config.variant,
            description=self.config.description,
            method=self.config.method,
            augment=self.config.augment,
            train_data=self.train_data_info,
            steps=self.step,
            total_steps=self.total,
            config=resume.jsonable(self.config.as_dict()),
            history=self.history,
            **fields,
        )

    # ------------------------------------------------------------------------------ resume, signals
    def _save_resume_state(self) -> None:
        # Every rank checks (the weights are the same on all), so all stop together on a bad state.
        broken = [
            name
            for name, t in self.model.state_dict().items()
            if t.is_floating_point() and not bool(torch.isfinite(t).all())
        ]
        if broken:
            raise TrainingError(
                f"the weights became NaN or inf ({len(broken)} tensors, e.g. {broken[0]}) at step "
                f"{self.step}; stopped without saving them. {self._kept_checkpoint()} Try a lower lr (now "
                f"{self.config.lr})."
            )
        self.last_save = time.monotonic()
        if self.is_main:
            self._write_resume_state()
        if self.control is not None:
            dist.barrier(group=self.control)  # no rank goes on (or reads the state) before it is complete

    def _write_resume_state(self) -> None:
        folder = resume.new_state_folder(self.out_dir, self.step)
        save_checkpoint(self.model, folder, self._metadata())
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }
        if self.teacher is not None:
            state["teacher"] = self.teacher.state_dict()
        atomic_write(folder / resume.TRAINER_FILE, lambda tmp: torch.save(state, tmp))
        resume.write_progress(
            folder,
            {
                "step": self.step,
                "total": self.total,
                "best_miou": self.best_miou,
                "history": self.history,
                "config": self.config.as_dict(),
                "precision": PRECISION_NAMES[self.precision],
                "world_size": self.world,
            },
        )
        resume.commit_state(self.out_dir, folder)

    def _kept_checkpoint(self) -> str:
        folder = resume.resume_folder(self.out_dir)
        if folder is None:
            return "No checkpoint had been saved yet."
        step = resume.read_progress(self.out_dir)[1]["step"]
        return f"The last good checkpoint (step {step}) is kept in {folder}."

    def _load_resume_state(self) -> None:
        try:
            folder, progress = resume.read_progress(self.out_dir)
        except ValueError as exc:
            raise TrainingError(f"--resume: {exc}") from exc
        differs = resume.settings_mismatch(progress["config"], self.config.as_dict())
        if differs:
            raise TrainingError(
                f"--resume: {self.out_dir} was trained with {differs}; start a new run (another --out) for "
                "other settings"
            )
        saved_world = int(progress.get("world_size", 1))
        if saved_world != self.world:
            raise TrainingError(
                f"--resume: {self.out_dir} was trained on {saved_world} process(es) and this run has "
                f"{self.world}: the data order and the number of steps depend on it. Resume with the same "
                f"number of processes (torchrun --nproc_per_node {saved_world}), or start a new run"
            )
        saved_precision = progress.get("precision", "float32")
        precision = PRECISION_NAMES[self.precision]
        from segdemo.checkpoints import CheckpointError, load_model

        try:
            model, _ = load_model(folder, device=self.device)
            # Tensors only: a trainer.pt whose unpickling would run code is refused, never executed.
            state = torch.load(folder / resume.TRAINER_FILE, map_location=self.device, weights_only=True)
            self.optimizer.load_state_dict(state["optimizer"])
            if "scheduler" in state:
                self.scheduler.load_state_dict(state["scheduler"])
            else:  # saved by an earlier version, which set the learning rates itself
                self.scheduler.last_epoch = int(progress["step"])
            # The loss scale carries over only from float16 to float16; an empty state (an earlier version's
            # disabled scaler) carries nothing either.
            if saved_precision == precision == "float16" and state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            if self.teacher is not None:
                self.teacher.load_state_dict(state["teacher"])
        except CheckpointError as exc:
            raise TrainingError(f"--resume: {exc}") from exc
        except (
            Exception
        ) as exc:  # torch.load raises UnpicklingError, RuntimeError, EOFError, ... on bad files
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise TrainingError(
                f"--resume: cannot load {folder / resume.TRAINER_FILE} ({first_line}); only tensors are "
                "accepted (torch.load weights_only=True). It may be truncated or hold pickled code; start "
                "without --resume"
            ) from exc
        self.model.load_state_dict(model.state_dict())
        self.step, self.best_miou, self.history = progress["step"], progress["best_miou"], progress["history"]
        if saved_precision != precision and self.is_main:
            print(
                f"resuming a run trained in {saved_precision} in "
                f"{precision}{': the loss scale starts afresh' if precision == 'float16' else ''}",
                flush=True,
            )

    def _install_signal_handlers(self) -> dict[int, Any]:
        previous = {}
        if threading_is_not_main():
            return previous

        def request_stop(signum, _frame):
            self.stop_requested = signal.Signals(signum).name

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, request_stop)
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def threading_is_not_main() -> bool:
    import threading

    return threading.current_thread() is not threading.main_thread()
