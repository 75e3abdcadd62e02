"""AdaBN (Li et al., "Revisiting Batch Normalization For Practical Domain Adaptation", 2016): a network's
BatchNorm statistics recomputed on unlabelled target images, nothing else changed.

Used as a diagnosis: how much of a source-trained network's loss on the target domain is in its BatchNorm
statistics alone, with no labels and no training (``python -m train evaluate --cityscapes ROOT --adapt-bn N``,
docs/results.md).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["batchnorm_layers", "never_learnt_statistics", "recompute_batchnorm"]


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics."""
    return [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


def never_learnt_statistics(model: nn.Module) -> bool:
    """True when every BatchNorm layer of ``model`` still holds its initial statistics (mean 0, variance 1):
    a network trained from scratch with frozen BatchNorm (DeepLabV2 here) learnt its weights through layers
    that only scale and shift, and new statistics change what those weights compute."""
    layers = batchnorm_layers(model)
    return bool(layers) and all(
        bool((layer.running_mean == 0).all() and (layer.running_var == 1).all()) for layer in layers
    )


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Replace the running mean and variance of every BatchNorm layer of ``model`` (in place) by their plain
    average over ``batches`` (network inputs, N x 3 x H x W, normalised as the model expects; each batch
    weighs the same), run through the network in eval mode (its inference form) with only the BatchNorm layers
    normalising each batch by its own statistics. Layers the inference form does not run keep their
    statistics; every other parameter and buffer stays as it was; the model is left in eval mode.

    Returns the number of images seen. Raises ValueError when the model has no BatchNorm layer with running
    statistics, when ``batches`` is empty, or for a batch of one image (BatchNorm needs two to normalise);
    the statistics are then those of the batches before it, so reload the model.
    """
    layers = batchnorm_layers(model)
    if not layers:
        raise ValueError("the model has no BatchNorm layer with running statistics: nothing to recompute")
    saved = [(layer, layer.momentum, copy.deepcopy(layer.state_dict())) for layer in layers]
    # The network in its inference form (eval mode: no dropout, no auxiliary heads), only its BatchNorm layers
    # in train mode, also where the network keeps them frozen (DeepLabV2's train() does).
    model.eval()
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average over the batches seen, not an exponential one
        layer.train()
    images = 0
    try:
        for batch in batches:
            if batch.dim() != 4 or batch.shape[0] < 2:
                raise ValueError(
                    f"batches must be N x 3 x H x W with N >= 2 (BatchNorm needs two images), got "
                    f"{tuple(batch.shape)}"
                )
            model(batch)
            images += batch.shape[0]
    finally:
        for layer, momentum, state in saved:
            layer.momentum = momentum
            layer.eval()
            if not layer.num_batches_tracked:  # not run by the inference form (an auxiliary head's)
                layer.load_state_dict(state)
    if images == 0:
        raise ValueError("no batches: BatchNorm statistics need at least one batch of target images")
    return images
