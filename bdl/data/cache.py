"""A domain's training images decoded once, at the size the stages use, into one HDF5 set.

Every stage of the loop reads the same target train images (the translator, each adversarial and SSL
step, each pseudo-labelling) and most read the source: decoding a PNG and resizing it again at each
visit cost as much as the demo model's step (0.2-0.4 ms per 64x128 frame against ~0.05 ms for a frame
mapped from the cache), and on real data a 2048x1024 Cityscapes PNG takes tens of milliseconds.
The source cache holds the decoded trainId labels beside the images; the target cache never holds
labels (adaptation must not see them).
"""

import itertools
import json
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader

from bdl.artifacts import H5Writer, names_hash
from bdl.data.datasets import H5SegmentationDataset, SegmentationDataset
from bdl.data.readers import DataError, DatasetSpec, Sample
from bdl.protocol import image_filter


def write_cache(samples: list[Sample], decode_label, size, out, attrs: dict, workers: int = 0, progress=None,
                spec: DatasetSpec | None = None, protocol: str = "bdl") -> int:
    """Decode (and resize, with ``protocol``'s filter) every sample as ``SegmentationDataset`` does and store
    it; all images must come out the same size. With ``decode_label`` the labels are stored too (uint8
    trainIds), fitted to their images by ``spec``'s on_mismatch policy."""
    ds = SegmentationDataset(samples, decode_label, size, **mismatch_args(spec), protocol=protocol)
    # one image at a time (batch_size None): a wrong-sized image is named before anything is stacked
    items = iter(DataLoader(ds, batch_size=None, num_workers=workers))
    first = next(items)
    h, w = first["image"].shape[-2:]
    arrays = {"images": ((h, w, 3), "uint8")} | ({"labels": ((h, w), "uint8")} if decode_label else {})
    attrs = attrs | {"size": json.dumps(list(size) if size else None), "image_filter": _filter(size, protocol),
                     "names_hash": names_hash(s.name for s in samples), "with_labels": int(decode_label is not None)}
    items = itertools.chain([first], items)
    batch: list[dict] = []
    with H5Writer(out, len(ds), arrays, attrs) as writer:
        for item in (progress(items, total=len(ds)) if progress else items):
            if tuple(item["image"].shape[-2:]) != (h, w):
                hi, wi = item["image"].shape[-2:]
                raise DataError(f"{samples[item['index']].image}: {wi}x{hi} (after resizing) but "
                                f"{samples[0].image.name} is {w}x{h}; a cache needs one size: set the domain's size")
            batch.append(item)
            if len(batch) == 32 or item["index"] == len(ds) - 1:
                _write(writer, batch, samples)
                batch = []
    return len(ds)


def _write(writer: H5Writer, batch: list[dict], samples: list[Sample]) -> None:
    start = batch[0]["index"]
    arrays = {"images": torch.stack([b["image"] for b in batch]).permute(0, 2, 3, 1).numpy()}
    if "label" in batch[0]:
        arrays["labels"] = torch.stack([b["label"] for b in batch]).numpy().astype(np.uint8)
    writer.write(start, [samples[b["index"]].name for b in batch], **arrays)


def domain_set(spec: DatasetSpec, cache, size, with_labels: bool, crop=None, flip=False, seed=0, protocol="bdl"):
    """A domain's images (with labels if asked) as a dataset: from the image cache at ``cache`` when given,
    else decoded from the files on each read, resized with ``protocol``'s filter. Both give the same pixels."""
    samples = spec.samples(with_labels)
    if cache:
        return cached_set(cache, samples, size, with_labels, crop, flip, seed, protocol)
    return SegmentationDataset(samples, spec.label_decoder() if with_labels else None, size, crop, flip, seed,
                               **mismatch_args(spec), protocol=protocol)


def _filter(size, protocol: str) -> str:
    """The filter a cache's images were resized with ('none' when kept at their file size)."""
    return image_filter(protocol) if size else "none"


def mismatch_args(spec: DatasetSpec | None) -> dict:
    """``SegmentationDataset``'s label-size policy arguments for a domain."""
    return {} if spec is None else {"on_mismatch": spec.on_mismatch, "mismatch_key": spec.mismatch_key}


def cached_set(path, samples: list[Sample], size, with_labels: bool, crop=None, flip=False, seed=0, protocol="bdl"):
    """The cache at ``path`` as a dataset over ``samples``, after checking that it holds exactly these images
    (same names, same order), at this size and resized with ``protocol``'s filter, with labels where they are
    needed."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image cache not found")
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            has_labels = "labels" in f
    except OSError as exc:
        raise DataError(f"{path}: not a readable image cache ({exc})") from None
    want = json.dumps(list(size) if size else None)
    if attrs.get("names_hash") != names_hash(s.name for s in samples):
        raise DataError(f"{path}: the cache holds other images than the {len(samples)} listed; remake it")
    if attrs.get("size") != want:
        raise DataError(f"{path}: the cache was made at size {attrs.get('size')}, this stage needs {want}")
    # a cache written before the filter was recorded resized bilinear, as the bdl protocol does
    made = attrs.get("image_filter", _filter(size, "bdl"))
    if made != _filter(size, protocol):
        raise DataError(f"{path}: the cache's images were resized {made}, protocol '{protocol}' resizes them "
                        f"{_filter(size, protocol)}; remake it")
    if with_labels and not has_labels:
        raise DataError(f"{path}: the cache holds no labels")
    ds = H5SegmentationDataset(path, label_key="labels" if with_labels else None, crop=crop, flip=flip, seed=seed)
    ds.samples = samples
    return ds
