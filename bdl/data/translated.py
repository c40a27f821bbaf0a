"""A translated source set as the segmenter trains on it: F(S)'s images from the set, each frame's label from
the source itself (its cache or its files, through the dataset that reads the source), since translation never
changes a label. The set records which frames it holds (``names_hash``) and at what size; both are checked
against the source before a frame is read."""

from pathlib import Path

import h5py

from bdl.artifacts import IMAGE_CODEC, check_set, names_hash
from bdl.data.datasets import H5SegmentationDataset
from bdl.errors import BDLError


def translated_arrays(size_hw) -> dict:
    """The per-image arrays of a translated set: the images alone, compressed (``IMAGE_CODEC``)."""
    return {"images": ((*size_hw, 3), "uint8", IMAGE_CODEC)}


def check_source(path, source) -> None:
    """Refuse a translated set at ``path`` that was not made from the frames of ``source`` (a source dataset with
    ``samples`` and labels) at the size ``source`` gives them."""
    attrs = check_set(path, "translated")
    names = [s.name for s in source.samples]
    if attrs.get("names_hash") != names_hash(names):
        raise BDLError(f"{path}: translates other frames than the {len(names)} the source listing holds; was it made "
                       "from other data? (rerun translate)")
    with h5py.File(path, "r") as f:
        hw = tuple(f["images"].shape[1:3])
    label_hw = tuple(source.label_at(0).shape) if len(source) else hw
    if hasattr(source, "close"):  # a cache opened to read that label: DataLoader workers forked later open their own
        source.close()
    if hw != label_hw:
        raise BDLError(f"{path}: its images are {hw[1]}x{hw[0]} but the source's labels {label_hw[1]}x{label_hw[0]} "
                       "(source.size changed since it was made? rerun translate)")


class TranslatedSet(H5SegmentationDataset):
    """Images from the translated set at ``path``, labels from ``source`` (``label_at``), crops and flips drawn
    for both together."""

    def __init__(self, path: Path, source, crop=None, flip=False, seed=0):
        check_source(path, source)
        super().__init__(path, "images", None, crop, flip, seed, labels_from=source)
        self.samples = source.samples


def recorded_source(path, args=None):
    """The labelled source a translated set was made from, as a dataset read from the files: the data flags of
    ``args`` (``--source-format`` ...) when given, else what the set records (its ``source`` and
    ``source_size`` attributes, paths as the stage that made it was given them)."""
    import json

    from bdl.data.cache import domain_set
    from bdl.data.readers import DatasetSpec

    attrs = check_set(path, "translated")
    if args is not None and getattr(args, "source_format", None):
        from bdl.cli import dataset_spec

        spec, size = dataset_spec(args, "source"), args.source_size
    else:
        try:
            spec, size = DatasetSpec(**json.loads(attrs["source"])), json.loads(attrs.get("source_size", "null"))
        except (KeyError, TypeError, ValueError):
            raise BDLError(f"{path}: records no source data; give the --source-... flags it was made from") from None
    source = domain_set(spec, None, size, True)
    check_source(path, source)
    return source
