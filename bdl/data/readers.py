"""Readers for the on-disk layouts BDL uses: GTA5, Cityscapes, SYNTHIA RAND-CITYSCAPES and a list file.

Each reader turns a root into a list of ``Sample`` (image path, label path or None, name) and knows how
to decode its labels into the 19 Cityscapes trainIds (255 = ignore). Listing checks the layout and
pairing; ``check_samples`` opens every file and is what the workflow runs before any training.
Target-domain training passes ``with_labels=False`` so that no code path can open a target label.
"""

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from bdl.data.labels import (
    CITYSCAPES_LUT,
    CITYSCAPES_MAX_ID,
    IGNORE,
    NUM_CLASSES,
    SYNTHIA_LUT,
    SYNTHIA_MAX_ID,
    make_lut,
)
from bdl.errors import BDLError
from bdl.protocol import image_filter

FORMATS = ("gta5", "cityscapes", "synthia", "list")
# What to do with a label whose size is not its image's (GTA5 ships a few such frames, e.g. 15188.png and
# 17705.png): refuse, leave the pair out, or resize the label (nearest) to the image, which is what the
# reference code amounts to (it resizes image and label to 1280x720 independently).
ON_MISMATCH = ("error", "skip", "resize")


class DataError(BDLError):
    """A dataset file or folder is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class Sample:
    image: Path
    label: Path | None
    name: str


def read_image(path: Path) -> np.ndarray:
    """HxWx3 uint8 RGB; palette, grey and RGBA files are converted."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from None


def fit_label(label: np.ndarray, image_hw: tuple[int, int], on_mismatch: str, label_path, image_path,
              key: str) -> np.ndarray:
    """``label`` at the image's size: as it is, resized (nearest, so no class is invented) under 'resize',
    else refused naming the file and ``key``, the config key of the policy."""
    if label.shape == tuple(image_hw):
        return label
    if on_mismatch == "resize":
        return np.asarray(Image.fromarray(label).resize((image_hw[1], image_hw[0]), Image.NEAREST))
    raise DataError(f"{label_path}: label is {label.shape[1]}x{label.shape[0]} but image {Path(image_path).name} is "
                    f"{image_hw[1]}x{image_hw[0]}; set {key}: skip or resize to train without it or with its "
                    "label resized")


RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def resize_pair(image: np.ndarray, label: np.ndarray | None, size: tuple[int, int] | None, protocol: str = "bdl"):
    """Image and label at ``size`` (W, H): the image with ``protocol``'s filter (bilinear, or bicubic as the
    reference's loaders), the label nearest."""
    if size is None or (image.shape[1], image.shape[0]) == tuple(size):
        return image, label
    image = np.asarray(Image.fromarray(image).resize(tuple(size), RESAMPLE[image_filter(protocol)]))
    if label is not None:
        label = np.asarray(Image.fromarray(label).resize(tuple(size), Image.NEAREST))
    return image, label


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from None


