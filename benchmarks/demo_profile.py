"""Where ``python -m train demo``'s time goes: loading, training steps, checkpoint saves, evaluation.

For a supervised, an FDA and a DACS variant at the demo's settings (``train.demo.demo_config``), each
part is timed on its own, in this process, on the demo's procedural data (generated if absent):

* loading: one batch from the demo's loader (decode, resize to uint8), in the training process;
* training step: augmentation, forward, losses, backward and the optimiser on a batch already in memory;
* save: one resume state (weights, Adam's moments, teacher, progress), as written every
  ``checkpoint_every`` steps;
* evaluation: the final pass over the procedural val split.

Then the share of a variant's time that is not training, from these medians and the demo's step and
save counts. The demo's full wall time is measured by the demo itself (docs/results.md).

    python -m benchmarks.demo_profile            # 1 thread, 15 rounds
    python -m benchmarks.demo_profile --repeats 30
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import describe_device, markdown_table, median, section_header, write_section

VARIANTS = ("bisenet_gta5_aug12", "bisenet_gta5_fda", "bisenet_gta5_dacs")


def _timed(fn, repeats: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def profile_variant(variant: str, data_dir: Path, repeats: int) -> dict[str, float]:
    from segdemo.evaluation import evaluate
    from train.data import Batches, build_data
    from train.demo import demo_config, ensure_data
    from train.engine import Trainer

    gta5, cityscapes = ensure_data(data_dir)
    # No init_from: where the weights start does not change what a step costs.
    config = demo_config(variant).replace(init_from="")
    data = build_data(config, gta5, cityscapes)
    labeled = Batches(data.labeled, config, config.seed, 0, 0, 1)
    target = Batches(data.target, config, config.seed + 1, 0, 0, 1) if data.target is not None else None
    load_times = _timed(lambda: next(labeled), repeats)

    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(config, data, out, device="cpu", progress=False)
        trainer.model.train()
        batch = next(labeled)
        target_batch = next(target) if target is not None else None

        # The same batch every time: the step alone, without loading.
        same_labeled = itertools.repeat(batch)
        same_target = itertools.repeat(target_batch) if target is not None else None
        step_times = _timed(lambda: trainer._train_step(same_labeled, same_target), repeats)
        save_times = _timed(trainer._save_resume_state, max(3, repeats // 3), warmup=1)
        eval_times = _timed(
            lambda: evaluate(trainer.model, data.val, "cpu", mean=data.labeled.mean, std=data.labeled.std),
            3,
            warmup=0,
        )
    steps = config.iterations
    saves = steps // config.checkpoint_every + 1  # the periodic ones and the final one
    load, step, save, evaluation = (median(t) for t in (load_times, step_times, save_times, eval_times))
    total = steps * (load + step) + saves * save + evaluation
    return {
        "steps": steps,
        "saves": saves,
        "load": load,
        "step": step,
        "save": save,
        "eval": evaluation,
        "total": total,
        "not_training": 1.0 - steps * step / total,
    }


def _settings() -> str:
    from train.demo import demo_config

    config = demo_config(VARIANTS[0])
    w, h = config.gta5_size
    return (
        f"{w}x{h}, batch {config.batch_size}, {config.iterations} steps, images in memory, resume state "
        f"every {config.checkpoint_every} steps"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.demo_profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, default=Path("data/procedural"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows, load_shares = [], []
    for variant in VARIANTS:
        p = profile_variant(variant, args.data, args.repeats)
        load_shares.append(p["load"] / (p["load"] + p["step"]))
        rows.append(
            [
                variant,
                f"{p['load'] * 1e3:.0f}",
                f"{p['step'] * 1e3:.0f}",
                f"{p['save'] * 1e3:.0f} x {p['saves']}",
                f"{p['eval']:.1f}",
                f"{p['total']:.0f}",
                f"{100 * p['not_training']:.0f}%",
            ]
        )
    lines = [
        section_header("Where the demo's time goes (one variant each kind)", describe_device("cpu")),
        (
            f"Demo settings (`train.demo.demo_config`: {_settings()}), {args.threads} torch thread(s), "
            f"medians of {args.repeats} rounds after warm-up; the "
            "estimate is steps x (loading + step) + saves x save + evaluation."
        ),
        "",
        markdown_table(
            [
                "variant",
                "loading ms / batch",
                "training step ms",
                "save ms x count",
                "evaluation s",
                "estimated s",
                "not training",
            ],
            rows,
        ),
        "",
        (
            "Loading (decoding and resizing to uint8) is "
            f"{100 * min(load_shares):.0f}-{100 * max(load_shares):.0f}% of a step. The demo loads in its "
            "training process: on two cores a loader process would only compete with training for them. "
            "Augmentation is part of the step (on the batch, keyed to the step), so an interrupted demo "
            "resumes exactly either way. Evaluation runs once, at the end."
        ),
    ]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        write_section("demo_profile", section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
