"""Pseudo-labels for the self-supervised step: keep confident target pixels, ignore (255) the rest.

Two threshold modes. ``fixed``: one probability for every class (0.9 in the paper). ``classwise``: the
median of the max probability over the pixels predicted as that class, capped at the fixed value (the
reference code), so rare, hard classes keep some pixels instead of vanishing from the target loss.

The reference collects every probability of the target set in RAM to take the medians (~23 GiB for
Cityscapes train). Probabilities are stored as float16, and a non-negative float16's bit pattern sorts
like its value; so a per-class histogram over bit patterns, filled in the one prediction pass, gives the
exact ``np.median`` of the stored values in a fixed amount of memory. A max softmax probability over C
classes is at least 1/C, so with C <= 32 only the 5,121 patterns of [1/32, 1] can occur (~0.75 MiB for 19
classes, small enough to stay in cache beside the model; the full [0, 1] range would take 2.2 MiB).
"""

from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from bdl.artifacts import check_set
from bdl.data.datasets import H5SegmentationDataset
from bdl.data.labels import IGNORE
from bdl.errors import BDLError
from bdl.models.common import strided_logits

# bit patterns of float16 1/32 .. 1.0 (0x2800 is 1/32, 0x3C00 is 1.0)
FLOOR, TOP = 0x2800, 0x3C00
PATTERNS = TOP - FLOOR + 1


