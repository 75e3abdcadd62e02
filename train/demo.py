"""``python -m train demo``: every variant of the report, trained on the procedural domains on a CPU.

The procedural data (``segdemo.synthetic``) is generated on first use. Each variant keeps its
report recipe (model, labeled data, augmentation, adaptation) at a CPU-sized scale: small images,
a fixed number of steps. Results are measured on the procedural target val split and labelled so.
A finished variant is skipped on the next run; an interrupted one resumes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import torch

from segdemo.checkpoints import CheckpointError, read_metadata
from segdemo.files import atomic_write
from segdemo.hardware import bfloat16_trains_faster, cpu_name, keep_freed_memory, native_bfloat16
from segdemo.jobs import PROGRESS_FILE
from segdemo.profiles import DEFAULT_PROFILE, DEMO_PROFILES, DEMO_VARIANTS, describe_time_left, seconds_left
from segdemo.results import format_seed_table, format_table, seed_groups
from train import resume
from train.config import apply_overrides, get_variant
from train.data import available_cores, build_data, describe_data
from train.engine import Trainer

DEMO_SEED = 0  # the procedural data's seed, and the default training seed
DEMO_DATA = {"n_source": 600, "n_target_train": 600, "n_target_val": 100, "size": (320, 160)}
# The adaptation variants start from the demo's Aug1+2 checkpoint, the stand-in for the ImageNet
# initialisation the report starts from (there are no pretrained weights here). From scratch, DACS's
# teacher stays unconfident on target images for the whole CPU-sized schedule, so its pseudo-label term
# is off (confident-pixel fraction under 15%, docs/results.md). FDA gets the same start, so the two
# compare on equal terms; Aug1+2 continued for the same steps is the control in docs/results.md.
DEMO_INIT = {
    "bisenet_gta5_fda": "bisenet_gta5_aug12",
    "bisenet_gta5_dacs": "bisenet_gta5_aug12",
}
"""Written into the checkpoint folder while the demo runs (the app's progress bar reads it):
{"state": "generating" | "training" | "done" | "failed", "variant": str | None, "index": int, "count": int,
 "step": int, "total": int, "finished": [variant, ...], "message": str, "updated": unix time}."""


def demo_folder(out_dir: Path, profile: str = DEFAULT_PROFILE, seed: int = DEMO_SEED) -> Path:
    """Where the demo writes one profile's checkpoints for one training seed: ``out_dir`` for the default
    profile and seed, ``out_dir/full``, ``out_dir/seed1``, ``out_dir/full/seed2`` ... otherwise, so that
    no run replaces another's checkpoints."""
    folder = Path(out_dir) / DEMO_PROFILES[profile].folder
    return folder if seed == DEMO_SEED else folder / f"seed{seed}"


def busy_cores(interval: float = 0.5) -> float:
    """How many CPU cores other processes keep busy now: the share of non-idle time in /proc/stat over
    ``interval`` seconds times the CPUs it counts; the 1-minute load average where there is no /proc/stat.
    (The load average alone lags: right after another demo it still reads two busy cores for a minute.)"""

    def sample() -> tuple[int, int, int]:
        lines = Path("/proc/stat").read_text().splitlines()
        fields = [int(v) for v in lines[0].split()[1:]]
        cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle, cpus

    try:
        total0, idle0, cpus = sample()
        time.sleep(interval)
        total1, idle1, _ = sample()
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except OSError:  # not available on this platform
            return 0.0
    elapsed = max(total1 - total0, 1)
    return cpus * (1.0 - (idle1 - idle0) / elapsed)


def demo_threads() -> int:
    """Intra-op threads for training: the cores this process may use that nothing else keeps busy
    (:func:`busy_cores`), at least one. Two spinning OpenMP threads on a 2-core machine shared with a
    busy process ran a BiSeNet step 10x slower than one thread (0.7 s vs 9 s)."""
    cores = available_cores()
    return max(1, min(cores, round(cores - busy_cores())))


def demo_config(
    variant: str,
    scale: float = 1.0,
    size: tuple[int, int] | None = None,
    out_dir: Path = Path("checkpoints"),
    seed: int = DEMO_SEED,
    profile: str = DEFAULT_PROFILE,
    bfloat16: bool = False,
):
    """The variant's report config at the profile's scale; ``size`` (width, height) replaces the profile's.

    ``out_dir`` is the run's own folder (:func:`demo_folder`): variants in :data:`DEMO_INIT` start from
    the weights of another variant's checkpoint there. ``bfloat16``: autocast in bfloat16, for CPUs that
    compute it natively (``segdemo.hardware.native_bfloat16``).
    """
    demo = DEMO_PROFILES[profile]
    size = size or demo.size
    config = get_variant(variant)
    init = {"init_from": str(Path(out_dir) / DEMO_INIT[variant])} if variant in DEMO_INIT else {}
    changes = {
        "gta5_size": size,
        "cityscapes_size": size,
        "batch_size": demo.batch_size,
        "lr": demo.lr,
        "iterations": max(1, round(demo.steps[variant] * scale)),
        # Loading is a few % of a step (benchmarks/demo_profile.py), and the demo's images are decoded once
        # into memory. In-process loading keeps augmentation draws keyed to the step, so an interrupted demo
        # resumes bit-exactly (workers keep their own random streams).
        "num_workers": 0,
        "in_memory": True,
        "log_every": 10,
        # Resume state every 100 steps rather than every 40: each save writes the weights and Adam's moments
        # (~150 MB for BiSeNet), which is not training.
        "checkpoint_every": 100,
        "channels_last": True,
        "amp": bfloat16,
        "amp_dtype": "bf16" if bfloat16 else "auto",
        "seed": seed,
        **demo.common,
        **demo.overrides.get(variant, {}),
        **init,
    }
    return config.replace(**changes)


def data_parts(config) -> set[str]:
    """The parts of the procedural data (``segdemo.synthetic.PARTS``) a variant reads: the target val images
    (every variant is evaluated on them) and the images it trains on."""
    parts = {"target_val", "source" if config.labeled == "gta5" else "target_train"}
    if config.uses_target_images:  # FDA and DACS also read the unlabeled target train images
        parts.add("target_train")
    return parts


def ensure_data(
    data_dir: Path, parts: Collection[str] | None = None, announce: Callable[[str], None] | None = None
) -> tuple[Path, Path]:
    """Generate ``parts`` of the procedural domains (default: all) into ``data_dir`` unless a complete
    generation of them is there (one of any size: tests and users may pass smaller sets); an interrupted one
    is completed, since the bytes of every image depend on its index only. ``announce`` is told what is
    generated, before it is."""
    from segdemo import synthetic

    gta5, cityscapes = data_dir / "gta5", data_dir / "cityscapes"
    if gta5.is_dir() and cityscapes.is_dir() and not synthetic.is_procedural(data_dir):
        return gta5, cityscapes  # the user's own data in the two layouts: used as it is
    missing = [
        part
        for part in synthetic.PARTS
        if (parts is None or part in parts) and not synthetic.is_complete(data_dir, [part])
    ]
    if missing:
        message = f"generating {', '.join(missing)} in {data_dir}"
        print(f"{message} ...", flush=True)
        if announce is not None:
            announce(message)
        start = time.perf_counter()
        synthetic.generate(
            data_dir, seed=DEMO_SEED, progress=True, workers=available_cores(), parts=missing, **DEMO_DATA
        )
        print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
    return gta5, cityscapes


def _finished(out: Path, config) -> bool:
    """A kept checkpoint of these settings (train.resume.RUN_KEYS), trained to the end and evaluated."""
    try:
        meta = read_metadata(out)
    except CheckpointError:
        return False
    saved = meta.get("config")
    return (
        _current_data(meta)
        and meta.get("steps") == config.iterations
        and "miou" in meta.get("metrics", {})
        and isinstance(saved, dict)
        and resume.settings_mismatch(saved, config.as_dict()) is None
    )


def _resumable(out: Path, config) -> bool:
    """An interrupted run of these settings, which --resume would continue."""
    try:
        folder, progress = resume.read_progress(out)
        meta = read_metadata(folder)  # the state's checkpoint: what it was trained on
    except (ValueError, CheckpointError):
        return False
    return _current_data(meta) and resume.settings_mismatch(progress["config"], config.as_dict()) is None


def _current_data(meta: dict) -> bool:
    """False for a checkpoint trained on procedural data of an older generator (GENERATOR_VERSION): the
    demo trains it again on today's scenes."""
    from segdemo.synthetic import GENERATOR_VERSION

    data = meta.get("train_data") or {}
    return data.get("kind") != "procedural" or data.get("generator") == GENERATOR_VERSION


def _write_progress(out_dir: Path, **state) -> None:
    text = json.dumps({"updated": time.time(), **state})
    atomic_write(out_dir / PROGRESS_FILE, lambda tmp: Path(tmp).write_text(text))


def run_demo(
    data_dir: Path = Path("data/procedural"),
    out_dir: Path = Path("checkpoints"),
    only: list[str] | None = None,
    results_file: Path | None = None,
    scale: float = 1.0,
    size: tuple[int, int] | None = None,
    threads: int | None = None,
    seed: int = DEMO_SEED,
    seeds: int = 1,
    profile: str = DEFAULT_PROFILE,
    bfloat16: bool | None = None,
    overrides: list[str] | None = None,
) -> list[dict]:
    """Train the demo's variants for training seeds ``seed`` .. ``seed + seeds - 1`` (each into its own
    :func:`demo_folder`); returns one row per variant and seed. ``threads`` None: :func:`demo_threads`.
    ``bfloat16`` None: bfloat16 autocast where it trains faster than float32 on this CPU
    (``segdemo.hardware.bfloat16_trains_faster``), float32 elsewhere; True is refused where the CPU has no
    bfloat16 instructions. ``overrides``: ``field=value`` config changes (``train.config.apply_overrides``)
    for the variants named in ``only`` (every variant without it); the checkpoints they start from keep the
    demo's settings, so an ablation changes one thing."""
    if profile not in DEMO_PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose among {', '.join(DEMO_PROFILES)}")
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    precision_note = ""
    if bfloat16 is None:
        # Measured on a 2-core AMD EPYC with AVX512-BF16: the demo 1.5-1.6x as fast, and every variant's mean
        # mIoU within the seeds' spread of float32's (docs/results.md). On an Intel Xeon with AVX512-BF16 but
        # no AMX it trains slower than float32 (docs/benchmarks.md), so float32 there.
        bfloat16 = bfloat16_trains_faster()
        if not bfloat16 and native_bfloat16():
            precision_note = " (bfloat16 trains slower on this CPU without AMX; --bfloat16 to use it anyway)"
    elif bfloat16 and not native_bfloat16():
        raise ValueError(
            f"--bfloat16: this CPU ({cpu_name()}) has no bfloat16 instructions, so bfloat16 would be "
            "emulated and slower than float32; train without it"
        )
    names = list(DEMO_VARIANTS)
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise ValueError(f"unknown variants {unknown}; choose among {', '.join(names)}")
    overrides = list(overrides or [])
    changed = set(only or names) if overrides else set()
    for name in changed:  # a bad field or value is refused before anything is trained
        apply_overrides(get_variant(name), overrides)
    threads = threads if threads is not None else demo_threads()
    torch.set_num_threads(threads)
    keep_freed_memory()  # no page faults for each step's fresh activations (segdemo.hardware)
    if only:
        wanted = set(only)
        # A variant that starts from another's checkpoint needs that one first (skipped if already trained).
        wanted |= {DEMO_INIT[n] for n in only if n in DEMO_INIT}
        names = [n for n in names if n in wanted]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_seeds = list(range(seed, seed + seeds))
    # (seed, variant, checkpoint folder, config) of every run, in training order
    runs = []
    for run_seed in run_seeds:
        folder = demo_folder(out_dir, profile, run_seed)
        for name in names:
            config = demo_config(name, scale, size, folder, run_seed, profile, bfloat16)
            if name in changed:
                config = apply_overrides(config, overrides)
            runs.append((run_seed, name, folder / name, config))
    finished: list[str] = []
    progress = {"variant": None, "index": 0, "count": len(runs), "step": 0, "total": 0, "finished": finished}
    _write_progress(out_dir, state="training", message="starting", **progress)
    print(
        f"demo profile {profile} ({DEMO_PROFILES[profile].summary}), seeds {run_seeds}, {threads} thread(s), "
        f"{'bfloat16' if bfloat16 else 'float32'}{precision_note}"
        + (f"; {' '.join(overrides)} for {', '.join(n for n in names if n in changed)}" if changed else ""),
        flush=True,
    )
    try:
        timings = _train_all(runs, Path(data_dir), out_dir, progress, DEMO_PROFILES[profile].image_cost)
    except BaseException as exc:
        _write_progress(out_dir, state="failed", message=f"{type(exc).__name__}: {exc}", **progress)
        raise
    _write_progress(out_dir, state="done", message="all variants trained", **progress)

    rows = []
    for run_seed, name, folder, _ in runs:
        meta = read_metadata(folder)
        metrics = meta["metrics"]
        rows.append(
            {
                "variant": name,
                "model": meta.get("model"),
                "folder": str(folder),
                "seed": run_seed,
                "measured_on": metrics["eval_data"],
                "data": "procedural",
                "input_size": tuple(meta.get("input_size") or ()),
                "steps": meta["steps"],
                "miou": metrics["miou"],
                "iou": metrics["iou"],
                "seconds": timings.get((run_seed, name)),
            }
        )
    named = rows if seeds == 1 else [{**r, "variant": f"{r['variant']} seed {r['seed']}"} for r in rows]
    table = format_table(named)
    print("\nResults on the PROCEDURAL target val split (not Cityscapes):\n")
    print(table)
    if seeds > 1:
        spread = format_seed_table(seed_groups(rows))
        table += "\n\nMean ± std over the seeds:\n\n" + spread
        print("\nMean ± std over the seeds:\n")
        print(spread)
    seconds = {name: [t for (_, n), t in timings.items() if n == name] for name in names}
    print(
        "\nseconds per variant this run: "
        + ", ".join(f"{name} {sum(ts) / len(ts):.0f}" for name, ts in seconds.items() if ts)
    )
    print(f"training time this run {sum(timings.values()) / 60:.1f} min")
    if results_file is not None:
        Path(results_file).write_text(table + "\n")
    return rows


def _train_all(
    runs: list[tuple[int, str, Path, Any]],
    data_dir: Path,
    out_dir: Path,
    progress: dict,
    image_cost: Mapping[str, float],
) -> dict[tuple[int, str], float]:
    """Train each run (seed, variant, folder, config) that is not finished yet; the seconds each took, by
    (seed, variant). The procedural data a run needs is generated just before it (the first variants need
    no target train images, so the first checkpoint comes sooner). ``progress`` gets the estimated training
    seconds left (``segdemo.profiles.seconds_left`` with the profile's ``image_cost``)."""
    timings: dict[tuple[int, str], float] = {}
    data_cache: dict[tuple, Any] = {}  # decoded once per data and size, shared by the variants
    to_train = [not _finished(out, config) for _, _, out, config in runs]
    timed: list[tuple[str, int, float]] = []  # (variant, images, seconds) of the runs trained here

    def pending(after: int) -> list[tuple[str, int]]:
        return [
            (name, config.iterations * config.batch_size)
            for (_, name, _, config), todo in zip(runs[after + 1 :], to_train[after + 1 :])
            if todo
        ]

    for i, (seed, name, out, config) in enumerate(runs):
        label = str(out.relative_to(out_dir))
        progress.update(variant=label, index=i, step=0, total=config.iterations)
        if not to_train[i]:
            print(f"[{i + 1}/{len(runs)}] {label}: already trained, skipping", flush=True)
            progress["finished"].append(label)
            continue
        gta5, cityscapes = ensure_data(
            data_dir,
            data_parts(config),
            announce=lambda message: _write_progress(
                out_dir, state="generating", message=message, **progress
            ),
        )
        # An interrupted run with other settings (say another --size) is trained afresh, not resumed.
        resume = _resumable(out, config)
        print(
            f"[{i + 1}/{len(runs)}] {label}: {config.iterations} steps{' (resuming)' if resume else ''}",
            flush=True,
        )
        _write_progress(out_dir, state="training", message=f"training {label}", **progress)
        start = time.perf_counter()
        last_write = 0.0
        first_step: int | None = None  # a resumed run's pace counts from where it resumed
        images = config.iterations * config.batch_size

        def report(step: int, total: int, name=name, images=images, start=start, index=i) -> None:
            nonlocal last_write, first_step
            if first_step is None:
                first_step = step - 1
            if time.perf_counter() - last_write > 1.0 or step == total:  # at most once a second
                last_write = time.perf_counter()
                done, todo = step - first_step, total - first_step
                current = (name, round(images * todo / total), done, todo, time.perf_counter() - start)
                progress.update(
                    step=step,
                    total=total,
                    seconds_left=seconds_left(image_cost, timed, current, pending(index)),
                )
                _write_progress(
                    out_dir, state="training", message=f"training {progress['variant']}", **progress
                )

        data = _demo_data(config, gta5, cityscapes, data_cache)
        trainer = Trainer(
            config,
            data,
            out,
            device="cpu",
            resume=resume,
            train_data_info=describe_data(config, gta5, cityscapes),
        )
        trainer.run(on_step=report)
        timings[(seed, name)] = time.perf_counter() - start
        if first_step is not None:
            timed.append((name, round(images * (1 - first_step / config.iterations)), timings[(seed, name)]))
        progress["finished"].append(label)
        left = seconds_left(image_cost, timed, None, pending(i))
        progress["seconds_left"] = left
        after = f"; training {describe_time_left(left)} (estimated)" if pending(i) and left else ""
        print(f"  {label}: mIoU {trainer.best_miou:.2f} in {timings[(seed, name)]:.0f} s{after}", flush=True)
    return timings


def _demo_data(config, gta5: Path, cityscapes: Path, cache: dict[tuple, Any]):
    """The variant's data sets, decoded into memory once per labeled domain and size for the whole demo."""
    key = (config.labeled, config.uses_target_images, tuple(config.gta5_size), tuple(config.cityscapes_size))
    if key not in cache:
        cache[key] = build_data(config, gta5, cityscapes)
    return cache[key]
