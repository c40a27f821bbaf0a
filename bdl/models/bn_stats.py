"""A segmenter's BatchNorm statistics re-estimated on one domain's frames.

M trains its source and target batches in separate forward passes, so each domain's batch is normalised by
its own statistics while M learns; its running statistics are one blend (M0's: the source's alone). A frozen M
that judges images of both looks (F's perceptual loss) reads each of them best with the statistics of the
domain it looks like: a copy of M per domain, its running mean and variance the averages over that domain's
frames (AdaBN, Li et al. 2016). Weights are not touched.
"""

import copy

import torch
from torch import nn

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
MAX_FRAMES = 512  # a few hundred frames fix the statistics; a pass over all of GTA5 would cost a translation


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, _BN) for m in model.modules())


@torch.no_grad()
def with_domain_statistics(model: nn.Module, dataset, device, batch_size: int = 16,
                           max_frames: int = MAX_FRAMES) -> nn.Module:
    """A copy of ``model`` (eval mode) whose BatchNorm running mean and variance are the averages of the batch
    statistics over the frames of ``dataset`` (items with an 'image', uint8 CxHxW), each batch weighted by its
    frames: all of them, or ``max_frames`` spread evenly over a larger set. In frame order and fixed
    batches, so the copy is the same on every run and every process."""
    if len(dataset) == 0:
        raise ValueError("no frames to estimate BatchNorm statistics on")
    n = len(dataset)
    picks = list(range(n)) if n <= max_frames else [i * n // max_frames for i in range(max_frames)]
    twin = copy.deepcopy(model).to(device).eval()  # only BatchNorm gathers: dropout and the like stay off
    layers = [m for m in twin.modules() if isinstance(m, _BN)]
    for m in layers:  # layer by layer: a model that keeps its BatchNorm frozen (freeze_bn) would not let train()
        m.reset_running_stats()
        m.train()
    for start in range(0, len(picks), batch_size):
        frames = [dataset[i]["image"] for i in picks[start:start + batch_size]]
        for m in layers:  # this batch's share of the frames so far: a running average weighted by frames
            m.momentum = len(frames) / (start + len(frames))
        twin(torch.stack(frames).to(device).float().div_(255))
    for m, original in zip(layers, (m for m in model.modules() if isinstance(m, _BN))):
        m.momentum = original.momentum
    return twin.eval()