def apply_thresholds(pred: np.ndarray, prob: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Label = prediction where max probability >= its class threshold, else 255."""
    if prob.dtype == np.float16 and thresholds.dtype == np.float16:
        # numpy has no float16 arithmetic and converts every pixel to compare; non-negative float16s compare as
        # their bit patterns do (the module's note), and np.take gathers a uint8-indexed table twice as fast as
        # fancy indexing: a classwise pass's second sweep over its scratch file is this function alone
        keep = prob.view(np.uint16) >= np.take(thresholds.view(np.uint16), pred)
    else:
        keep = prob >= np.take(thresholds, pred)
    return np.where(keep, pred, np.uint8(IGNORE)).astype(np.uint8, copy=False)


class ClasswiseMedian:
    """Exact per-class medians of float16 max probabilities, accumulated one batch at a time."""

    def __init__(self, num_classes: int, cap: float):
        if num_classes > 32:
            raise ValueError("the histogram starts at 1/32, below which a max probability of <= 32 classes "
                             f"cannot fall; {num_classes} classes need a lower floor")
        self.n, self.cap = num_classes, cap
        self.hist = np.zeros((num_classes, PATTERNS), dtype=np.int64)

    def add(self, pred, prob) -> None:
        """Count a batch: ``pred`` class ids and ``prob`` float16 probabilities (numpy arrays or CPU tensors)."""
        prob, pred = torch.as_tensor(prob).reshape(-1), torch.as_tensor(pred).reshape(-1)
        if prob.dtype != torch.float16:
            raise TypeError(f"probabilities must be float16 (the stored precision), got {prob.dtype}")
        bits = prob.view(torch.int16)  # the patterns of [0, 1] are below 0x8000: int16 holds them as they are
        lo, hi = torch.aminmax(bits) if len(bits) else (FLOOR, TOP)
        if lo < FLOOR or hi > TOP:  # a NaN's pattern is above 1.0's: one pass finds both
            if bool(torch.isnan(prob).any()):
                raise BDLError("the segmenter gives NaN probabilities: its weights diverged (see its losses.tsv and "
                               "training log; a lower learning rate or a trunk with real weights)")
            raise ValueError(f"max probabilities must lie in [1/32, 1] (float16 patterns {FLOOR:#x}-{TOP:#x}); "
                             f"got patterns {int(lo):#x}-{int(hi):#x}")
        # class * PATTERNS + pattern in two passes over int32 (torch's bincount: a third of the time of numpy's,
        # which works on int64 copies); the FLOOR empty bins in front of class 0 are dropped after counting
        idx = torch.add(bits.to(torch.int32), pred, alpha=PATTERNS)
        counts = torch.bincount(idx, minlength=self.n * PATTERNS + FLOOR)
        if len(counts) > self.n * PATTERNS + FLOOR:
            raise ValueError(f"class ids must be below {self.n}; got {int(pred.max())}")
        self.hist += counts[FLOOR:].numpy().reshape(self.n, PATTERNS)

    def predicted(self) -> np.ndarray:
        """Pixels predicted as each class."""
        return self.hist.sum(axis=1)

    def kept(self, thresholds: np.ndarray) -> np.ndarray:
        """Pixels of each class that ``apply_thresholds`` keeps: probability >= the float16 threshold, which
        for non-negative float16 values is bit pattern >= the threshold's bit pattern."""
        bits = np.asarray(thresholds, dtype=np.float16).view(np.uint16).astype(np.int64) - FLOOR
        cum = np.cumsum(self.hist[:, ::-1], axis=1)[:, ::-1]  # cum[c, b]: pixels of c with pattern >= FLOOR + b
        return np.array([cum[c, max(b, 0)] if b < PATTERNS else 0 for c, b in enumerate(bits)], dtype=np.int64)

    def thresholds(self, protocol: str = "bdl") -> np.ndarray:
        """Per-class thresholds capped at ``cap``. bdl: the median (an even count: the mean of the middle two),
        the cap for a class never predicted. reference (SSL.py): the element at index round(n / 2), numpy's
        half-to-even rounding, of the class's sorted values; 0 for a class never predicted. Either is an exact
        order statistic of the stored float16 values, so within half a float16 step (2.4e-4 below 1) of the
        same statistic of the float32 probabilities they were rounded from."""
        out = np.full(self.n, self.cap if protocol == "bdl" else 0.0, dtype=np.float64)
        cum = np.cumsum(self.hist, axis=1)
        for c in range(self.n):
            total = int(cum[c, -1])
            if total == 0:  # never predicted: no pixel of it to keep anyway
                continue
            if protocol == "bdl":
                ranks = np.array([(total - 1) // 2, total // 2])
            else:
                ranks = np.array([int(np.round(total * 0.5))])  # n * 0.5 is exact in float64 up to 2**53
            bits = (np.searchsorted(cum[c], ranks, side="right") + FLOOR).astype(np.uint16)
            out[c] = float(bits.view(np.float16).astype(np.float64).mean())
        return np.minimum(out, self.cap)


class ProbabilityMean(torch.nn.Module):
    """Several segmenters as one: the log of the mean of their softmax probabilities, so a softmax of the output
    gives that mean (a single model passes through unchanged)."""

    def __init__(self, models):
        super().__init__()
        self.models = torch.nn.ModuleList(models)

    def forward(self, x):
        return self._mean(x, lambda m: m(x))

    def strided(self, x):
        """The same at the models' output stride (``strided_logits``; every model of a loop has one architecture)."""
        return self._mean(x, lambda m: strided_logits(m, x))

    def _mean(self, x, logits_of):
        if len(self.models) == 1:
            return logits_of(self.models[0])
        probs = torch.stack([torch.softmax(logits_of(m).float(), 1) for m in self.models]).mean(0)
        return probs.clamp_min_(1e-12).log_()


def class_thresholds(mode: str, threshold: float, stats: ClasswiseMedian, protocol: str = "bdl") -> np.ndarray:
    """Per-class thresholds: ``fixed`` is ``threshold`` for every class, ``classwise`` the class medians
    of ``stats`` capped at it (``protocol``'s median, ``ClasswiseMedian.thresholds``)."""
    if mode == "classwise":
        return stats.thresholds(protocol)
    if mode == "fixed":
        return np.full(stats.n, threshold, dtype=np.float64)
    raise ValueError(f"pseudo-label mode '{mode}' is not fixed or classwise")


class PseudoLabelSet(H5SegmentationDataset):
    """A pseudo-label set (``bdl.loops.inference.pseudo_label_set``): each frame's label, 255 where ignored, made
    with the file's ``thresholds``; images come from ``images_from``."""

    def __init__(self, path: Path, images_from: Dataset, crop=None, flip=False, seed=0):
        check_set(path, "pseudo")
        super().__init__(path, None, "label", crop, flip, seed, images_from)
        with h5py.File(self.path, "r") as f:
            self.thresholds = np.asarray(f.attrs["thresholds"], dtype=np.float64)
