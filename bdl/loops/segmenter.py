"""Training M: source-only (M0), adversarial (Eq. 1), self-supervised (Eq. 3) and the target oracle.

One iteration = one batch of labelled "source" (the raw source for M0, the translated set S'=F(S)
afterwards, the target's own labels for the oracle), plus, when adapting, one batch of target images
for the output-space adversarial term and, in SSL mode, their pseudo-labels.
"""

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from bdl.data.datasets import infinite
from bdl.data.labels import NUM_CLASSES
from bdl.losses import bce_adv, seg_ce
from bdl.models.discriminator import OutputDiscriminator
from bdl.runtime import ComputeFormat
from bdl.training import Resumable, TorchRNG, TrainingRun, Watch, check_finite, poly_lr, set_lr

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

    @classmethod
    def from_args(cls, args, **given):
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)} | given)


def train_segmenter(model, source_loader, target_loader, s: SegmenterSettings, compute: ComputeFormat, device,
                    resumable: Resumable, stage="train_segmenter", watch: Watch | None = None):
    """Run ``s.iterations`` steps; returns (model, LossLog). ``target_loader`` is None for M0/oracle.

    In SSL mode ``target_loader`` yields pseudo-labels as 'label' (255 = ignored).
    """
    compute.model(model).train()
    adapt = target_loader is not None and s.lambda_adv > 0
    opt = torch.optim.SGD(model.param_groups(s.lr), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    state = {"model": model, "optimizer": opt}
    disc = opt_d = None
    if adapt:
        disc = compute.model(OutputDiscriminator(NUM_CLASSES, s.ndf)).train()
        opt_d = torch.optim.Adam(disc.parameters(), lr=s.lr_d, betas=(0.9, 0.99))
        state |= {"D": disc, "optimizer_D": opt_d}
    run = TrainingRun(stage, s.iterations, s.log_every, resumable, state | {"rng": TorchRNG()}, watch)
    start = run.start()

    src_iter = infinite(source_loader, start_step=start)
    tgt_iter = infinite(target_loader, start_step=start) if target_loader is not None else None
    for step in run.steps():
        lr = poly_lr(s.lr, step, s.iterations, s.power)
        set_lr(opt, lr)
        opt.zero_grad(set_to_none=True)
        batch = next(src_iter)
        images, labels = compute.images(to_unit(batch["image"], device)), batch["label"].to(device, non_blocking=True)
        tbatch = next(tgt_iter) if tgt_iter is not None else None
        with compute.autocast():
            pred_s = model(images)
            losses = {"seg": seg_ce(pred_s, labels)}
            total = losses["seg"]
            if tbatch is not None:
                pred_t = model(compute.images(to_unit(tbatch["image"], device)))
                if "label" in tbatch:
                    losses["seg_target"] = seg_ce(pred_t, tbatch["label"].to(device, non_blocking=True))
                    total = total + losses["seg_target"]
                if adapt:
                    for p in disc.parameters():
                        p.requires_grad_(False)
                    # M is rewarded when D takes its target output for source output
                    losses["adv"] = bce_adv(disc(F.softmax(pred_t, 1)), SOURCE)
                    total = total + s.lambda_adv * losses["adv"]
        check_finite(stage, step, losses)
        total.backward()
        opt.step()
        if adapt:
            for p in disc.parameters():
                p.requires_grad_(True)
            set_lr(opt_d, poly_lr(s.lr_d, step, s.iterations, s.power))
            opt_d.zero_grad(set_to_none=True)
            with compute.autocast():
                d_loss = 0.5 * (bce_adv(disc(F.softmax(pred_s.detach(), 1)), SOURCE)
                                + bce_adv(disc(F.softmax(pred_t.detach(), 1)), TARGET))
            d_loss.backward()
            opt_d.step()
            losses["D"] = d_loss
            check_finite(stage, step, {"D": d_loss})
        run.end_step(step, lr, losses)
    for it in (src_iter, tgt_iter):
        if it is not None:
            it.close()
    return model, run.log
