"""Training M: source-only (M0), adversarial (Eq. 1), self-supervised (Eq. 3) and the target oracle.

One iteration = one batch of labelled "source" (the raw source for M0, the translated set S'=F(S)
afterwards, the target's own labels for the oracle), plus, when adapting, one batch of target images
for the output-space adversarial term and, in SSL mode, their pseudo-labels.
"""

import sys
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from bdl.data.datasets import cycling
from bdl.data.labels import NUM_CLASSES
from bdl.defaults import default
from bdl.distributed import World
from bdl.losses import bce_adv, seg_ce
from bdl.models.discriminator import OutputDiscriminator
from bdl.runtime import ComputeFormat
from bdl.training import Resumable, TorchRNG, TrainingRun, Watch, check_finite, poly_lr, set_lr, step_lr

SOURCE, TARGET = 0.0, 1.0  # domain labels of D, as in the reference code


def to_unit(images: torch.Tensor, device) -> torch.Tensor:
    return images.to(device, non_blocking=True).float().div_(255)


@dataclass(frozen=True)
class SegmenterSettings:
    """What the segmenter loop needs of a stage's settings (the stage builds it; the loop reads nothing else)."""

    iterations: int
    lr: float
    momentum: float
    weight_decay: float
    power: float
    lambda_adv: float  # 0 trains without D (M0, the oracle)
    lr_d: float
    ndf: int
    log_every: int
    # defaulted: the settings recorded in checkpoints made before these existed still build
    optimizer: str = default("segmenter.optimizer")
    betas: tuple = tuple(default("segmenter.betas"))
    lr_schedule: str = default("segmenter.lr_schedule")
    lr_horizon: int | None = default("segmenter.lr_horizon")
    lr_step: int = default("segmenter.lr_step")
    lr_gamma: float = default("segmenter.lr_gamma")

    @classmethod
    def from_args(cls, args, **given):
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)} | given)

    def lr_at(self, base: float, step: int) -> float:
        """The rate of M (``base`` = lr) or of D (``base`` = lr_d) at ``step``: both follow one schedule, as in
        the reference."""
        if self.lr_schedule == "step":
            return step_lr(base, step, self.lr_step, self.lr_gamma)
        return poly_lr(base, step, self.lr_horizon or self.iterations, self.power)

    def optimizer_of(self, model) -> torch.optim.Optimizer:
        groups = model.param_groups(self.lr)
        if self.optimizer == "adam":
            return torch.optim.Adam(groups, lr=self.lr, betas=tuple(self.betas), weight_decay=self.weight_decay)
        return torch.optim.SGD(groups, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)


def segmenter_backward(model, disc, batch, tbatch, lambda_adv: float, compute: ComputeFormat, device,
                       stage: str = "train_segmenter", step: int = 0, world: World | None = None):
    """The gradient of M's loss for one step: cross-entropy on the (translated) source batch, and given a target
    batch, its pseudo-label cross-entropy (if it has labels) and, given D, the adversarial term.
    Returns (losses, source logits, target logits or None), logits detached.

    The source loss is backpropagated before the target forward, so the two graphs are never held at once
    (the reference code does the same to fit a 12 GB card); the summed gradient is the same as one backward
    of the summed loss. D's parameters are left without gradient (requires_grad off) for the caller to turn on.
    With several processes (``world``) the batches are this rank's slices and the cross-entropies are scaled for
    the gradient average to be the global batch's (``seg_ce``).
    """
    images = compute.images(to_unit(batch["image"], device))
    labels = batch["label"].to(device, non_blocking=True)
    with compute.autocast():
        pred_s = model(images)
        losses = {"seg": seg_ce(pred_s, labels, world)}
    check_finite(stage, step, losses)
    losses["seg"].backward()
    if tbatch is None:
        return losses, pred_s.detach(), None
    with compute.autocast():
        pred_t = model(compute.images(to_unit(tbatch["image"], device)))
        total = pred_t.new_zeros((), dtype=torch.float32)
        if "label" in tbatch:
            losses["seg_target"] = seg_ce(pred_t, tbatch["label"].to(device, non_blocking=True), world)
            total = total + losses["seg_target"]
        if disc is not None:
            for p in disc.parameters():
                p.requires_grad_(False)
            # M is rewarded when D takes its target output for source output
            losses["adv"] = bce_adv(disc(F.softmax(pred_t, 1)), SOURCE)
            total = total + lambda_adv * losses["adv"]
    check_finite(stage, step, losses)
    if total.requires_grad:
        total.backward()
    return losses, pred_s.detach(), pred_t.detach()


