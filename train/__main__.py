"""``python -m train``: list, run, evaluate, teacher, cache, profile, export, demo; ``python -m train -h``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from train.config import apply_overrides, get_variant, variants


def _size(text: str) -> tuple[int, int]:
    """'512x1024' -> (512, 1024): HEIGHTxWIDTH as the report writes input sizes."""
    try:
        a, b = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 512x1024, got {text!r}") from None
    if a <= 0 or b <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return a, b


def cmd_list(_args: argparse.Namespace) -> int:
    table = variants()
    width = max(len(n) for n in table)
    for name, config in table.items():
        print(f"{name:<{width}}  {config.description}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from segdemo.datasets import DatasetError
    from segdemo.hardware import keep_freed_memory, resolve_device
    from train.data import build_data, describe_data
    from train.distributed import init_distributed
    from train.engine import Trainer
    from train.errors import TrainingError
    from train.resume import prepare_run_folder

    try:
        config = apply_overrides(get_variant(args.variant), args.overrides)
        device = str(resolve_device(args.device)) if args.device else None
        prepare_run_folder(args.out)
        init_distributed()
        data = build_data(config, args.gta5, args.cityscapes)
        trainer = Trainer(
            config,
            data,
            args.out,
            device=device,
            resume=args.resume,
            train_data_info=describe_data(config, args.gta5, args.cityscapes),
        )
        if trainer.device.type == "cpu":
            keep_freed_memory()  # no page faults for each step's fresh activations (segdemo.hardware)
        out = trainer.run()
    except (ValueError, DatasetError, TrainingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(
            f"\nstopped ({exc or 'interrupted'}); state saved: resume with the same command plus --resume",
            file=sys.stderr,
        )
        return 130
    if trainer.is_main:
        from segdemo.checkpoints import read_metadata

        metrics = read_metadata(out).get("metrics", {})
        print(f"checkpoint: {out}  (mIoU {metrics.get('miou', 'n/a')} on {metrics.get('eval_data', '?')})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from train.evaluate import EvaluationError, evaluate_checkpoints, evaluate_labelled

    try:
        if args.cityscapes is not None:
            text = evaluate_checkpoints(
                args.checkpoints,
                args.cityscapes,
                device=args.device,
                limit=args.limit,
                write=not args.no_write,
                full_resolution=args.full_resolution,
                workers=args.workers,
                adapt_bn=args.adapt_bn,
            )
        else:
            if (args.images is None) != (args.labels is None):
                raise EvaluationError("--images and --labels go together")
            if args.adapt_bn:
                raise EvaluationError("--adapt-bn goes with --cityscapes (it reads that root's train images)")
            text = evaluate_labelled(
                args.checkpoints,
                images=args.images,
                labels=args.labels,
                data_root=args.data_root,
                procedural=args.procedural,
                label_encoding=args.label_encoding,
                data_name=args.data_name,
                tta=args.tta,
                device=args.device,
                limit=args.limit,
                write=not args.no_write,
                per_image=args.per_image,
                json_out=args.json,
                progress_file=args.progress,
            )
        print(text)
    except EvaluationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_teacher(args: argparse.Namespace) -> int:
    from train.teacher import TeacherError, teacher_report

    try:
        print(
            teacher_report(
                args.checkpoint,
                args.cityscapes,
                split=args.split,
                images=args.images,
                batch_size=args.batch_size,
                statistics=args.statistics,
                device=args.device,
            )
        )
    except TeacherError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import numpy as np

    from segdemo.images import ImageError, load_image
    from segdemo.study import StudyImage, build_study, write_study

    try:
        images = [
            StudyImage(path.stem, np.asarray(load_image(path)), None, f"photo {path.name}")
            for path in args.images
        ]
        root = args.root or Path(args.checkpoints[0]).parent
        text = build_study(args.checkpoints, root, images, device=args.device or "cpu", progress=print)
    except (ValueError, ImageError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {write_study(args.out, text)}")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from segdemo.datasets import DatasetError
    from train.cache import fill_cache

    try:
        config = apply_overrides(get_variant(args.variant), [*args.overrides, f"cache_dir={args.cache}"])
        print(fill_cache(config, args.gta5, args.cityscapes, workers=args.workers))
    except (ValueError, DatasetError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from train.evaluate import profile_table

    try:
        print(profile_table(args.model, args.size, args.device, runs=args.runs, warmup=args.warmup))
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from train.export import ExportError, export_checkpoint

    try:
        print(export_checkpoint(args.checkpoint, args.out, args.size).summary())
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from train.demo import run_demo

    try:
        run_demo(
            data_dir=args.data,
            out_dir=args.out,
            only=args.only,
            results_file=args.results,
            scale=args.scale,
            threads=args.threads,
            seed=args.seed,
            seeds=args.seeds,
            profile=args.profile,
            bfloat16=args.bfloat16,
            overrides=args.set,
            **({"size": (args.size[1], args.size[0])} if args.size else {}),
        )
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ndemo interrupted; finished checkpoints are kept. Run it again to continue.", file=sys.stderr)
        return 130
    return 0


def build_parser() -> argparse.ArgumentParser:
    from segdemo.profiles import DEFAULT_PROFILE, DEMO_PROFILES

    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="the variants of the report").set_defaults(func=cmd_list)

    run = sub.add_parser(
        "run",
        help="train one variant",
        description=(
            "Train a variant. Overrides are field=value (e.g. lr=2.5e-4 optimizer=sgd epochs=10 "
            "gta5_size=640x360); `python -m train list` names the variants."
        ),
    )
    run.add_argument("variant")
    run.add_argument("overrides", nargs="*", help="field=value config overrides")
    run.add_argument("--gta5", type=Path, help="GTA5 root (images/, labels/)")
    run.add_argument("--cityscapes", type=Path, help="Cityscapes root (leftImg8bit/, gtFine/ or a flat copy)")
    run.add_argument(
        "--out", type=Path, required=True, help="checkpoint folder, e.g. checkpoints/bisenet_gta5"
    )
    run.add_argument("--resume", action="store_true", help="continue from OUT/last with the same schedule")
    run.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    run.set_defaults(func=cmd_run)

    ev = sub.add_parser(
        "evaluate",
        help="per-class IoU, mIoU and confusions on Cityscapes val or any labelled images",
        description=(
            "Evaluate checkpoints. With --cityscapes: on its val split at each checkpoint's input size, as "
            "training does; one checkpoint gets the metrics written into its metadata, several are the "
            "multi-band transfer (MBT) ensemble of FDA (softmax outputs averaged). With --images/--labels, "
            "--data-root or --procedural: each checkpoint on its own, every image scored at its label's "
            "resolution, with optional test-time augmentation; the result is written into the metadata under "
            "'evaluations', keyed by the data and the protocol."
        ),
    )
    ev.add_argument("checkpoints", nargs="+", type=Path)
    data = ev.add_mutually_exclusive_group(required=True)
    data.add_argument(
        "--cityscapes", type=Path, help="a Cityscapes root: its val split, as training evaluates"
    )
    data.add_argument(
        "--images", type=Path, help="a folder of images (labels in --labels, paired by file stem)"
    )
    data.add_argument(
        "--data-root", type=Path, help="a GTA5 or Cityscapes root (val split), at native resolution"
    )
    data.add_argument("--procedural", type=int, metavar="N", help="the first N procedural target val scenes")
    ev.add_argument("--labels", type=Path, help="with --images: the folder of their label maps")
    ev.add_argument(
        "--label-encoding",
        default="auto",
        choices=("auto", "trainIds", "label ids", "colours"),
        help="how --labels hold the classes (default auto: decided from the whole set, and printed)",
    )
    ev.add_argument("--data-name", help="with --images: the data's name in the report and metadata key")
    ev.add_argument("--tta", default="", help="test-time options, any of flip,ms,slide (default none)")
    ev.add_argument("--per-image", type=Path, metavar="FILE.csv", help="write every image's scores here")
    ev.add_argument("--json", type=Path, metavar="FILE", help="write the full evaluations (JSON) here")
    ev.add_argument("--progress", type=Path, metavar="FILE", help=argparse.SUPPRESS)  # the app's job file
    ev.add_argument("--device", default=None)
    ev.add_argument("--limit", type=int, default=0, help="evaluate on the first N images only")
    ev.add_argument("--no-write", action="store_true", help="do not write the metrics into the metadata")
    ev.add_argument(
        "--full-resolution",
        action="store_true",
        help="with --cityscapes: score against the labels at their native size, predictions upsampled",
    )
    ev.add_argument("--workers", type=int, default=0, help="loader processes (default 0: in this process)")
    ev.add_argument(
        "--adapt-bn",
        type=int,
        default=0,
        metavar="N",
        help="with --cityscapes: first recompute the BatchNorm statistics on its first N unlabelled train "
        "images (AdaBN, a diagnosis of the domain gap); nothing is written into the metadata",
    )
    ev.set_defaults(func=cmd_evaluate)

    teacher = sub.add_parser(
        "teacher",
        help="a checkpoint as DACS's teacher: how sure and how right its pseudo-labels are",
        description=(
            "Run a checkpoint as DACS's teacher on labelled target images and score its pseudo-labels: the "
            "share of pixels at least 0.5, 0.9 and 0.968 (DACS's threshold) sure, how many of those are "
            "right, per class, and DACS's resulting loss weight on target pixels. The labels only score; "
            "DACS never sees them."
        ),
    )
    teacher.add_argument("checkpoint", type=Path)
    teacher.add_argument(
        "--cityscapes", type=Path, required=True, help="a Cityscapes-layout root (real or procedural)"
    )
    teacher.add_argument("--split", default="train", help="its split (default train, as DACS reads)")
    teacher.add_argument("--images", type=int, default=256, help="the first N images (default 256)")
    teacher.add_argument(
        "--batch-size", type=int, default=16, help="images per batch (default 16, the demo's batch)"
    )
    teacher.add_argument(
        "--statistics",
        choices=("batch", "running"),
        default="batch",
        help="BatchNorm on each batch's statistics (default, as dacs_teacher_bn=batch) or the running ones",
    )
    teacher.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    teacher.set_defaults(func=cmd_teacher)

    rep = sub.add_parser(
        "report",
        help="a study for presenting: one offline HTML file of checkpoints beside the report",
        description=(
            "Write one self-contained HTML file (works offline, prints as a PDF with a page per section): "
            "the checkpoints' per-class IoU beside the report's Table 3, mIoU and per-class gains over "
            "source only, efficiency measured here beside Tables 1 and 2, --images through every checkpoint, "
            "FDA and DACS panels."
        ),
    )
    rep.add_argument("checkpoints", nargs="+", type=Path)
    rep.add_argument("--out", type=Path, required=True, help="the HTML file, e.g. study.html")
    rep.add_argument(
        "--images", nargs="*", type=Path, default=[], help="photos to show through the checkpoints"
    )
    rep.add_argument(
        "--root", type=Path, help="the checkpoint folder (default: the first checkpoint's parent)"
    )
    rep.add_argument("--device", default=None)
    rep.set_defaults(func=cmd_report)

    cache = sub.add_parser(
        "cache",
        help="decode, check and resize a variant's data once, for every later run",
        description=(
            "Fill a sample cache (segdemo.sample_cache) with a variant's training, target and val images at "
            "its sizes, using every CPU core. Runs with the same sizes and cache_dir=DIR then read ready "
            "uint8 arrays instead of decoding PNGs. A run with cache_dir set fills the cache itself during "
            "its first epoch."
        ),
    )
    cache.add_argument("variant")
    cache.add_argument(
        "overrides", nargs="*", help="field=value config overrides (sizes, eval_full_resolution)"
    )
    cache.add_argument("--gta5", type=Path)
    cache.add_argument("--cityscapes", type=Path)
    cache.add_argument(
        "--cache", type=Path, required=True, help="the cache folder (cache_dir=... of the runs)"
    )
    cache.add_argument("--workers", type=int, default=-1, help="loader processes (default: every core)")
    cache.set_defaults(func=cmd_cache)

    prof = sub.add_parser("profile", help="parameters, FLOPs, latency and FPS (Table 1/2 columns)")
    prof.add_argument("model", choices=("bisenet", "deeplabv2"))
    prof.add_argument("--size", type=_size, default=(512, 1024), help="HEIGHTxWIDTH (default 512x1024)")
    prof.add_argument("--device", default="cpu")
    prof.add_argument("--runs", type=int, default=10)
    prof.add_argument("--warmup", type=int, default=3)
    prof.set_defaults(func=cmd_profile)

    export = sub.add_parser(
        "export",
        help="a checkpoint as ONNX, checked in ONNX Runtime",
        description=(
            "Export a checkpoint (folder or course-template .pth) to ONNX: the exact inference form "
            "(BatchNorm folded), batch size free, normalisation and class names in the file's metadata. "
            "Written only if ONNX Runtime reproduces the PyTorch logits within 1e-3."
        ),
    )
    export.add_argument("checkpoint", type=Path)
    export.add_argument("--out", type=Path, help="the .onnx file (default: CHECKPOINT/model.onnx)")
    export.add_argument("--size", type=_size, help="HEIGHTxWIDTH (default: the checkpoint's input size)")
    export.set_defaults(func=cmd_export)

    demo = sub.add_parser("demo", help="train every variant on the procedural domains (CPU-sized)")
    demo.add_argument("--data", type=Path, default=Path("data/procedural"))
    demo.add_argument("--out", type=Path, default=Path("checkpoints"))
    demo.add_argument("--only", nargs="*", help="train only these variants")
    demo.add_argument("--results", type=Path, help="also write the results table (Markdown) to this file")
    demo.add_argument(
        "--scale", type=float, default=1.0, help="multiply the demo's training steps (e.g. 0.1)"
    )
    demo.add_argument(
        "--profile",
        choices=list(DEMO_PROFILES),
        default=DEFAULT_PROFILE,
        help="; ".join(f"{name}: {p.summary}" for name, p in DEMO_PROFILES.items()),
    )
    demo.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="train every variant with this many training seeds (from --seed; seed N > 0 goes to OUT/seedN)",
    )
    demo.add_argument(
        "--threads", type=int, help="CPU threads for training (default: the cores nothing else keeps busy)"
    )
    demo.add_argument(
        "--bfloat16",
        action=argparse.BooleanOptionalAction,
        help="bfloat16 autocast (default: on where it trains faster than float32: AMX, or AVX512-BF16 on an "
        "AMD EPYC; not on an Intel Xeon with AVX512-BF16 alone; refused where the CPU has no bfloat16 "
        "instructions); --no-bfloat16 trains in float32",
    )
    demo.add_argument("--size", type=_size, help="HEIGHTxWIDTH to train and evaluate at (default: profile's)")
    demo.add_argument("--seed", type=int, default=0, help="training seed (the procedural data keep seed 0)")
    demo.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="FIELD=VALUE",
        help="config changes (as for `run`) for the --only variants (all without --only), e.g. "
        "dacs_threshold=0.9; the checkpoints they start from keep the demo's settings",
    )
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides (field=value) may come before or after the options, as users type them.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command not in ("run", "cache") or any(
            "=" not in item or item.startswith("-") for item in extra
        ):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
