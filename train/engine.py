"""The training loop: one plain loop for every variant (supervised, FDA, DACS), CPU or GPU, DDP-ready.

Read top to bottom: data -> model -> optimiser -> loop (one ``*_step`` function per method) ->
evaluation -> checkpoints. Everything random in the main process is re-seeded from (seed, step), and
the data order from (seed, epoch), so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler
from torchvision.transforms import v2

from segdemo.augment import build_augmentation
from segdemo.checkpoints import default_metadata, save_checkpoint
from segdemo.dacs import batch_statistics, class_mix, ema_update, pixel_weight
from segdemo.datasets import GTA5, Cityscapes, DatasetError, normalize
from segdemo.fda import entropy_loss, fda_source_to_target
from segdemo.labels import IGNORE_INDEX
from segdemo.metrics import ConfusionMatrix
from segdemo.models import build_model
from train.config import Config

LAST_DIR = "last"  # resume state lives in <out>/last/; the model to use lives in <out>/
# <out>/last is a link to the newest complete <out>/.last-<step>-<suffix>/ folder (see _save_resume_state).
STATE_PREFIX = ".last-"
PROGRESS_FILE = "progress.json"


class TrainingError(RuntimeError):
    """A run that cannot start or continue; the message says why."""


@dataclass
class Data:
    labeled: torch.utils.data.Dataset
    target: torch.utils.data.Dataset | None  # unlabeled target train images (FDA, DACS)
    val: torch.utils.data.Dataset | None


def data_kind(root: str | Path | None) -> str:
    """"procedural" for data made by ``segdemo.synthetic``, else "real"."""
    from segdemo.synthetic import is_procedural

    return "procedural" if root and is_procedural(root) else "real"


def describe_data(config: Config, gta5: str | Path | None, cityscapes: str | Path | None) -> dict[str, Any]:
    """What a checkpoint was trained on, for its metadata (procedural results must say so)."""
    roots = [cityscapes] + ([gta5] if config.labeled == "gta5" else [])
    kinds = {data_kind(r) for r in roots}
    return {
        "kind": kinds.pop() if len(kinds) == 1 else "mixed",
        "labeled": config.labeled,
        "target": "cityscapes",
        "uses_target_images": config.uses_target_images,
        "gta5_root": str(gta5) if gta5 and config.labeled == "gta5" else None,
        "cityscapes_root": str(cityscapes),
    }


def build_data(config: Config, gta5: str | Path | None, cityscapes: str | Path | None) -> Data:
    """Datasets in [0, 1] (normalisation happens on the device, after FDA / mixing)."""
    if config.labeled == "gta5" and not gta5:
        raise TrainingError(f"{config.variant} trains on GTA5: pass --gta5 DIR")
    if not cityscapes:
        raise TrainingError(f"{config.variant} needs Cityscapes (target images and the val split): pass --cityscapes DIR")
    augmentation = build_augmentation(config.augment)
    bad = config.bad_samples  # "stop" at a corrupt file (naming it) or "skip" it with a warning
    if config.labeled == "gta5":
        labeled = GTA5(gta5, size=config.gta5_size, transform=augmentation, normalize=False, on_bad_sample=bad)
        train_size = config.gta5_size
    else:
        labeled = Cityscapes(cityscapes, "train", size=config.cityscapes_size, transform=augmentation,
                             normalize=False, on_bad_sample=bad)
        train_size = config.cityscapes_size
    # Target images are loaded at the labeled size: FDA and ClassMix combine the two pixel by pixel.
    target = (Cityscapes(cityscapes, "train", size=train_size, normalize=False, on_bad_sample=bad)
              if config.uses_target_images else None)
    val = Cityscapes(cityscapes, "val", size=config.cityscapes_size, normalize=True, on_bad_sample=bad)
    if len(labeled) < config.batch_size:
        raise TrainingError(f"{len(labeled)} labeled images are fewer than batch_size={config.batch_size}")
    return Data(labeled, target, val)


class EpochSampler(Sampler[int]):
    """A fresh permutation per epoch from (seed, epoch), split across ranks, able to start mid-epoch."""

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.size, self.batch_size, self.seed, self.rank, self.world = size, batch_size, seed, rank, world
        self.steps_per_epoch = size // (batch_size * world)
        self.epoch, self.skip_steps = 0, 0

    def set_epoch(self, epoch: int, skip_steps: int = 0) -> None:
        self.epoch, self.skip_steps = epoch, skip_steps

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator)[: self.steps_per_epoch * self.batch_size * self.world]
        mine = order[self.rank :: self.world]
        return iter(mine[self.skip_steps * self.batch_size :].tolist())

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.skip_steps) * self.batch_size


def batches(dataset, config: Config, seed: int, start_step: int, rank: int, world: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless batches; the batch at global step s is the same whether or not the run was resumed."""
    sampler = EpochSampler(len(dataset), config.batch_size, seed, rank, world)
    if sampler.steps_per_epoch == 0:
        raise TrainingError(f"{len(dataset)} images cannot fill one batch of {config.batch_size} x {world} ranks")
    epoch, skip = divmod(start_step, sampler.steps_per_epoch)
    while True:
        sampler.set_epoch(epoch, skip)
        loader = DataLoader(
            dataset, batch_size=config.batch_size, sampler=sampler, drop_last=True,
            num_workers=config.num_workers, persistent_workers=False,
            generator=torch.Generator().manual_seed(seed * 7919 + epoch),  # seeds augmentation in workers
            pin_memory=torch.cuda.is_available(),
        )
        yield from loader
        epoch, skip = epoch + 1, 0


