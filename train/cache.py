"""``python -m train cache``: fill the sample cache of a variant's data once, on every CPU core.

The datasets are exactly the ones ``python -m train run`` builds for the same config (same sizes, same
label handling), so the run finds every entry it needs.
"""

from __future__ import annotations

import time
from pathlib import Path

from torch.utils.data import DataLoader

from train.config import Config
from train.data import available_cores, build_data


def fill_cache(config: Config, gta5: Path | None, cityscapes: Path | None, workers: int = -1) -> str:
    """Read every sample of the run's datasets once through the cache; returns a one-line report per set."""
    if not config.cache_dir:
        raise ValueError("no cache folder: pass --cache DIR")
    data = build_data(config, gta5, cityscapes)
    workers = available_cores() if workers < 0 else workers
    lines = []
    for name, dataset in (("labeled", data.labeled), ("target", data.target), ("val", data.val)):
        if dataset is None:
            continue
        before = dataset.cache.entries()
        started = time.perf_counter()
        loader = DataLoader(dataset, batch_size=None, num_workers=workers)  # one sample at a time
        for _ in loader:
            pass
        seconds = time.perf_counter() - started
        added = dataset.cache.entries() - before
        lines.append(
            f"{name}: {len(dataset)} samples ({dataset.root}) in {seconds:.1f} s, "
            f"{len(dataset) / max(seconds, 1e-9):.1f} samples/s on {max(workers, 1)} core(s); {added} new "
            "entries"
        )
    lines.append(
        f"cache: {config.cache_dir} ({data.labeled.cache.entries()} entries); train with "
        f"cache_dir={config.cache_dir}"
    )
    return "\n".join(lines)


__all__ = ["fill_cache"]