def train_segmenter(model, source_loader, target_loader, s: SegmenterSettings, compute: ComputeFormat, device,
                    resumable: Resumable, stage="train_segmenter", watch: Watch | None = None,
                    world: World | None = None):
    """Run ``s.iterations`` steps; returns (model, LossLog). ``target_loader`` is None for M0/oracle.

    In SSL mode ``target_loader`` yields pseudo-labels as 'label' (255 = ignored). With several processes
    (``world``; the loaders yield this rank's slice of each global batch) M trains under DistributedDataParallel
    and D's gradients are averaged after its backward (``bdl.distributed``).
    """
    world = world or World()
    compute.model(model).train()
    net = distributed_segmenter(model, device, world)
    adapt = target_loader is not None and s.lambda_adv > 0
    opt = s.optimizer_of(model)
    state = {"model": model, "optimizer": opt}
    disc = opt_d = None
    if adapt:
        disc = compute.model(OutputDiscriminator(NUM_CLASSES, s.ndf)).train()
        opt_d = torch.optim.Adam(disc.parameters(), lr=s.lr_d, betas=(0.9, 0.99))
        state |= {"D": disc, "optimizer_D": opt_d}
    run = TrainingRun(stage, s.iterations, s.log_every, resumable, state | {"rng": TorchRNG()}, watch)
    start = run.start()

    with cycling(source_loader, target_loader, start_step=start) as (src_iter, tgt_iter):
        for step in run.steps():
            lr = s.lr_at(s.lr, step)
            set_lr(opt, lr)
            opt.zero_grad(set_to_none=True)
            batch, tbatch = next(src_iter), (next(tgt_iter) if tgt_iter is not None else None)
            losses, pred_s, pred_t = segmenter_backward(net, disc if adapt else None, batch, tbatch, s.lambda_adv,
                                                        compute, device, stage, step, world)
            opt.step()
            if adapt:
                for p in disc.parameters():
                    p.requires_grad_(True)
                set_lr(opt_d, s.lr_at(s.lr_d, step))
                opt_d.zero_grad(set_to_none=True)
                with compute.autocast():
                    d_loss = 0.5 * (bce_adv(disc(F.softmax(pred_s, 1)), SOURCE)
                                    + bce_adv(disc(F.softmax(pred_t, 1)), TARGET))
                d_loss.backward()
                world.average_gradients(disc.parameters())  # D runs twice before its backward: no DDP reducer
                opt_d.step()
                losses["D"] = d_loss
                check_finite(stage, step, {"D": d_loss})
            run.end_step(step, lr, world.mean_losses(losses))
    return model, run.log


def distributed_segmenter(model, device, world: World):
    """M as the training step calls it: itself, or with several processes under DistributedDataParallel, its
    trained BatchNorm layers synchronised (SyncBatchNorm: the statistics of the global batch) on CUDA. torch's
    SyncBatchNorm runs on GPUs only; on the CPU (gloo) each process normalises its own slice and rank 0's running
    statistics are kept (DDP broadcasts its buffers), which docs/multi_gpu.md spells out."""
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    trains_bn = not getattr(model, "freeze_bn", False) and any(
        isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if trains_bn and device.type == "cuda":
        torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif trains_bn and world.main:
        print("distributed: BatchNorm statistics per process (SyncBatchNorm needs CUDA): each normalises its own "
              "slice of the batch, so this run matches the 1-process run only in distribution", file=sys.stderr)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
