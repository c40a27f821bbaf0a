import math

import numpy as np
import pytest
import torch

from bdl.metrics import ConfusionMatrix, summarize


def test_hand_computed_ious():
    # gt:   0 0 1 1 255      pred: 0 1 1 1 0
    gt = torch.tensor([0, 0, 1, 1, 255])
    pred = torch.tensor([0, 1, 1, 1, 0])
    cm = ConfusionMatrix(19)
    cm.update(gt, pred)
    iou = cm.iou()
    # class 0: inter 1, union (gt 2 + pred 1 - 1) = 2 -> 0.5; class 1: inter 2, union 2 + 3 - 2 = 3
    assert iou[0] == pytest.approx(0.5)
    assert iou[1] == pytest.approx(2 / 3)
    assert all(math.isnan(v) for v in iou[2:])
    s = cm.summary()
    assert s["miou"] == pytest.approx(100 * (0.5 + 2 / 3) / 2)
    assert s["pixel_accuracy"] == pytest.approx(75.0)  # the 255 pixel is not counted
    assert s["pixels"] == 4


def test_subsets_drop_classes():
    iou = np.full(19, np.nan)
    iou[0], iou[9], iou[3] = 1.0, 0.0, 0.5  # terrain (9) leaves the 16-class mean; wall (3) the 13-class
    s = summarize(iou)
    assert s["miou"] == pytest.approx(100 * 1.5 / 3)
    assert s["miou16"] == pytest.approx(100 * 1.5 / 2)
    assert s["miou13"] == pytest.approx(100.0)
    assert s["per_class"]["terrain"] == 0.0 and s["per_class"]["car"] is None


def test_accumulates_batches():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([[0, 1]]), torch.tensor([[0, 1]]))
    cm.update(torch.tensor([2]), torch.tensor([0]))
    assert cm.mat.tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 0]]
