"""Torch datasets over reader samples and HDF5 artifacts, with paired transforms.

Images stay uint8 (3xHxW) until they reach the device, which keeps worker-to-main transfers small;
labels are resized with nearest neighbour so no class is invented at boundaries, and padding uses 255.
"""

from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from bdl.artifacts import DecodedFrames, frames
from bdl.data.labels import IGNORE
from bdl.data.readers import Sample, fit_label, image_size, read_image, resize_pair
from bdl.distributed import World
from bdl.errors import BDLError
from bdl.stopping import ignore_in_worker


def random_crop_flip(image: torch.Tensor, label: torch.Tensor | None, crop, flip: bool, gen: torch.Generator):
    """Crop (padding labels with 255 when the image is smaller) and horizontal flip, drawn from ``gen``."""
    if crop is not None:
        cw, ch = crop
        _, h, w = image.shape
        if h < ch or w < cw:
            ph, pw = max(ch - h, 0), max(cw - w, 0)
            image = torch.nn.functional.pad(image, (0, pw, 0, ph))
            if label is not None:
                label = torch.nn.functional.pad(label, (0, pw, 0, ph), value=IGNORE)
            h, w = h + ph, w + pw
        y = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
        x = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
        image = image[:, y:y + ch, x:x + cw]
        if label is not None:
            label = label[y:y + ch, x:x + cw]
    if flip and bool(torch.rand((), generator=gen) < 0.5):
        image = image.flip(-1)
        if label is not None:
            label = label.flip(-1)
    return image, label


class _Augmenting(Dataset):
    def __init__(self, crop=None, flip=False, seed=0):
        self.crop, self.flip, self.seed = (tuple(crop) if crop else None), flip, seed
        self.epoch = 0

    def _augment(self, index, image, label):
        # Seeded per (seed, epoch, index): the same config sees the same crops whatever the worker count.
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 100_003 + index)
        return random_crop_flip(image, label, self.crop, self.flip, gen)


class SegmentationDataset(_Augmenting):
    """Reader samples -> {'image': uint8 3xHxW, 'label': int64 HxW (if labelled), 'index': i}."""

    def __init__(self, samples: list[Sample], decode_label=None, size=None, crop=None, flip=False, seed=0,
                 on_mismatch="error", mismatch_key="source.on_mismatch", protocol="bdl"):
        super().__init__(crop, flip, seed)
        self.samples, self.decode_label = samples, decode_label
        self.size = tuple(size) if size else None
        self.protocol = protocol  # the image's resampling filter when resized (bdl.protocol)
        self.on_mismatch, self.mismatch_key = on_mismatch, mismatch_key

    def __len__(self):
        return len(self.samples)

    def label_at(self, i) -> np.ndarray:
        """Frame i's label as ``__getitem__`` gives it before augmenting (uint8), without decoding the image."""
        s = self.samples[i]
        w, h = image_size(s.image)
        label = fit_label(self.decode_label(s.label), (h, w), self.on_mismatch, s.label, s.image, self.mismatch_key)
        if self.size is not None and (w, h) != self.size:
            label = np.asarray(Image.fromarray(label).resize(self.size, Image.NEAREST))
        return label.astype(np.uint8)

    def __getitem__(self, i):
        s = self.samples[i]
        image = read_image(s.image)
        label = self.decode_label(s.label) if (s.label is not None and self.decode_label) else None
        if label is not None:
            label = fit_label(label, image.shape[:2], self.on_mismatch, s.label, s.image, self.mismatch_key)
        image, label = resize_pair(image, label, self.size, self.protocol)
        image_t = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)
        label_t = torch.from_numpy(label.astype(np.int64)) if label is not None else None
        image_t, label_t = self._augment(i, image_t, label_t)
        out = {"image": image_t.contiguous(), "index": i}
        if label_t is not None:
            out["label"] = label_t.contiguous()
        return out