def _read_index_png(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L", "I", "I;16"):
                raise DataError(f"{path}: label must be a single-channel or palette PNG, got mode {img.mode}")
            return np.asarray(img).astype(np.int64)
    except FileNotFoundError:
        raise DataError(f"{path}: label file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot decode label ({exc})") from None


def _map_ids(ids: np.ndarray, lut: np.ndarray, max_id: int, path: Path) -> np.ndarray:
    if ids.size and (ids.min() < 0 or ids.max() > max_id):
        bad = sorted(set(np.unique(ids[(ids < 0) | (ids > max_id)]).tolist()))[:5]
        raise DataError(f"{path}: label ids {bad} outside the label table (0..{max_id})")
    return lut[ids]


def decode_cityscapes_ids(path: Path) -> np.ndarray:
    """GTA5 labels (palette index) and Cityscapes ``*_labelIds.png`` share the labelId encoding."""
    return _map_ids(_read_index_png(path), CITYSCAPES_LUT, CITYSCAPES_MAX_ID, path)


def decode_synthia(path: Path) -> np.ndarray:
    """SYNTHIA labels are 16-bit 3-channel PNGs with the class in channel 0; Pillow reads them as zeros."""
    import torchvision.io as tvio

    if not path.is_file():
        raise DataError(f"{path}: label file not found")
    try:
        with warnings.catch_warnings():  # torchvision 0.29 flags its decoders as deprecated; they still work
            warnings.simplefilter("ignore", DeprecationWarning)
            raw = tvio.decode_png(tvio.read_file(str(path)), mode=tvio.ImageReadMode.UNCHANGED)
    except RuntimeError as exc:
        raise DataError(f"{path}: cannot decode label ({str(exc).splitlines()[0]})") from None
    return _map_ids(raw[0].numpy().astype(np.int64), SYNTHIA_LUT, SYNTHIA_MAX_ID, path)


def decode_train_ids(path: Path) -> np.ndarray:
    ids = _read_index_png(path)
    bad = (ids >= NUM_CLASSES) & (ids != IGNORE)
    if bad.any():
        raise DataError(f"{path}: label values {sorted(np.unique(ids[bad]).tolist())[:5]} are not trainIds "
                        f"(0..{NUM_CLASSES - 1} or {IGNORE})")
    return ids.astype(np.uint8)


def _require_dir(path: Path, what: str) -> None:
    if not path.exists():
        raise DataError(f"{path}: {what} not found")
    if not path.is_dir():
        raise DataError(f"{path}: {what} is not a folder")


def _read_list(list_file: Path) -> list[str]:
    if not list_file.is_file():
        raise DataError(f"{list_file}: list file not found")
    return [ln.strip() for ln in list_file.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def gta5_samples(root: Path, list_file: Path | None = None, with_labels: bool = True) -> list[Sample]:
    """GTA5: ``images/NNNNN.png`` with ``labels/NNNNN.png`` (palette index = Cityscapes labelId)."""
    root = Path(root)
    _require_dir(root, "GTA5 root")
    images = root / "images"
    if not images.is_dir():
        hint = " (this looks like a Cityscapes root)" if (root / "leftImg8bit").is_dir() else ""
        raise DataError(f"{root}: not a GTA5 layout, expected images/ and labels/ folders{hint}")
    if with_labels:
        _require_dir(root / "labels", "GTA5 labels folder")
    names = _read_list(list_file) if list_file else sorted(p.name for p in images.glob("*.png"))
    if not names:
        raise DataError(f"{images}: no .png images found")
    return [Sample(images / n, (root / "labels" / n) if with_labels else None, Path(n).stem) for n in names]


def cityscapes_samples(root: Path, split: str, with_labels: bool = True) -> list[Sample]:
    """Cityscapes: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with ``gtFine/.../*_gtFine_labelIds.png``."""
    root = Path(root)
    _require_dir(root, "Cityscapes root")
    img_dir = root / "leftImg8bit" / split
    if not img_dir.is_dir():
        hint = " (this looks like a GTA5 root)" if (root / "images").is_dir() else ""
        raise DataError(f"{img_dir}: not a Cityscapes layout, expected leftImg8bit/{split}/<city>/{hint}")
    images = sorted(img_dir.glob("*/*_leftImg8bit.png"))
    if not images:
        raise DataError(f"{img_dir}: split '{split}' holds no *_leftImg8bit.png images")
    samples = []
    for img in images:
        stem = img.name[: -len("_leftImg8bit.png")]
        label = root / "gtFine" / split / img.parent.name / f"{stem}_gtFine_labelIds.png" if with_labels else None
        samples.append(Sample(img, label, stem))
    return samples


def synthia_samples(root: Path, list_file: Path | None = None, with_labels: bool = True) -> list[Sample]:
    """SYNTHIA RAND-CITYSCAPES: ``RGB/<rel>.png`` with ``GT/LABELS/<rel>.png`` (sub-folders allowed)."""
    root = Path(root)
    _require_dir(root, "SYNTHIA root")
    rgb = root / "RGB"
    if not rgb.is_dir():
        raise DataError(f"{root}: not a SYNTHIA layout, expected RGB/ and GT/LABELS/ folders")
    if list_file:
        rels = [Path(r).relative_to("RGB") if r.startswith("RGB/") else Path(r) for r in _read_list(list_file)]
    else:
        rels = sorted(p.relative_to(rgb) for p in rgb.rglob("*.png"))
    if not rels:
        raise DataError(f"{rgb}: no .png images found")
    labels = root / "GT" / "LABELS"
    return [Sample(rgb / r, (labels / r) if with_labels else None, str(r.with_suffix("")).replace("/", "_"))
            for r in rels]


def load_label_map(path: Path) -> np.ndarray:
    """A two-column text file ``id trainId`` (header and # lines skipped) as a lookup table."""
    mapping = {}
    for ln in _read_list(Path(path)):
        parts = ln.split()
        if len(parts) < 2 or not parts[0].lstrip("-").isdigit():
            continue
        src, dst = int(parts[0]), int(parts[1])
        if src >= 0:
            mapping[src] = dst if 0 <= dst < NUM_CLASSES else IGNORE
    if not mapping:
        raise DataError(f"{path}: label map holds no 'id trainId' rows")
    return make_lut(mapping)


def list_samples(list_file: Path, with_labels: bool = True) -> list[Sample]:
    """Generic list: each line ``image_path [label_path]``, relative to the list file's folder."""
    list_file = Path(list_file)
    base = list_file.parent
    samples = []
    for i, ln in enumerate(_read_list(list_file)):
        parts = ln.split()
        if with_labels and len(parts) < 2:
            raise DataError(f"{list_file}: line {i + 1} names an image without a label")
        img = base / parts[0]
        samples.append(Sample(img, (base / parts[1]) if with_labels else None, img.stem))
    if not samples:
        raise DataError(f"{list_file}: list file names no images")
    return samples


@dataclass
class DatasetSpec:
    """What a config's ``source``/``target`` block names: a format, a root, optional list and label map."""

    format: str
    root: str
    split: str = "train"
    list_file: str | None = None
    label_map: str | None = None
    on_mismatch: str = "error"
    domain: str = "source"  # the config block, for messages that name a key

    @property
    def mismatch_key(self) -> str:
        return f"{self.domain}.on_mismatch"

    def samples(self, with_labels: bool = True, split: str | None = None, keep_mismatched: bool = False
                ) -> list[Sample]:
        """The listed samples; under on_mismatch 'skip', pairs whose label size (from the PNG headers) is not
        the image's are left out, so every stage sees the same list (``keep_mismatched``: all of them).
        The source leaves them out of its unlabelled listing too (the translator's), so that it matches the
        cache and the translated set; a target's unlabelled train listing never opens a label."""
        split = split or self.split
        found = self._listed(with_labels, split)
        if self.on_mismatch != "skip" or keep_mismatched or not (with_labels or self.domain == "source"):
            return found
        labelled = found if with_labels else self._listed(True, split)
        kept = {s.name for s in labelled if image_size(s.image) == image_size(s.label)}
        return [s for s in found if s.name in kept]

    def _listed(self, with_labels: bool, split: str) -> list[Sample]:
        lst = Path(self.list_file) if self.list_file else None
        if self.format == "gta5":
            return gta5_samples(Path(self.root), lst, with_labels)
        if self.format == "cityscapes":
            return cityscapes_samples(Path(self.root), split, with_labels)
        if self.format == "synthia":
            return synthia_samples(Path(self.root), lst, with_labels)
        if self.format == "list":
            if lst is None:
                raise DataError(f"{self.root}: format 'list' needs a list file (key 'list_file')")
            return list_samples(lst if lst.is_absolute() else Path(self.root) / lst, with_labels)
        raise DataError(f"format '{self.format}' is not one of {', '.join(FORMATS)}")

    def label_decoder(self):
        if self.format in ("gta5", "cityscapes"):
            return decode_cityscapes_ids
        if self.format == "synthia":
            return decode_synthia
        if self.label_map:
            lut = load_label_map(Path(self.label_map))
            return lambda p: _map_ids(_read_index_png(p), lut, len(lut) - 1, p)
        return decode_train_ids


def check_samples(samples: list[Sample], decode_label, progress=None, on_mismatch: str = "error",
                  mismatch_key: str = "source.on_mismatch", one_size_key: str | None = None) -> dict:
    """Open every image and label once: pairing, decodability, label ids inside the table, label size equal
    to the image's (else ``on_mismatch``: 'error' refuses naming ``mismatch_key``, 'skip' and 'resize'
    record the pair), and with ``one_size_key`` (a training split read at the files' own size) one image
    size for all, else a refusal naming two files and that key.

    Returns per-split facts (count, image sizes, class pixel counts, mismatched pairs) for the record.
    """
    sizes: dict[str, Path] = {}  # size -> its first image
    counts = np.zeros(NUM_CLASSES + 1, dtype=np.int64)
    mismatched, per_size = [], {}
    for s in progress(samples) if progress else samples:
        if not s.image.is_file():
            raise DataError(f"{s.image}: image file not found")
        if s.image.stat().st_size == 0:
            raise DataError(f"{s.image}: empty file")
        w, h = image_size(s.image)
        read_image(s.image)  # decodes the pixels too: a truncated file fails here, not at hour 30
        if s.label is not None:
            if not s.label.is_file():
                raise DataError(f"{s.label}: label file not found for image {s.image.name}")
            if s.label.stat().st_size == 0:
                raise DataError(f"{s.label}: empty file")
            lab = decode_label(s.label)
            if lab.shape != (h, w):
                if on_mismatch == "error":
                    fit_label(lab, (h, w), on_mismatch, s.label, s.image, mismatch_key)  # refuses
                mismatched.append({"image": str(s.image), "label": str(s.label), "image_size": f"{w}x{h}",
                                   "label_size": f"{lab.shape[1]}x{lab.shape[0]}",
                                   "action": "skipped" if on_mismatch == "skip" else "label resized"})
                if on_mismatch == "skip":
                    continue
                lab = fit_label(lab, (h, w), on_mismatch, s.label, s.image, mismatch_key)
            counts += np.bincount(np.minimum(lab.ravel(), NUM_CLASSES), minlength=NUM_CLASSES + 1)
        sizes.setdefault(f"{w}x{h}", s.image)
        per_size[f"{w}x{h}"] = per_size.get(f"{w}x{h}", 0) + 1
        if one_size_key and len(sizes) > 1:
            (a, pa), (b, pb) = list(sizes.items())[:2]
            raise DataError(f"frames of different sizes: {pa} is {a}, {pb} is {b}; batches and on-disk sets need one "
                            f"size: set {one_size_key}: [W, H] (every frame is resized to it on load)")
    return {"count": sum(per_size.values()), "sizes": per_size, "class_pixels": counts[:NUM_CLASSES].tolist(),
            "ignored_pixels": int(counts[NUM_CLASSES]), "mismatched": mismatched}
