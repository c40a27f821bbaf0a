"""Confusion-matrix mIoU over the 19 Cityscapes classes and BDL's 16/13-class SYNTHIA subsets."""

import numpy as np
import torch

from bdl.data.labels import CLASS_NAMES, IGNORE, NUM_CLASSES, SUBSET_13, SUBSET_16


class ConfusionMatrix:
    """Rows are ground truth, columns predictions; pixels labelled 255 are not counted."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        self.n = num_classes
        self.mat = torch.zeros((num_classes, num_classes), dtype=torch.int64)

    def update(self, target: torch.Tensor, pred: torch.Tensor) -> None:
        target, pred = target.flatten().long().cpu(), pred.flatten().long().cpu()
        keep = (target != IGNORE) & (target >= 0) & (target < self.n)
        idx = self.n * target[keep] + pred[keep]
        self.mat += torch.bincount(idx, minlength=self.n * self.n).reshape(self.n, self.n)

    def iou(self) -> np.ndarray:
        """Per-class IoU; NaN for a class absent from both ground truth and predictions."""
        m = self.mat.double().numpy()
        inter = np.diag(m)
        union = m.sum(0) + m.sum(1) - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, inter / np.maximum(union, 1), np.nan)

    def summary(self) -> dict:
        return summarize(self.iou(), self.mat)


def _mean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def summarize(iou: np.ndarray, mat: torch.Tensor | None = None) -> dict:
    """mIoU (19), mIoU16 and mIoU13 in percent, per-class IoU in percent, pixel accuracy."""
    out = {
        "miou": 100 * _mean(iou),
        "miou16": 100 * _mean(iou[list(SUBSET_16)]),
        "miou13": 100 * _mean(iou[list(SUBSET_13)]),
        "per_class": {name: (None if np.isnan(v) else 100 * float(v)) for name, v in zip(CLASS_NAMES, iou)},
    }
    if mat is not None:
        total = int(mat.sum())
        out["pixel_accuracy"] = 100 * float(mat.diag().sum()) / total if total else float("nan")
        out["pixels"] = total
    return out
