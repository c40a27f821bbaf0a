"""Training M: source-only (M0), adversarial (Eq. 1), self-supervised (Eq. 3) and the target oracle.

One iteration = one batch of labelled "source" (the raw source for M0, the translated set S'=F(S)
afterwards, the target's own labels for the oracle), plus, when adapting, one batch of target images
for the output-space adversarial term and, in SSL mode, their pseudo-labels.
"""

import torch
import torch.nn.functional as F

from bdl.data.datasets import infinite
from bdl.data.labels import NUM_CLASSES
from bdl.losses import bce_adv, seg_ce
from bdl.models.discriminator import OutputDiscriminator
from bdl.runtime import ComputeFormat
from bdl.training import LossLog, Resumable, check_finite, log_step, poly_lr, progress, set_lr

SOURCE, TARGET = 0.0, 1.0  # domain labels of D, as in the reference code


def to_unit(images: torch.Tensor, device) -> torch.Tensor:
    return images.to(device, non_blocking=True).float().div_(255)


def train_segmenter(model, source_loader, target_loader, cfg, device, resumable: Resumable, stage="train_segmenter"):
    """Run ``cfg.iterations`` steps; returns (model, LossLog). ``target_loader`` is None for M0/oracle.

    In SSL mode ``target_loader`` yields pseudo-labels as 'label' (255 = ignored).
    """
    compute = ComputeFormat.of(cfg, device)
    compute.model(model).train()
    adapt = target_loader is not None and cfg.lambda_adv > 0
    opt = torch.optim.SGD(model.param_groups(cfg.lr), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    disc = opt_d = None
    if adapt:
        disc = compute.model(OutputDiscriminator(NUM_CLASSES, cfg.ndf)).train()
        opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=(0.9, 0.99))
    log, start = LossLog(), 0
    state = resumable.load()
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if adapt:
            disc.load_state_dict(state["D"])
            opt_d.load_state_dict(state["optimizer_D"])
        log, start = LossLog(state["log"]), int(state["step"])
        torch.set_rng_state(state["rng"])

    src_iter = infinite(source_loader, start_step=start)
    tgt_iter = infinite(target_loader, start_step=start) if target_loader is not None else None
    bar = progress(range(start, cfg.iterations), total=cfg.iterations, desc=stage)
    bar.update(start)
    for step in range(start, cfg.iterations):
        lr = poly_lr(cfg.lr, step, cfg.iterations, cfg.power)
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
                    total = total + cfg.lambda_adv * losses["adv"]
        check_finite(stage, step, losses)
        total.backward()
        opt.step()
        if adapt:
            for p in disc.parameters():
                p.requires_grad_(True)
            set_lr(opt_d, poly_lr(cfg.lr_d, step, cfg.iterations, cfg.power))
            opt_d.zero_grad(set_to_none=True)
            with compute.autocast():
                d_loss = 0.5 * (bce_adv(disc(F.softmax(pred_s.detach(), 1)), SOURCE)
                                + bce_adv(disc(F.softmax(pred_t.detach(), 1)), TARGET))
            d_loss.backward()
            opt_d.step()
            losses["D"] = d_loss
            check_finite(stage, step, {"D": d_loss})
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.iterations:
            log_step(log, bar, stage, step + 1, cfg.iterations, lr, losses)
        bar.update(1)
        if resumable.due(step + 1) and step + 1 < cfg.iterations:
            state = {"kind": "partial", "model": model.state_dict(), "optimizer": opt.state_dict(),
                     "step": step + 1, "log": log.rows, "rng": torch.get_rng_state()}
            if adapt:
                state |= {"D": disc.state_dict(), "optimizer_D": opt_d.state_dict()}
            resumable.save(state)
    bar.close()
    for it in (src_iter, tgt_iter):
        if it is not None:
            it.close()
    return model, log
