"""Pseudo-labels for the self-supervised step: keep confident target pixels, ignore (255) the rest.

Two threshold modes. ``fixed``: one probability for every class (0.9 in the paper). ``classwise``: the
median of the max probability over the pixels predicted as that class, capped at the fixed value (the
reference code), so rare, hard classes keep some pixels instead of vanishing from the target loss.

The reference collects every probability of the target set in RAM to take the medians (~23 GiB for
Cityscapes train). Here the medians come from two passes over stored probabilities: a histogram per
class finds the bin holding the median rank, then only the values in that bin are gathered and sorted.
The result equals ``np.median`` of the stored values, in memory that does not grow with the set.
"""

import numpy as np

from bdl.data.labels import IGNORE, NUM_CLASSES

BINS = 4096


def _bins(prob: np.ndarray) -> np.ndarray:
    return np.minimum((prob.astype(np.float64) * BINS).astype(np.int64), BINS - 1)


def apply_thresholds(pred: np.ndarray, prob: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Label = prediction where max probability >= its class threshold, else 255."""
    keep = prob >= thresholds[pred.astype(np.int64)]
    return np.where(keep, pred, IGNORE).astype(np.uint8)


class ClasswiseMedian:
    """Exact per-class medians of max probabilities in two streaming passes (``add``, then ``refine``)."""

    def __init__(self, num_classes: int = NUM_CLASSES, cap: float = 0.9):
        self.n, self.cap = num_classes, cap
        self.hist = np.zeros((num_classes, BINS), dtype=np.int64)
        self._targets = None
        self._values: list[list[np.ndarray]] = [[] for _ in range(num_classes)]

    def add(self, pred: np.ndarray, prob: np.ndarray) -> None:
        idx = pred.astype(np.int64).ravel() * BINS + _bins(prob.ravel())
        self.hist += np.bincount(idx, minlength=self.n * BINS).reshape(self.n, BINS)

    def _plan(self):
        """For each class: the bins holding the two middle ranks, and those ranks' offsets."""
        plan = []
        cum = np.cumsum(self.hist, axis=1)
        for c in range(self.n):
            total = int(cum[c, -1])
            if total == 0:
                plan.append(None)
                continue
            ranks = ((total - 1) // 2, total // 2)
            bins = [int(np.searchsorted(cum[c], r, side="right")) for r in ranks]
            if bins[0] / BINS >= self.cap:  # the median is at or above the cap: no need to know it exactly
                plan.append(None)
                continue
            before = [int(cum[c, b] - self.hist[c, b]) for b in bins]
            plan.append((bins, [r - s for r, s in zip(ranks, before)]))
        return plan

    def refine(self, pred: np.ndarray, prob: np.ndarray) -> None:
        if self._targets is None:
            self._targets = self._plan()
        pred, prob = pred.ravel(), prob.ravel()
        b = _bins(prob)
        for c, target in enumerate(self._targets):
            if target is None:
                continue
            lo, hi = target[0]
            sel = (pred == c) & (b >= lo) & (b <= hi)
            if sel.any():
                self._values[c].append(prob[sel].astype(np.float64))

    def needs_refine(self) -> bool:
        if self._targets is None:
            self._targets = self._plan()
        return any(t is not None for t in self._targets)

    def thresholds(self) -> np.ndarray:
        if self._targets is None:
            self._targets = self._plan()
        out = np.full(self.n, self.cap, dtype=np.float64)
        for c, target in enumerate(self._targets):
            if target is None:
                continue
            (lo, _hi), offsets = target
            vals = np.sort(np.concatenate(self._values[c]))
            # sorted, bin lo's values come first, so a rank in a later bin shifts by bin lo's count
            picked = [vals[off + (int(self.hist[c, lo]) if b != lo else 0)] for b, off in zip(target[0], offsets)]
            out[c] = min(float(np.mean(picked)), self.cap)
        return out