class H5SegmentationDataset(_Augmenting):
    """An HDF5 set on disk (decoded image cache, translated set, pseudo-label set); ``label_key`` picks the label
    array, None for images only. Arrays are memory-mapped where stored contiguous (``bdl.artifacts.frames``).
    ``images_from`` / ``labels_from``: a dataset of the same frames that holds the images / labels instead (its
    ``label_at``), for sets that store only what they change."""

    def __init__(self, path: Path, image_key="images", label_key: str | None = "labels", crop=None, flip=False,
                 seed=0, images_from: "Dataset | None" = None, labels_from: "Dataset | None" = None):
        super().__init__(crop, flip, seed)
        self.path, self.image_key, self.label_key = Path(path), image_key, label_key
        self.images_from, self.labels_from = images_from, labels_from
        with h5py.File(self.path, "r") as f:
            self.length = len(f[label_key or image_key])
        self._arrays = None

    def __len__(self):
        return self.length

    def _open(self, f: h5py.File) -> dict:
        keys = ([self.image_key] if self.images_from is None else []) + ([self.label_key] if self.label_key else [])
        return {k: frames(f, k) for k in keys}

    def _get(self):
        if self._arrays is None:  # opened lazily so each DataLoader worker has its own handle
            self._file = h5py.File(self.path, "r")
            self._arrays = self._open(self._file)
        return self._arrays

    def _label(self, arrays, i) -> np.ndarray:
        if self.labels_from is not None:
            return self.labels_from.label_at(i)
        return arrays[self.label_key][i]

    @property
    def labelled(self) -> bool:
        return bool(self.label_key) or self.labels_from is not None

    def label_at(self, i) -> np.ndarray:
        return np.asarray(self._label(self._get(), i))

    def close(self) -> None:
        """Let go of the file, so that worker processes forked later open their own."""
        if self._arrays is not None:
            self._arrays = None
            self._file.close()

    def __getitem__(self, i):
        arrays = self._get()
        if self.images_from is not None:
            image_t = self.images_from[i]["image"]
        else:
            image_t = torch.from_numpy(np.array(arrays[self.image_key][i])).permute(2, 0, 1)
        label_t = torch.from_numpy(self._label(arrays, i).astype(np.int64)) if self.labelled else None
        image_t, label_t = self._augment(i, image_t, label_t)
        out = {"image": image_t.contiguous(), "index": i}
        if label_t is not None:
            out["label"] = label_t.contiguous()
        return out

    def __getitems__(self, indices: list[int]):
        """A DataLoader batch. Inference passes read in order without augmenting: there a run of frames is
        one copy from the mapped file, already collated, instead of one copy per frame and a stack."""
        arrays = self._get()
        # images_from: a pseudo-label set (labels made on read) or images kept elsewhere; an h5py dataset (a
        # compressed file without our codec) is not mapped: item by item, as always
        plain = self.crop is None and not self.flip and self.images_from is None and \
            isinstance(arrays[self.image_key], (np.ndarray, DecodedFrames))
        if not plain or not indices or list(indices) != list(range(indices[0], indices[0] + len(indices))):
            return [self[i] for i in indices]
        run = slice(indices[0], indices[0] + len(indices))
        images = torch.from_numpy(np.array(arrays[self.image_key][run])).permute(0, 3, 1, 2).contiguous()
        batch = Collated(image=images, index=torch.as_tensor(list(indices)))
        if self.labels_from is not None:
            batch["label"] = torch.from_numpy(np.stack([self._label(arrays, i) for i in indices]).astype(np.int64))
        elif self.label_key:
            batch["label"] = torch.from_numpy(arrays[self.label_key][run].astype(np.int64))
        return batch


class Collated(dict):
    """A batch a dataset assembled itself (``__getitems__``); ``collate`` passes it through."""


def collate(items):
    return items if isinstance(items, Collated) else default_collate(items)


class EpochSampler(Sampler):
    """Order fixed by (seed, epoch), with an offset: a resumed run sees exactly the batches it would have.

    With several processes (``world``) every rank draws the same order and keeps its contiguous slice of each
    global batch of ``batch_size`` (whole batches only): the ranks together see exactly the 1-process batches.
    ``offset`` counts frames of the global order either way."""

    def __init__(self, n: int, shuffle: bool, seed: int, world: World | None = None, batch_size: int | None = None):
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.epoch, self.offset = 0, 0
        self.world = world or World()
        self.global_batch = batch_size

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 7919 + self.epoch))
        else:
            order = torch.arange(self.n)
        order = order[self.offset:]
        if self.world.distributed:
            size, b = self.world.size, self.global_batch // self.world.size
            whole = len(order) // self.global_batch * self.global_batch
            order = order[:whole].view(-1, size, b)[:, self.world.rank].reshape(-1)
        return iter(order.tolist())

    def __len__(self):
        if self.world.distributed:
            return (self.n - self.offset) // self.global_batch * (self.global_batch // self.world.size)
        return self.n - self.offset


def make_loader(dataset, batch_size, shuffle, workers, seed=0, drop_last=False, world: World | None = None):
    """``batch_size`` is the global batch; with several processes (``world``, training only: drop_last) each
    rank's loader yields its share of each global batch (``EpochSampler``)."""
    if drop_last and len(dataset) < batch_size:
        raise BDLError(f"{len(dataset)} images cannot fill one batch of {batch_size}; lower the batch size")
    world = world or World()
    if world.distributed and (not drop_last or batch_size % world.size):
        raise ValueError(f"a batch of {batch_size} split across {world.size} processes needs drop_last and a multiple")
    # its own generator: a DataLoader iterator otherwise draws its worker base seed from the global RNG,
    # which a prefetch thread would do at times that differ from run to run
    return DataLoader(dataset, batch_size=batch_size // world.size,
                      sampler=EpochSampler(len(dataset), shuffle, seed, world, batch_size),
                      num_workers=workers, drop_last=drop_last, pin_memory=torch.cuda.is_available(),
                      collate_fn=collate, generator=torch.Generator().manual_seed(seed),
                      worker_init_fn=ignore_in_worker if workers else None,
                      # not persistent: workers must see the epoch that infinite() sets on the dataset
                      persistent_workers=False)


def infinite(loader, start_step: int = 0):
    """Cycle a loader forever from batch ``start_step``; each pass is a new epoch (order and augmentation)."""
    sampler = loader.sampler
    batch = sampler.global_batch or loader.batch_size  # a step is one global batch, whatever the processes
    per_epoch = max(len(range(0, sampler.n - batch + 1, batch)) if loader.drop_last
                    else -(-sampler.n // batch), 1)
    epoch, skip = divmod(start_step, per_epoch)
    while True:
        sampler.epoch, sampler.offset = epoch, skip * batch
        if hasattr(loader.dataset, "epoch"):
            loader.dataset.epoch = epoch
        yield from loader
        epoch, skip = epoch + 1, 0


@contextmanager
def cycling(*loaders, start_step: int = 0):
    """``infinite`` over each loader (None stays None), closed when the block is left, however it is left.

    A stop on a signal or an error must not leave the workers to the interpreter's exit: multiprocessing
    would end them with SIGTERM and the DataLoader's SIGCHLD handler would report them killed; closing the
    generator lets the DataLoader shut them down itself.
    """
    iters = [infinite(loader, start_step) if loader is not None else None for loader in loaders]
    try:
        yield iters
    finally:
        for it in iters:
            if it is not None:
                it.close()
