"""Evaluating networks on labelled images.

* :func:`evaluate`: the confusion matrix of networks over a training-style data set (uint8 batches), through
  each network's inference form; what training and ``train evaluate --cityscapes`` use.
* The workbench: :func:`evaluate_set` scores a :class:`~segdemo.inference.Segmenter` on any
  :class:`LabelledSet` (:func:`procedural_val`, :func:`dataset_root`, :func:`image_folders`), image by image,
  with test-time options (:class:`TestTime`: flip, multi-scale, sliding windows), and returns an
  :class:`Evaluation`: the confusion matrix, per-class IoU, mIoU, pixel accuracy, per-image scores and the
  protocol. The app's Evaluate page and ``python -m train evaluate --images/--labels`` both call it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from segdemo.datasets import collate_usable
from segdemo.labels import CLASS_NAMES, NUM_CLASSES
from segdemo.metrics import ConfusionMatrix
from segdemo.normalization import IMAGENET_MEAN, IMAGENET_STD, normalize


def evaluation_protocol(input_size: tuple[int, int] | list[int], full_resolution: bool) -> dict[str, Any]:
    """How an evaluation scored: the network's input (width, height), and the labels' resolution."""
    return {
        "input_size": list(input_size),
        "labels": "native resolution, predictions upsampled"
        if full_resolution
        else "resized to the input size (nearest)",
    }


def inference_form(model: nn.Module) -> nn.Module:
    """The exact inference form (BatchNorm folded, ...) where there is one, else the model as it is."""
    from segdemo.models.fast import prepare_for_inference

    try:
        return prepare_for_inference(model)
    except (TypeError, ValueError):  # another network, or one with SyncBatchNorm
        return model


@torch.inference_mode()
def evaluate(
    models: nn.Module | list[nn.Module],
    dataset,
    device: str | torch.device = "cpu",
    batch_size: int = 4,
    limit: int = 0,
    precision: torch.dtype = torch.float32,
    num_workers: int = 0,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> ConfusionMatrix:
    """Confusion matrix over ``dataset`` (uint8 items from ``as_uint8=True`` datasets, normalised here with
    ``mean`` / ``std``, or float items already normalised), through each model's inference form.

    Several models are an ensemble: their softmax outputs are averaged (FDA's multi-band transfer). Labels of
    another size than the images (``label_size``) are scored at theirs, the logits upsampled. Under
    torch.distributed every rank scores its share of the images and the matrices are summed.
    """
    models = [models] if isinstance(models, nn.Module) else list(models)
    device = torch.device(device)
    for model in models:
        model.eval()
    runners = [inference_form(model) for model in models]
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    matrix = ConfusionMatrix(device=device)
    count = min(limit, len(dataset)) if limit else len(dataset)
    subset = torch.utils.data.Subset(dataset, range(rank, count, world))
    loader = DataLoader(
        subset,
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        collate_fn=collate_usable,
    )
    autocast = torch.autocast(device.type, dtype=precision, enabled=precision != torch.float32)
    for batch in loader:
        if batch is None:  # every image of it skipped (bad_samples=skip): nothing to score
            continue
        images, labels = batch
        images = images.to(device, non_blocking=True)
        if images.dtype == torch.uint8:
            images = normalize(images.float().div_(255.0), mean or IMAGENET_MEAN, std or IMAGENET_STD)
        labels = labels.to(device, non_blocking=True).long()
        with autocast:
            logits = [runner(images).float() for runner in runners]
        if labels.shape[-2:] != logits[0].shape[-2:]:
            logits = [
                F.interpolate(x, size=labels.shape[-2:], mode="bilinear", align_corners=False) for x in logits
            ]
        scores = logits[0] if len(logits) == 1 else sum(torch.softmax(x, dim=1) for x in logits)
        matrix.update(scores.argmax(dim=1), labels)
    return matrix.all_reduce()


# ---------------------------------------------------------------------------------------------
# The workbench: any labelled set, per image, with test-time augmentation
# ---------------------------------------------------------------------------------------------

MULTI_SCALES = (0.75, 1.0, 1.25, 1.5)
"""The scales of ``ms`` (as CoinCheung/BiSeNet's multi-scale evaluation), times the network's input size."""
TTA_OPTIONS = ("flip", "ms", "slide")
SLIDE_STRIDE = 2 / 3
"""Sliding windows overlap by a third of their size; overlapping probabilities are averaged."""
MAX_EVAL_IMAGES = 5000


@dataclass(frozen=True)
class TestTime:
    """Test-time options: horizontal flip, several scales, sliding windows over inputs larger than the
    model's.

    Without ``slide`` an image is resized to ``scale x`` the network's input size. With it, the image is
    kept at ``scale x`` its own size and covered by windows of the input size (when it is larger than one).
    Every pass's softmax is brought to the label's size and averaged.
    """

    __test__ = False  # not a pytest test class, whatever its name

    flip: bool = False
    scales: tuple[float, ...] = (1.0,)
    slide: bool = False

    @classmethod
    def parse(cls, text: str | Sequence[str] | None) -> TestTime:
        """From "flip,ms,slide" or "flip+ms" (any of them, or "" / "none" for none)."""
        names = [
            t.strip().lower()
            for t in (text.replace("+", ",").split(",") if isinstance(text, str) else text or [])
        ]
        names = [n for n in names if n and n != "none"]
        unknown = sorted(set(names) - set(TTA_OPTIONS))
        if unknown:
            raise ValueError(f"unknown test-time option {', '.join(unknown)}: use {', '.join(TTA_OPTIONS)}")
        return cls(
            flip="flip" in names, scales=MULTI_SCALES if "ms" in names else (1.0,), slide="slide" in names
        )

    @property
    def name(self) -> str:
        """ "none", or the options joined by "+" ("flip+ms")."""
        parts = (["flip"] if self.flip else []) + (["ms"] if len(self.scales) > 1 else [])
        return "+".join(parts + (["slide"] if self.slide else [])) or "none"

    def as_dict(self) -> dict[str, Any]:
        return {"flip": self.flip, "scales": list(self.scales), "slide": self.slide}


def _multiple_of_8(value: float) -> int:
    return max(8, round(value / 8) * 8)


def _softmax_at(segmenter: Any, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Softmax of the network for a normalised 1 x 3 x h x w batch (sides multiples of 8), at ``size``."""
    from segdemo.models.fast import runner_for

    runner, _ = runner_for(segmenter.model, tuple(x.shape[-2:]), x.device, segmenter.backend)
    out = runner(x)
    logits = (out[0] if isinstance(out, (tuple, list)) else out).float()
    if tuple(logits.shape[-2:]) != size:
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    return torch.softmax(logits, dim=1)[0]


def _windows(length: int, window: int) -> list[int]:
    if length <= window:
        return [0]
    stride = max(1, int(window * SLIDE_STRIDE))
    starts = list(range(0, length - window, stride))
    return starts + [length - window]


@torch.inference_mode()
def probabilities(
    segmenter: Any, image: np.ndarray, size: tuple[int, int], test_time: TestTime = TestTime()
) -> torch.Tensor:
    """C x H x W class probabilities of ``segmenter`` for an H x W x 3 uint8 image, at ``size`` = (H, W) of
    the labels, averaged over the passes of ``test_time``."""
    from segdemo.inference import preprocess

    meta = segmenter.meta
    mean, std = meta["mean"], meta["std"]
    in_h, in_w = segmenter.input_size
    device = segmenter.device or next(segmenter.model.parameters()).device
    total, passes = None, 0
    for scale in test_time.scales:
        img_h, img_w = image.shape[:2]
        tiled = test_time.slide and (img_h * scale > in_h or img_w * scale > in_w)
        if tiled:
            shape = (max(_multiple_of_8(img_h * scale), in_h), max(_multiple_of_8(img_w * scale), in_w))
        else:
            shape = (_multiple_of_8(in_h * scale), _multiple_of_8(in_w * scale))
        x = preprocess(image, shape, mean, std).to(device)
        for flipped in (False, True) if test_time.flip else (False,):
            view = x.flip(-1) if flipped else x
            if tiled:
                summed = torch.zeros((NUM_CLASSES, *shape), device=device)
                count = torch.zeros(shape, device=device)
                for top in _windows(shape[0], in_h):
                    for left in _windows(shape[1], in_w):
                        crop = view[..., top : top + in_h, left : left + in_w]
                        summed[:, top : top + in_h, left : left + in_w] += _softmax_at(
                            segmenter, crop, (in_h, in_w)
                        )
                        count[top : top + in_h, left : left + in_w] += 1
                probs = (summed / count)[None]
                probs = F.interpolate(probs, size=size, mode="bilinear", align_corners=False)[0]
            else:
                probs = _softmax_at(segmenter, view, size)
            if flipped:
                probs = probs.flip(-1)
            total = probs if total is None else total + probs
            passes += 1
    return total / passes


@dataclass(frozen=True)
class LabelledImage:
    name: str
    image: np.ndarray
    """H x W x 3 uint8 RGB."""
    label: np.ndarray
    """h x w uint8 trainIds (255 = ignore); scored at this size."""


@dataclass
class LabelledSet:
    """Images with ground truth, from any source (see :func:`open_labelled_set`)."""

    description: str
    """In words, for tables and metadata: what the images are and where they are."""
    key: str
    """A stable key of the data (a kind and a resolved path or the generator's settings)."""
    kind: str
    """"procedural", "real" or "unknown": never report procedural numbers as Cityscapes ones."""
    label_encoding: str
    """How the labels were read: "trainIds", "label ids" or "colours"."""
    names: list[str]
    load: Callable[[int], LabelledImage]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> LabelledImage:
        return self.load(index)


def procedural_val(count: int = 20, size: tuple[int, int] = (640, 320), seed: int = 0) -> LabelledSet:
    """The procedural target-domain val split, rendered in memory: image ``i`` is the one
    ``python -m segdemo.synthetic --seed SEED --size WxH`` writes as val image ``i``."""
    from segdemo.synthetic import render_scene, scene_rng

    if not 1 <= count <= MAX_EVAL_IMAGES:
        raise ValueError(f"count must be 1 to {MAX_EVAL_IMAGES}, got {count}")

    def load(i: int) -> LabelledImage:
        image, label = render_scene(scene_rng(seed, "target", "val", i), "target", size)
        return LabelledImage(f"procedural_val_{i:04d}", image, label)

    return LabelledSet(
        description=f"procedural target val, {count} images at {size[0]}x{size[1]}, seed {seed}",
        key=f"procedural-val:seed={seed}:size={size[0]}x{size[1]}:n={count}",
        kind="procedural",
        label_encoding="trainIds",
        names=[f"procedural_val_{i:04d}" for i in range(count)],
        load=load,
    )


def _looks_like_gta5(root: Path) -> bool:
    """GTA5's layout is root/images + root/labels with plain numbered names; a flat Cityscapes copy can have
    the same two folders, but its names end in _leftImg8bit or sit in split or city folders."""
    images = root / "images"
    if not (images.is_dir() and (root / "labels").is_dir()):
        return False
    for i, path in enumerate(images.iterdir()):
        if i >= 50:
            break
        if path.is_dir() or "_leftImg8bit" in path.name:
            return False
    return True


def dataset_root(root: str | Path, split: str = "val", limit: int = 0, layout: str = "auto") -> LabelledSet:
    """A GTA5 or Cityscapes root (official or flat layout), at its native resolution; at most ``limit``
    images (0: all). ``layout`` "gta5" or "cityscapes" says which; "auto" tells them apart by their names."""
    from segdemo.datasets import GTA5, Cityscapes, DatasetError

    root = Path(root).expanduser()
    if layout not in ("auto", "gta5", "cityscapes"):
        raise ValueError(f"layout must be 'auto', 'gta5' or 'cityscapes', not {layout!r}")
    if layout == "auto":
        layout = "gta5" if _looks_like_gta5(root) else "cityscapes"
    if layout == "gta5":
        dataset = GTA5(root, normalize=False, as_uint8=True)
    else:
        dataset = Cityscapes(root, split, normalize=False, as_uint8=True)
    if not dataset.has_labels:
        raise DatasetError(f"{root}: the {split} split has no labels")
    count = min(limit, len(dataset)) if limit else len(dataset)
    names = [_pair_stem(Path(dataset.files[i][0]), IMAGE_SUFFIXES) for i in range(count)]

    def load(i: int) -> LabelledImage:
        image, label = dataset[i]
        return LabelledImage(names[i], image.permute(1, 2, 0).numpy(), label.numpy())

    from segdemo.synthetic import is_procedural

    kind = "procedural" if is_procedural(root) else "real"
    where = f"{layout} {split}" if layout == "cityscapes" else "gta5"
    return LabelledSet(
        description=f"{kind} {where} at {root}, {count} images",
        key=f"{layout}:{root.resolve()}:{split if layout == 'cityscapes' else 'all'}:n={count}",
        kind=kind,
        label_encoding="label ids" if layout == "gta5" else "trainIds or label ids by file name",
        names=names,
        load=load,
    )


LABEL_SUFFIXES = (
    "_gtFine_labelTrainIds",
    "_gtFine_labelIds",
    "_gtFine_color",
    "_labelTrainIds",
    "_labelIds",
    "_color",
    "_label",
    "_mask",
    "_gt",
)
"""Endings of a label's file stem that pairing by stem ignores (X_gtFine_labelIds.png goes with X.png)."""
IMAGE_SUFFIXES = ("_leftImg8bit",)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
LABEL_EXTENSIONS = (".png", ".tif", ".tiff", ".bmp", ".ppm")


def _pair_stem(path: Path, suffixes: Sequence[str]) -> str:
    stem = path.stem
    for suffix in suffixes:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _files(folder: Path, extensions: Sequence[str]) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in extensions
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def image_folders(
    images: str | Path,
    labels: str | Path,
    encoding: str = "auto",
    limit: int = 0,
    kind: str = "unknown",
    name: str | None = None,
) -> LabelledSet:
    """Images in one folder and their labels in another (sub-folders allowed), paired by file stem
    (label endings such as ``_gtFine_labelIds`` and ``_leftImg8bit`` ignored); ``name`` (e.g. an uploaded
    zip's) names the data in the description and the metadata key instead of the folder. The labels may be
    trainIds, label ids or Cityscapes colour pictures: with ``encoding="auto"`` the whole set decides
    (:func:`segdemo.label_maps.set_encoding`), and the result says which was used."""
    from segdemo.images import ImageError, load_image
    from segdemo.label_maps import LABEL_ENCODINGS, decode_label, read_label, set_encoding

    images, labels = Path(images).expanduser(), Path(labels).expanduser()
    for what, folder in (("images", images), ("labels", labels)):
        if not folder.is_dir():
            raise ValueError(f"the {what} folder {folder} does not exist")
    if encoding not in LABEL_ENCODINGS:
        raise ValueError(f"encoding must be one of {LABEL_ENCODINGS}, not {encoding!r}")
    label_files = _files(labels, LABEL_EXTENSIONS)
    if images.resolve() == labels.resolve():  # one folder: labels are told apart by their name's ending
        label_files = [p for p in label_files if _pair_stem(p, LABEL_SUFFIXES) != p.stem]
    by_stem: dict[str, Path] = {}
    for path in label_files:
        by_stem.setdefault(_pair_stem(path, LABEL_SUFFIXES), path)
    is_label = set(label_files)
    image_files = [p for p in _files(images, IMAGE_EXTENSIONS) if p not in is_label]
    pairs = [(p, by_stem.get(_pair_stem(p, IMAGE_SUFFIXES))) for p in image_files]
    unmatched = [p.name for p, label in pairs if label is None]
    pairs = [(p, label) for p, label in pairs if label is not None]
    if not pairs:
        raise ValueError(
            f"no image in {images} has a label in {labels} with the same file stem "
            f"({len(image_files)} images, {len(label_files)} labels)"
        )
    if len(pairs) > MAX_EVAL_IMAGES:
        raise ValueError(f"{len(pairs)} labelled images; at most {MAX_EVAL_IMAGES} are evaluated at once")
    if limit:
        pairs = pairs[:limit]
    try:
        # read twice (here, and when each image is scored), so that one map at a time is in memory
        used = set_encoding(decode_label(label) for _, label in pairs) if encoding == "auto" else encoding
    except ImageError as exc:
        raise ValueError(f"the labels in {labels}: {exc}") from exc

    def load(i: int) -> LabelledImage:
        image_path, label_path = pairs[i]
        try:
            image = np.asarray(load_image(image_path))
            label, _ = read_label(decode_label(label_path), used)
        except ImageError as exc:
            raise ValueError(f"{image_path.name} / {label_path.name}: {exc}") from exc
        return LabelledImage(_pair_stem(image_path, IMAGE_SUFFIXES), image, label)

    skipped = f", {len(unmatched)} images without a label skipped" if unmatched else ""
    return LabelledSet(
        description=f"{kind} {name or f'image folder {images}'} ({len(pairs)} labelled images{skipped})",
        key=f"upload:{name}:n={len(pairs)}"
        if name
        else f"folder:{images.resolve()}:{labels.resolve()}:n={len(pairs)}",
        kind=kind,
        label_encoding=used,
        names=[_pair_stem(p, IMAGE_SUFFIXES) for p, _ in pairs],
        load=load,
    )


MAX_ZIP_BYTES = 2 * 2**30
"""Most that an uploaded zip of labelled images may hold once extracted."""
MAX_ZIP_FILES = 2 * MAX_EVAL_IMAGES + 100
_IMAGE_FOLDERS = {"images", "image", "imgs", "img", "photos", "leftimg8bit"}
_LABEL_FOLDERS = {"labels", "label", "gt", "gtfine", "masks", "annotations", "ground_truth"}


def extract_zip(data: bytes, folder: str | Path, max_bytes: int = MAX_ZIP_BYTES) -> Path:
    """Extract the images and label maps of a zip into ``folder`` (which must be empty or new), safely:
    what the zip claims is checked before anything is written (at most ``max_bytes`` in all and
    :data:`MAX_ZIP_FILES` files), and names with absolute paths or ``..`` are refused."""
    import io
    import zipfile

    folder = Path(folder)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ValueError("the upload is not a zip file") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        wanted = [
            m for m in members if Path(m.filename).suffix.lower() in IMAGE_EXTENSIONS + LABEL_EXTENSIONS
        ]
        if len(wanted) > MAX_ZIP_FILES:
            raise ValueError(f"the zip holds {len(wanted)} images; at most {MAX_ZIP_FILES} are accepted")
        size = sum(m.file_size for m in wanted)
        if size > max_bytes:
            raise ValueError(
                f"the zip's images take {size / 2**20:,.0f} MB extracted; "
                f"the limit is {max_bytes / 2**20:,.0f} MB"
            )
        for member in wanted:
            name = Path(member.filename.replace("\\", "/"))
            if name.is_absolute() or ".." in name.parts:
                raise ValueError(f"the zip holds a file outside its own folder ({member.filename}); refused")
            if any(part.startswith(".") or part == "__MACOSX" for part in name.parts):
                continue
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, target.open("wb") as out:
                remaining = member.file_size + 1
                while chunk := src.read(1 << 20):  # never more than the entry claims
                    remaining -= len(chunk)
                    if remaining < 0:
                        raise ValueError(f"{member.filename} is larger than the zip says; refused")
                    out.write(chunk)
    return folder


def zip_folders(folder: str | Path) -> tuple[Path, Path]:
    """The images folder and the labels folder of an extracted zip: folders named like "images" and
    "labels" (at any depth), else the whole zip for both (labels then end in _labelIds, _mask, ...)."""
    folder = Path(folder)
    dirs = [d for d in sorted(folder.rglob("*")) if d.is_dir()]
    images = next((d for d in dirs if d.name.lower() in _IMAGE_FOLDERS), None)
    labels = next((d for d in dirs if d.name.lower() in _LABEL_FOLDERS), None)
    if images is not None and labels is not None:
        return images, labels
    return folder, folder


def labelled_zip(
    data: bytes, folder: str | Path, encoding: str = "auto", max_bytes: int = MAX_ZIP_BYTES
) -> LabelledSet:
    """An uploaded zip of image / label pairs (see :func:`zip_folders`), extracted into ``folder``."""
    images, labels = zip_folders(extract_zip(data, folder, max_bytes))
    return image_folders(images, labels, encoding=encoding)


def open_labelled_set(spec: dict[str, Any]) -> LabelledSet:
    """A labelled set from its description: ``{"source": "procedural", "count": N}``, ``{"source": "folders",
    "images": DIR, "labels": DIR, "encoding": E}`` or ``{"source": "root", "root": DIR}`` (what the app keeps
    to show an evaluation's images again; :func:`segdemo.jobs.data_arguments` gives the same to the CLI)."""
    source = spec.get("source")
    if source == "procedural":
        return procedural_val(int(spec["count"]))
    if source == "folders":
        return image_folders(
            spec["images"], spec["labels"], encoding=spec.get("encoding", "auto"), name=spec.get("name")
        )
    if source == "root":
        return dataset_root(spec["root"])
    raise ValueError(f"unknown labelled set {spec!r}")


@dataclass(frozen=True)
class ImageScore:
    """One image's scores: mIoU over the classes it has (in its label or the prediction), per-class IoU."""

    name: str
    miou: float
    pixel_accuracy: float
    iou: tuple[float, ...]
    """Per class in trainId order, percent; NaN where the class is in neither the label nor the prediction."""


@dataclass
class Evaluation:
    """What :func:`evaluate_set` measured: the summed confusion matrix, per-image scores and the protocol."""

    checkpoint: str
    confusion: np.ndarray
    """19 x 19 int64, rows = ground truth, columns = prediction (ignore pixels not counted)."""
    images: list[ImageScore]
    protocol: dict[str, Any]
    data: dict[str, Any]

    def _matrix(self) -> ConfusionMatrix:
        matrix = ConfusionMatrix()
        matrix.matrix.copy_(torch.from_numpy(self.confusion))
        return matrix

    @property
    def summary(self) -> dict[str, Any]:
        """``{"miou", "pixel_accuracy", "iou": {class: percent}}`` of the whole set."""
        return self._matrix().summary()

    @property
    def key(self) -> str:
        """Where this evaluation lives in a checkpoint's metadata: the data's key and the protocol."""
        return f"{self.data['key']}|tta={self.protocol['test_time']['name']}|labels={self.protocol['labels']}"

    def record(self) -> dict[str, Any]:
        """The JSON record written into the checkpoint's metadata (``evaluations[key]``)."""
        return {
            "eval_data": self.data["description"],
            "eval_kind": self.data["kind"],
            **self.summary,
            "confusion": self.confusion.tolist(),
            "protocol": self.protocol,
            "images": len(self.images),
            "measured": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "confusion": self.confusion.tolist(),
            "images": [
                {"name": s.name, "miou": s.miou, "pixel_accuracy": s.pixel_accuracy, "iou": list(s.iou)}
                for s in self.images
            ],
            "protocol": self.protocol,
            "data": self.data,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Evaluation:
        return cls(
            checkpoint=value["checkpoint"],
            confusion=np.asarray(value["confusion"], dtype=np.int64),
            images=[
                ImageScore(s["name"], s["miou"], s["pixel_accuracy"], tuple(float(v) for v in s["iou"]))
                for s in value["images"]
            ],
            protocol=value["protocol"],
            data=value["data"],
        )

    def per_image_frame(self) -> Any:
        """A pandas DataFrame: one row per image (name, mIoU, pixel accuracy, the 19 IoUs), worst first."""
        import pandas as pd

        rows = [
            {
                "image": s.name,
                "mIoU": s.miou,
                "pixel accuracy": s.pixel_accuracy,
                **dict(zip(CLASS_NAMES, s.iou)),
            }
            for s in self.images
        ]
        return pd.DataFrame(rows, columns=["image", "mIoU", "pixel accuracy", *CLASS_NAMES]).sort_values(
            "mIoU"
        )

    def per_image_csv(self) -> str:
        return self.per_image_frame().to_csv(index=False, float_format="%.2f")


def score_image(prediction: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, ImageScore]:
    """The 19 x 19 confusion matrix of one image and its scores (name left empty)."""
    matrix = ConfusionMatrix()
    matrix.update(torch.from_numpy(prediction.astype(np.int64)), torch.from_numpy(label.astype(np.int64)))
    summary = matrix.summary()
    iou = tuple(float(v) for v in summary["iou"].values())
    return matrix.matrix.numpy().astype(np.int64), ImageScore(
        "", summary["miou"], summary["pixel_accuracy"], iou
    )


def predict_labelled(segmenter: Any, item: LabelledImage, test_time: TestTime = TestTime()) -> np.ndarray:
    """The h x w uint8 prediction for a labelled image, at its label's size."""
    probs = probabilities(segmenter, item.image, tuple(item.label.shape), test_time)
    return probs.argmax(dim=0).to(torch.uint8).cpu().numpy()


def evaluate_set(
    segmenter: Any,
    data: LabelledSet,
    test_time: TestTime = TestTime(),
    progress: Callable[[int, int], None] | None = None,
    checkpoint: str = "",
) -> Evaluation:
    """Evaluate one :class:`~segdemo.inference.Segmenter` on a labelled set: every image's prediction at its
    label's resolution (``test_time`` passes averaged), scored per image and summed. ``progress(i, n)`` is
    called after image ``i``."""
    total = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    scores = []
    for i in range(len(data)):
        item = data[i]
        matrix, score = score_image(predict_labelled(segmenter, item, test_time), item.label)
        total += matrix
        scores.append(ImageScore(item.name, score.miou, score.pixel_accuracy, score.iou))
        if progress is not None:
            progress(i + 1, len(data))
    in_h, in_w = segmenter.input_size
    protocol = {
        "input_size": [in_w, in_h],
        "labels": "native",
        "scoring": "predictions at each label's own resolution (probabilities upsampled bilinearly)",
        "test_time": {"name": test_time.name, **test_time.as_dict()},
        "label_encoding": data.label_encoding,
    }
    return Evaluation(
        checkpoint=checkpoint,
        confusion=total,
        images=scores,
        protocol=protocol,
        data={"description": data.description, "key": data.key, "kind": data.kind, "images": len(data)},
    )


def save_evaluation(path: str | Path, evaluation: Evaluation) -> dict[str, Any]:
    """Write the evaluation into a checkpoint folder's metadata: ``evaluations[evaluation.key]``, beside the
    others (another data set or protocol keeps its own entry). Returns the record."""
    from segdemo.checkpoints import read_metadata, update_metadata

    record = evaluation.record()
    evaluations = dict(read_metadata(path).get("evaluations") or {})
    evaluations[evaluation.key] = record
    update_metadata(path, evaluations=evaluations)
    return record
