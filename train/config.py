"""Training configuration: one dataclass, one small file per variant under ``train/configs/``.

Defaults are the report's settings (50 epochs, GTA5 at 1280x720, Cityscapes at 1024x512, Adam with
lr 1e-3 and a poly decay). Any field can be overridden on the command line as ``field=value``.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass, fields
from typing import Any

from segdemo.dacs import CONFIDENCE_THRESHOLD

METHODS = ("none", "fda", "dacs")
AUGMENTATIONS = ("none", "aug1", "aug2", "aug12")
AMP_DTYPES = ("auto", "bf16", "fp16")


@dataclass
class Config:
    variant: str
    description: str
    model: str = "bisenet"  # "bisenet" | "deeplabv2"
    labeled: str = "gta5"  # the labeled training set: "gta5" (source) or "cityscapes" (target train split)
    method: str = "none"  # "none" | "fda" | "dacs" (the latter two also read unlabeled target train images)
    augment: str = "none"  # "none" | "aug1" | "aug2" | "aug12" (applied to the labeled images)
    gta5_size: tuple[int, int] = (1280, 720)  # (width, height)
    cityscapes_size: tuple[int, int] = (1024, 512)  # (width, height), training and evaluation
    batch_size: int = 4
    epochs: int = 50
    iterations: int = 0  # > 0 overrides epochs with a fixed number of optimiser steps
    optimizer: str = "adam"  # "adam" | "sgd"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "poly"  # "poly" | "constant"
    poly_power: float = 0.9
    head_lr_mult: float = 1.0  # DeepLabV2 trains its classifier with 10x the learning rate
    aux_weight: float = 1.0  # BiSeNet's two auxiliary losses
    # > 0: online hard example mining on the labelled loss (BiSeNet's reference training uses 0.7)
    ohem_threshold: float = 0.0
    # > 0: rare class sampling (DAFormer, 0.01 there): labelled images are drawn with replacement, those that
    # hold the rarest classes more often; the temperature flattens (large) or sharpens (small) the draw
    rcs_temperature: float = 0.0
    # FDA
    fda_beta: float = 0.01
    fda_entropy_weight: float = 0.0  # the FDA paper's Charbonnier entropy on target predictions (0.005)
    fda_eta: float = 2.0
    # DACS
    dacs_threshold: float = CONFIDENCE_THRESHOLD
    # the weight of the target pixels' pseudo-labels: "share", one per image (the share of its pixels the
    # teacher is at least dacs_threshold sure of; DACS's default), or "pixel", 1 where it is that sure, else 0
    dacs_weight: str = "share"
    dacs_ema: float = 0.99
    dacs_color_jitter: float = 0.2
    dacs_blur: bool = True
    # Teacher BatchNorm on target images: "batch" statistics (DACS's code keeps its teacher in train mode)
    # or the "running" statistics the student gathered on source and mixed images.
    dacs_teacher_bn: str = "batch"
    # run
    pretrained: str = ""  # ImageNet backbone file ("imagenet" = torchvision's cache); empty = from scratch
    init_from: str = (
        ""  # start from this checkpoint's weights (our folder or a .pth); the schedule starts at 0
    )
    amp: bool = True  # mixed precision: on CUDA by default (amp_dtype), on the CPU only with amp_dtype=bf16
    # "auto": bfloat16 on compute capability 8.0 and above (A100, H100, RTX 30xx+), float16 with a loss scaler
    # below (T4, P100, V100); "bf16" / "fp16" force one (bf16 also runs on a CPU).
    amp_dtype: str = "auto"
    channels_last: bool = True  # NHWC activations: faster convolutions on GPUs with tensor cores and on CPUs
    num_workers: int = -1  # loader processes per training process; -1: the CPU cores this process may use
    cache_dir: str = ""  # keep decoded, resized samples here (segdemo.sample_cache); later epochs read them
    in_memory: bool = False  # decode the training images once and keep them in RAM (small sets: the demo)
    seed: int = 0
    sync_bn: bool = False
    eval_every: int = 0  # evaluate on the target val split every N steps (0 = at the end only)
    eval_limit: int = 0  # evaluate on the first N val images only (0 = all)
    eval_full_resolution: bool = False  # score against the labels at their native size (2048x1024 Cityscapes)
    checkpoint_every: int = 0  # also save "last" every N steps (0 = once per epoch)
    checkpoint_minutes: float = 10.0  # and whenever this many minutes passed since the last save (0 = never)
    max_nonfinite_steps: int = (
        20  # stop when the loss is NaN or inf this many steps in a row (each is skipped)
    )
    bad_samples: str = "stop"  # a corrupt image or label: "stop" with its path, or "skip" it with a warning
    log_every: int = 20

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        checks = [
            (
                self.model in ("bisenet", "deeplabv2"),
                f"model must be bisenet or deeplabv2, not {self.model!r}",
            ),
            (
                self.labeled in ("gta5", "cityscapes"),
                f"labeled must be gta5 or cityscapes, not {self.labeled!r}",
            ),
            (self.method in METHODS, f"method must be one of {METHODS}, not {self.method!r}"),
            (self.augment in AUGMENTATIONS, f"augment must be one of {AUGMENTATIONS}, not {self.augment!r}"),
            (self.optimizer in ("adam", "sgd"), f"optimizer must be adam or sgd, not {self.optimizer!r}"),
            (
                self.schedule in ("poly", "constant"),
                f"schedule must be poly or constant, not {self.schedule!r}",
            ),
            (
                self.batch_size >= 2,
                "batch_size must be at least 2 (BatchNorm on pooled 1x1 features needs two)",
            ),
            (self.epochs >= 1 or self.iterations >= 1, "epochs or iterations must be positive"),
            (self.lr > 0, "lr must be positive"),
            (0 <= self.fda_beta < 0.5, "fda_beta must be in [0, 0.5)"),
            (
                self.dacs_weight in ("share", "pixel"),
                f"dacs_weight must be share or pixel, not {self.dacs_weight!r}",
            ),
            (
                self.dacs_teacher_bn in ("batch", "running"),
                f"dacs_teacher_bn must be batch or running, not {self.dacs_teacher_bn!r}",
            ),
            (
                self.bad_samples in ("stop", "skip"),
                f"bad_samples must be stop or skip, not {self.bad_samples!r}",
            ),
            (self.amp_dtype in AMP_DTYPES, f"amp_dtype must be one of {AMP_DTYPES}, not {self.amp_dtype!r}"),
            (0.0 <= self.ohem_threshold < 1.0, "ohem_threshold must be in [0, 1) (0 = plain cross-entropy)"),
            (self.rcs_temperature >= 0.0, "rcs_temperature must be 0 (off) or positive"),
            (0.0 <= self.dacs_ema < 1.0, "dacs_ema must be in [0, 1)"),
            (0.0 <= self.dacs_threshold <= 1.0, "dacs_threshold must be in [0, 1]"),
            (0.0 <= self.dacs_color_jitter <= 1.0, "dacs_color_jitter must be in [0, 1]"),
            (self.max_nonfinite_steps >= 1, "max_nonfinite_steps must be at least 1"),
            (self.checkpoint_minutes >= 0, "checkpoint_minutes must be 0 (off) or positive"),
            (self.num_workers >= -1, "num_workers must be -1 (auto) or a count"),
            (self.log_every >= 1, "log_every must be at least 1"),
            (
                all(s % 8 == 0 for s in (*self.gta5_size, *self.cityscapes_size)),
                "sizes must be multiples of 8 (BiSeNet upsamples its 1/8 spatial path x8 to the output)",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"{self.variant}: {message}")

    @property
    def uses_target_images(self) -> bool:
        return self.method in ("fda", "dacs")

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _parse_value(template: Any, text: str) -> Any:
    """Parse ``text`` to the type of the field's current value."""
    if isinstance(template, bool):
        lowered = text.lower()
        if lowered not in ("1", "0", "true", "false", "yes", "no"):
            raise ValueError(f"expected true/false, got {text!r}")
        return lowered in ("1", "true", "yes")
    if isinstance(template, int):
        return int(text)
    if isinstance(template, float):
        return float(text)
    if isinstance(template, tuple):
        parts = text.lower().replace("x", ",").split(",")
        if len(parts) != 2:
            raise ValueError(f"expected WIDTHxHEIGHT, got {text!r}")
        return (int(parts[0]), int(parts[1]))
    return text


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    """Apply ``field=value`` strings, e.g. ``["lr=2.5e-4", "optimizer=sgd", "gta5_size=640x360"]``."""
    known = {f.name: f for f in fields(Config) if f.name not in ("variant", "description")}
    changes: dict[str, Any] = {}
    for item in overrides:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in known:
            raise ValueError(f"bad override {item!r}: use field=value with a field among {', '.join(known)}")
        try:
            changes[name] = _parse_value(getattr(config, name), text.strip())
        except ValueError as exc:
            raise ValueError(f"bad value for {name}: {exc}") from exc
    return config.replace(**changes)


def variants() -> dict[str, Config]:
    """Every variant defined under ``train/configs/``, by name, in the report's order."""
    from train import configs

    found = {}
    for info in pkgutil.iter_modules(configs.__path__):
        module = importlib.import_module(f"train.configs.{info.name}")
        found[module.CONFIG.variant] = module.CONFIG
    order = configs.REPORT_ORDER
    return {name: found[name] for name in sorted(found, key=lambda n: order.index(n) if n in order else 99)}


def get_variant(name: str) -> Config:
    table = variants()
    if name not in table:
        raise ValueError(f"unknown variant {name!r}; `python -m train list` shows: {', '.join(table)}")
    return table[name]
