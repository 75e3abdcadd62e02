"""torch.distributed under torchrun: the process group, and BatchNorm synchronised across the ranks."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def init_distributed() -> tuple[int, int]:
    """Initialise torch.distributed when launched by torchrun; returns (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return (dist.get_rank() if dist.is_initialized() else 0), world


def sync_batchnorm(model: nn.Module) -> nn.Module:
    """SyncBatchNorm for the BatchNorms that train; frozen ones (DeepLabV2's) use running statistics that
    never change, so there is nothing to synchronise and they stay plain, frozen BatchNorms."""
    if not any(
        p.requires_grad for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()
    ):
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)
