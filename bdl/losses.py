"""The loss terms of BDL's three objectives (Eq. 1-3 of the paper)."""

import torch
import torch.nn.functional as F

from bdl.data.labels import IGNORE


def seg_ce(logits: torch.Tensor, target: torch.Tensor, world=None) -> torch.Tensor:
    """Pixel cross-entropy; 255 is ignored. A batch with no labelled pixel contributes zero, not NaN.

    With several processes (``world``, each holding a slice of the global batch) the mean is over the global
    batch's labelled pixels: each rank's sum over its pixels divided by the all-reduced count, times the world
    size, because DistributedDataParallel averages the ranks' gradients. A mean per rank would weigh the pixels of
    a rank with few labelled ones more (pseudo-labels ignore most of some frames)."""
    if world is not None and world.distributed:
        valid = world.sum_((target != IGNORE).sum().reshape(1).to(torch.float64))
        if float(valid) == 0:
            return logits.sum() * 0.0
        total = F.cross_entropy(logits.float(), target, ignore_index=IGNORE, reduction="sum")
        return total * (world.size / float(valid))
    if not bool((target != IGNORE).any()):
        return logits.sum() * 0.0
    # float32 whatever the autocast dtype: bf16 log-softmax over 19 classes loses the small probabilities
    return F.cross_entropy(logits.float(), target, ignore_index=IGNORE)


def bce_adv(d_logits: torch.Tensor, domain: float) -> torch.Tensor:
    """Output-space adversarial BCE; domain label 0 = source, 1 = target (as the reference code)."""
    d_logits = d_logits.float()
    return F.binary_cross_entropy_with_logits(d_logits, torch.full_like(d_logits, domain))


class GANLoss:
    """LSGAN ('lsgan': least squares to 1/0) or vanilla BCE ('vanilla') on discriminator outputs."""

    def __init__(self, mode: str = "lsgan"):
        if mode not in ("lsgan", "vanilla"):
            raise ValueError(f"unknown GAN loss '{mode}'")
        self.mode = mode

    def __call__(self, prediction: torch.Tensor, is_real: bool) -> torch.Tensor:
        prediction = prediction.float()
        target = torch.full_like(prediction, 1.0 if is_real else 0.0)
        if self.mode == "lsgan":
            return F.mse_loss(prediction, target)
        return F.binary_cross_entropy_with_logits(prediction, target)


def cycle_l1(reconstructed: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(reconstructed.float(), real.float())


def instance_norm_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-image, per-class normalisation: the perceptual loss compares layouts, not confidence scales."""
    return F.instance_norm(logits.float())


def perceptual(segmenter, real01: torch.Tensor, other01: torch.Tensor, real_logits: torch.Tensor | None = None,
               other_segmenter=None):
    """MSE between instance-normalised logits of M(real) and M(other); M is frozen, gradients reach ``other``.

    Inputs are images in [0, 1]. ``real_logits`` lets callers reuse M(real) across the two terms.
    ``other_segmenter``: M as it reads ``other``'s domain (its BatchNorm statistics), when not ``segmenter``.
    """
    if real_logits is None:
        with torch.no_grad():
            real_logits = segmenter(real01)
    judge = segmenter if other_segmenter is None else other_segmenter
    return F.mse_loss(instance_norm_logits(judge(other01)), instance_norm_logits(real_logits))