def _next_batch(loader: Iterator[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """The next batch; a bad sample read in a loader worker is reported by its own message (naming the
    file), not by the worker's traceback that DataLoader wraps around it."""
    try:
        return next(loader)
    except DatasetError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        if len(lines) > 1 and lines[0].startswith("Caught DatasetError"):
            raise DatasetError(lines[-1].removeprefix("segdemo.datasets.DatasetError: ")
                               .removeprefix("DatasetError: ")) from None
        raise


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


def learning_rate(config: Config, step: int, total: int) -> float:
    if config.schedule == "constant":
        return config.lr
    return config.lr * (1.0 - step / total) ** config.poly_power


def build_optimizer(config: Config, model: nn.Module) -> torch.optim.Optimizer:
    groups = [
        {"params": [p for p in model.backbone_parameters() if p.requires_grad], "lr_mult": 1.0},
        {"params": [p for p in model.head_parameters() if p.requires_grad], "lr_mult": config.head_lr_mult},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)


def segmentation_loss(outputs: Tensor | tuple[Tensor, ...], label: Tensor, aux_weight: float) -> Tensor:
    """Cross-entropy on the main output plus the weighted auxiliary outputs (BiSeNet)."""
    if isinstance(outputs, Tensor):
        return F.cross_entropy(outputs, label, ignore_index=IGNORE_INDEX)
    main, *aux = outputs
    loss = F.cross_entropy(main, label, ignore_index=IGNORE_INDEX)
    for out in aux:
        loss = loss + aux_weight * F.cross_entropy(out, label, ignore_index=IGNORE_INDEX)
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
        self.train_data_info = train_data_info or {}
        self.progress = progress and self.is_main

        torch.manual_seed(config.seed)
        self.model = build_model(config.model, pretrained_backbone=config.pretrained or None).to(self.device)
        if config.init_from and not resume:
            self.model.load_state_dict(_initial_weights(config))
        if config.sync_bn and self.world > 1:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.teacher = self._make_teacher() if config.method == "dacs" else None
        self.optimizer = build_optimizer(config, self.model)
        self.total = total_steps(config, len(data.labeled), self.world)
        self.step = 0
        self.best_miou = -1.0
        self.history: list[dict[str, Any]] = []
        use_amp = config.amp and self.device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
        self.autocast = torch.autocast("cuda", dtype=self.amp_dtype, enabled=use_amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_amp and self.amp_dtype == torch.float16)
        if resume:
            self._load_resume_state()
        self.ddp = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.writer = None
        self.stop_requested: str | None = None

    # ----------------------------------------------------------------------------------------- steps
    def _normalize(self, images: Tensor) -> Tensor:
        return normalize(images, self.data.labeled.mean, self.data.labeled.std)

    def supervised_step(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        with self.autocast:
            loss = segmentation_loss(self.ddp(self._normalize(images)), labels, self.config.aux_weight)
        return {"loss": loss}

    def fda_step(self, images: Tensor, labels: Tensor, target: Tensor) -> dict[str, Tensor]:
        translated = fda_source_to_target(images, target, self.config.fda_beta).clamp_(0.0, 1.0)
        with self.autocast:
            seg = segmentation_loss(self.ddp(self._normalize(translated)), labels, self.config.aux_weight)
            losses = {"loss": seg, "seg": seg}
            if self.config.fda_entropy_weight > 0:
                ent = entropy_loss(main_output(self.ddp(self._normalize(target))).float(), eta=self.config.fda_eta)
                losses["entropy"] = ent
                losses["loss"] = seg + self.config.fda_entropy_weight * ent
        return losses

    def dacs_step(self, images: Tensor, labels: Tensor, target: Tensor) -> dict[str, Tensor]:
        statistics = batch_statistics(self.teacher) if self.config.dacs_teacher_bn == "batch" else nullcontext()
        with torch.no_grad(), self.autocast, statistics:
            probs = torch.softmax(self.teacher(self._normalize(target)).float(), dim=1)
        pseudo = probs.argmax(dim=1)
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.step)
        mix = class_mix(images, labels, target, pseudo, generator=generator)
        weight = pixel_weight(probs, mix.mask, self.config.dacs_threshold)
        mixed = self._mix_augment(mix.image)
        with self.autocast:
            source_loss = segmentation_loss(self.ddp(self._normalize(images)), labels, self.config.aux_weight)
            mixed_logits = main_output(self.ddp(self._normalize(mixed))).float()
            per_pixel = F.cross_entropy(mixed_logits, mix.label, ignore_index=IGNORE_INDEX, reduction="none")
            valid = (mix.label != IGNORE_INDEX).float()
            mixed_loss = (per_pixel * weight * valid).sum() / valid.sum().clamp(min=1.0)
        return {"loss": source_loss + mixed_loss, "source": source_loss, "mixed": mixed_loss,
                "confident": weight[~mix.mask].mean() if (~mix.mask).any() else weight.new_zeros(())}

    def _mix_augment(self, images: Tensor) -> Tensor:
        """DACS's strong augmentation of mixed images: colour jitter and Gaussian blur, per image."""
        strength = self.config.dacs_color_jitter
        ops: list[nn.Module] = []
        if strength > 0:
            ops.append(v2.RandomApply([v2.ColorJitter(strength, strength, strength, strength / 2)], p=0.8))
        if self.config.dacs_blur:
            ops.append(v2.RandomApply([v2.GaussianBlur(5, sigma=(0.15, 1.15))], p=0.5))
        if not ops:
            return images
        augment = v2.Compose(ops)
        return torch.stack([augment(image) for image in images]).clamp_(0.0, 1.0)

    def _make_teacher(self) -> nn.Module:
        teacher = copy.deepcopy(self.model).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher

    # ------------------------------------------------------------------------------------------ loop
    def run(self, stop_after: int | None = None, on_step: Callable[[int, int], None] | None = None) -> Path:
        """Train to the end (or stop, resumable, after ``stop_after`` more steps); ``on_step(step, total)``."""
        config = self.config
        stop_at = self.total if stop_after is None else min(self.total, self.step + stop_after)
        labeled = batches(self.data.labeled, config, config.seed, self.step, self.rank, self.world)
        target = (
            batches(self.data.target, config, config.seed + 1, self.step, self.rank, self.world)
            if self.data.target is not None else None
        )
        if self.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.writer = SummaryWriter(str(self.out_dir / "tb"), purge_step=self.step)
        steps_per_epoch = max(1, self.total // max(1, config.epochs)) if config.iterations <= 0 else 0
        save_every = config.checkpoint_every or steps_per_epoch or max(1, self.total // 10)
        previous = self._install_signal_handlers()
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=self.total, initial=self.step, desc=config.variant, unit="step", dynamic_ncols=True)
        try:
            self.model.train()
            seen, started = 0, time.perf_counter()
            while self.step < self.total:
                torch.manual_seed(config.seed * 1_000_003 + self.step)  # step-keyed: resume-exact
                images, labels = (t.to(self.device, non_blocking=True) for t in _next_batch(labeled))
                lr = learning_rate(config, self.step, self.total)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr * group["lr_mult"]
                if config.method == "none":
                    losses = self.supervised_step(images, labels)
                else:
                    target_images = _next_batch(target)[0].to(self.device, non_blocking=True)
                    step_fn = self.fda_step if config.method == "fda" else self.dacs_step
                    losses = step_fn(images, labels, target_images)
                loss = losses["loss"]
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"loss became {loss.item()} at step {self.step}; stopped before updating the weights. "
                        f"{self._kept_checkpoint()} Try a lower lr (now {config.lr})."
                    )
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                if self.teacher is not None:
                    ema_update(self.teacher, self.model, self.step)
                self.step += 1
                seen += images.shape[0] * self.world
                rate = seen / (time.perf_counter() - started)
                if self.is_main:
                    if self.step % config.log_every == 0 or self.step == self.total:
                        for name, value in losses.items():
                            self.writer.add_scalar(f"train/{name}", float(value.detach()), self.step)
                        self.writer.add_scalar("train/lr", lr, self.step)
                        self.writer.add_scalar("train/images_per_s", rate, self.step)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}", img_s=f"{rate:.1f}")
                if config.eval_every and self.step % config.eval_every == 0 and self.step < self.total:
                    self._evaluate_and_keep_best()
                if on_step is not None:
                    on_step(self.step, self.total)
                if self.stop_requested or self.step % save_every == 0 or self.step == stop_at:
                    self._save_resume_state()
                if self.stop_requested:
                    raise KeyboardInterrupt(self.stop_requested)
                if self.step == stop_at and stop_at < self.total:
                    return self.out_dir
            self._evaluate_and_keep_best()
            self._save_resume_state()
        finally:
            if bar is not None:
                bar.close()
            if self.writer is not None:
                self.writer.close()
            self._restore_signal_handlers(previous)
        return self.out_dir

    # ------------------------------------------------------------------------------------ evaluation
    def _evaluate_and_keep_best(self) -> None:
        if not self.is_main or self.data.val is None:
            return
        # The student is the model we ship (as DACS does), also for DACS runs.
        matrix = evaluate(self.model, self.data.val, self.device, limit=self.config.eval_limit)
        self.model.train()
        miou = 100.0 * matrix.miou()
        self.history.append({"step": self.step, "miou": round(miou, 2)})
        self.writer.add_scalar("val/miou", miou, self.step)
        # Without periodic evaluation the shipped model is the final one (no selection on target labels).
        if miou > self.best_miou or not self.config.eval_every:
            self.best_miou = miou
            summary = matrix.summary()
            meta = self._metadata(
                metrics={
                    "eval_data": self._eval_data_description(),
                    "eval_size": list(self.config.cityscapes_size),
                    "miou": summary["miou"],
                    "pixel_accuracy": summary["pixel_accuracy"],
                    "iou": summary["iou"],
                    "step": self.step,
                    "selected_by": "final step" if not self.config.eval_every else "best val mIoU",
                }
            )
            save_checkpoint(self.model, self.out_dir, meta)

    def _eval_data_description(self) -> str:
        kind = self.train_data_info.get("kind", "unknown")
        limit = f" (first {self.config.eval_limit} images)" if self.config.eval_limit else ""
        return f"{kind} cityscapes-layout val, {len(self.data.val)} images{limit}"

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
            config=_jsonable(self.config.as_dict()),
            history=self.history,
            **fields,
        )

    # ------------------------------------------------------------------------------ resume, signals
    def _save_resume_state(self) -> None:
        if not self.is_main:
            return
        broken = [name for name, t in self.model.state_dict().items()
                  if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        if broken:
            raise TrainingError(
                f"the weights became NaN or inf ({len(broken)} tensors, e.g. {broken[0]}) at step {self.step}; "
                f"stopped without saving them. {self._kept_checkpoint()} Try a lower lr (now {self.config.lr})."
            )
        # Each save writes a complete new folder, then switches the `last` link to it in one atomic rename:
        # killed at any moment (even SIGKILL), `last` names a state whose weights, optimiser and progress are
        # all of one step. Overwriting files in place would leave new weights beside old progress.
        self.out_dir.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=self.out_dir, prefix=f"{STATE_PREFIX}{self.step:09d}-"))
        save_checkpoint(self.model, folder, self._metadata())
        state = {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict()}
        if self.teacher is not None:
            state["teacher"] = self.teacher.state_dict()
        torch.save(state, folder / "trainer.pt")
        progress = {"step": self.step, "total": self.total, "best_miou": self.best_miou, "history": self.history,
                    "config": _jsonable(self.config.as_dict())}
        # Written last: a folder with progress.json is complete.
        (folder / PROGRESS_FILE).write_text(json.dumps(progress, indent=2))
        _switch_last(self.out_dir, folder)

    def _kept_checkpoint(self) -> str:
        folder = resume_folder(self.out_dir)
        if folder is None:
            return "No checkpoint had been saved yet."
        step = json.loads((folder / PROGRESS_FILE).read_text())["step"]
        return f"The last good checkpoint (step {step}) is kept in {self.out_dir / LAST_DIR}."

    def _load_resume_state(self) -> None:
        last = self.out_dir / LAST_DIR
        folder = resume_folder(self.out_dir)
        if folder is None:
            if (last / PROGRESS_FILE).is_file():
                raise TrainingError(f"--resume: {last / PROGRESS_FILE} is damaged (not the JSON this tool writes); "
                                    "start without --resume")
            raise TrainingError(f"--resume: no saved run in {last} (missing progress.json); start without --resume")
        try:
            progress = json.loads((folder / PROGRESS_FILE).read_text())
            saved = progress["config"]
            step, best_miou, history = int(progress["step"]), float(progress["best_miou"]), list(progress["history"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TrainingError(f"--resume: {folder / PROGRESS_FILE} is damaged ({exc}); start without --resume") \
                from exc
        for key in ("variant", "model", "method", "batch_size", "epochs", "iterations", "lr", "seed"):
            current = _jsonable(self.config.as_dict())[key]
            if saved.get(key) != current:
                raise TrainingError(f"--resume: {last} was trained with {key}={saved.get(key)!r}, now {current!r}")
        from segdemo.checkpoints import CheckpointError, load_model

        try:
            model, _ = load_model(folder, device=self.device)
            # Tensors only: a trainer.pt whose unpickling would run code is refused, never executed.
            state = torch.load(folder / "trainer.pt", map_location=self.device, weights_only=True)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
            if self.teacher is not None:
                self.teacher.load_state_dict(state["teacher"])
        except CheckpointError as exc:
            raise TrainingError(f"--resume: {exc}") from exc
        except Exception as exc:  # torch.load raises UnpicklingError, RuntimeError, EOFError, ... on bad files
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise TrainingError(
                f"--resume: cannot load {folder / 'trainer.pt'} ({first_line}); only tensors are accepted "
                "(torch.load weights_only=True). It may be truncated or hold pickled code; start without --resume"
            ) from exc
        self.model.load_state_dict(model.state_dict())
        self.step, self.best_miou, self.history = step, best_miou, history

    def _install_signal_handlers(self) -> dict[int, Any]:
        previous = {}
        if not self.is_main or threading_is_not_main():
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


def resume_folder(out_dir: str | Path) -> Path | None:
    """The newest complete resume state under ``out_dir`` (a folder holding progress.json), or None.

    Normally ``out_dir/last``; a run killed between writing a state and switching the link to it leaves a
    newer complete folder, which is taken instead.
    """
    out_dir = Path(out_dir)
    candidates = [out_dir / LAST_DIR] + [p for p in out_dir.glob(f"{STATE_PREFIX}*") if not p.is_symlink()]
    complete = []
    for folder in candidates:
        try:
            step = int(json.loads((folder / PROGRESS_FILE).read_text())["step"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # missing (not yet complete) or damaged
        complete.append((step, (folder / PROGRESS_FILE).stat().st_mtime_ns, folder))
    return max(complete)[2] if complete else None


def _switch_last(out_dir: Path, folder: Path) -> None:
    """Point ``out_dir/last`` at ``folder`` atomically, then delete the older state folders."""
    link = out_dir / LAST_DIR
    new_link = out_dir / f"{STATE_PREFIX}link-{os.getpid()}"
    new_link.unlink(missing_ok=True)
    new_link.symlink_to(folder.name)  # relative, so the run folder can be moved
    if link.is_dir() and not link.is_symlink():  # a last/ folder written by an earlier version
        os.replace(link, tempfile.mkdtemp(dir=out_dir, prefix=f"{STATE_PREFIX}legacy-"))  # still a candidate
    os.replace(new_link, link)
    for old in out_dir.glob(f"{STATE_PREFIX}*"):
        if old.is_symlink():
            old.unlink(missing_ok=True)  # a link left by a killed run
        elif old != folder:
            shutil.rmtree(old, ignore_errors=True)


def threading_is_not_main() -> bool:
    import threading

    return threading.current_thread() is not threading.main_thread()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@torch.inference_mode()
def evaluate(
    models: nn.Module | list[nn.Module], dataset, device: str | torch.device = "cpu", batch_size: int = 4,
    limit: int = 0,
) -> ConfusionMatrix:
    """Confusion matrix over ``dataset`` (normalised images, trainId labels).

    Several models are an ensemble: their softmax outputs are averaged (FDA's multi-band transfer).
    """
    models = [models] if isinstance(models, nn.Module) else list(models)
    device = torch.device(device)
    for model in models:
        model.eval()
    matrix = ConfusionMatrix(device=device)
    count = min(limit, len(dataset)) if limit else len(dataset)
    loader = DataLoader(torch.utils.data.Subset(dataset, range(count)), batch_size=batch_size, num_workers=0)
    for images, labels in loader:
        images = images.to(device)
        if len(models) == 1:
            scores = models[0](images)
        else:
            scores = sum(torch.softmax(model(images), dim=1) for model in models)
        matrix.update(scores.argmax(dim=1), labels.to(device))
    return matrix


def init_distributed() -> tuple[int, int]:
    """Initialise torch.distributed when launched by torchrun; returns (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return (dist.get_rank() if dist.is_initialized() else 0), world
