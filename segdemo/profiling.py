"""The report's efficiency columns: parameters, FLOPs (fvcore) and latency / FPS.

FLOPs follow fvcore's convention, which is also the report's: one fused multiply-add counts as one.
"""

from __future__ import annotations

import statistics
import time
import warnings
from dataclasses import asdict, dataclass

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Parameters the network holds (frozen BN affine parameters included, shared ones counted once)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, height: int = 512, width: int = 1024) -> int:
    """fvcore FLOPs of one eval-mode forward pass at 1 x 3 x height x width."""
    from fvcore.nn import FlopCountAnalysis  # imported here: fvcore is slow to import and rarely needed

    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # fvcore traces with the deprecated torch.jit
            analysis = FlopCountAnalysis(model, torch.zeros(1, 3, height, width, device=device))
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            return int(analysis.total())
    finally:
        model.train(was_training)


@dataclass
class Latency:
    mean_ms: float
    std_ms: float
    median_ms: float
    fps: float
    runs: int
    device: str

    def as_dict(self) -> dict:
        return asdict(self)


def measure_latency(
    model: nn.Module,
    height: int = 512,
    width: int = 1024,
    batch: int = 1,
    warmup: int = 3,
    runs: int = 10,
    device: str | torch.device | None = None,
) -> Latency:
    """Time eval-mode forward passes: warm-up first, synchronised around each run on CUDA."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.to(device).eval()
    x = torch.randn(batch, 3, height, width, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            sync()
            start = time.perf_counter()
            model(x)
            sync()
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000.0)
    mean = statistics.fmean(times)
    return Latency(
        mean_ms=mean,
        std_ms=statistics.pstdev(times),
        median_ms=statistics.median(times),
        fps=1000.0 * batch / mean,
        runs=runs,
        device=torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)",
    )
