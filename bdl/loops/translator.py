"""Training F (source -> target look) and F_inv with Eq. 2: LSGAN + cycle + identity + perceptual through M.

Names follow CycleGAN: A is the source domain, B the target; F = G_AB, F_inv = G_BA.
"""

import itertools
from dataclasses import dataclass, fields, replace

import torch

from bdl.artifacts import load_weights
from bdl.data.datasets import cycling
from bdl.distributed import World
from bdl.losses import GANLoss, cycle_l1, perceptual
from bdl.models.cyclegan import ImagePool, PatchDiscriminator, gan_to_unit, to_gan
from bdl.models.factory import build_translator
from bdl.runtime import ComputeFormat
from bdl.training import GeneratorState, Resumable, TrainingRun, Watch, check_finite


def linear_decay(step: int, total: int, decay_start: int) -> float:
    """Constant learning rate until ``decay_start``, then linearly to zero at ``total`` (CycleGAN's schedule)."""
    if step < decay_start:
        return 1.0
    return max(0.0, 1.0 - (step - decay_start) / max(total - decay_start, 1))


@dataclass(frozen=True)
class TranslatorSettings:
    """What the translator loop needs of a stage's settings (the stage builds it; the loop reads nothing else)."""

    iterations: int
    decay_start: int | None  # None: half way to the horizon
    lr: float
    beta1: float
    gan_mode: str
    pool_size: int
    lambda_gan: float
    lambda_cycle: float
    lambda_idt: float  # a fraction of lambda_cycle, as in CycleGAN
    lambda_per: float
    lambda_per_recon: float
    ndf: int
    seed: int  # the image pools' draws
    log_every: int
    lr_horizon: int | None = None  # where the decay reaches zero; None: iterations (absent from older records)

    @classmethod
    def from_args(cls, args, **given):
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)} | given)

    def lr_scale(self, step: int) -> float:
        """The factor on ``lr`` at ``step``, for F, F_inv and both PatchGANs."""
        horizon = self.lr_horizon or self.iterations
        start = horizon // 2 if self.decay_start is None else self.decay_start
        return linear_decay(step, horizon, start)


def train_translator(arch, source_loader, target_loader, segmenter, cfg: TranslatorSettings, compute: ComputeFormat,
                     device, resumable: Resumable, stage="train_translator", watch: Watch | None = None,
                     samples=None, world: World | None = None, init: dict | None = None, init_path=None,
                     segmenter_b=None):
    """Run ``cfg.iterations`` steps; returns (F, F_inv, LossLog). With ``samples`` (a PNG path) a grid of a few
    fixed frames, real A | fake B | rec A | real B | fake A, is redrawn at every checkpoint. With ``init`` (a
    translator checkpoint's entries) F and F_inv start from its weights. With ``segmenter_b`` the perceptual loss
    reads target-look images (real B, fake B, rec B) through it and source-look ones through ``segmenter``: the
    same M with each domain's BatchNorm statistics (``bdl.models.bn_stats``).

    With several processes (``world``; the loaders yield this rank's slice of each global batch) the gradients of
    the generators and of the PatchGANs are averaged after each backward (each generator runs several forwards
    per backward, which DistributedDataParallel's reducer does not take), and the image pools draw from the
    gathered global batch of fakes, identically on every rank (same generator, same state), each rank's D then
    seeing its slice of the draw: the pools hold what the 1-process run's hold.
    """
    world = world or World()
    F_ab, F_ba = build_translator(arch)
    if init is not None:  # a resumed run's checkpoint overrides these below
        load_weights(F_ab, init["model"], init_path, "translator F")
        load_weights(F_ba, init["model_inv"], init_path, "translator F_inv")
    F_ab, F_ba = (compute.model(g).train() for g in (F_ab, F_ba))
    D_a = compute.model(PatchDiscriminator(cfg.ndf)).train()
    D_b = compute.model(PatchDiscriminator(cfg.ndf)).train()
    opt_g = torch.optim.Adam(itertools.chain(F_ab.parameters(), F_ba.parameters()), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(itertools.chain(D_a.parameters(), D_b.parameters()), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    gen = torch.Generator().manual_seed(cfg.seed)
    pool_a, pool_b = ImagePool(cfg.pool_size, gen, device), ImagePool(cfg.pool_size, gen, device)
    gan = GANLoss(cfg.gan_mode)
    use_per = segmenter is not None and (cfg.lambda_per > 0 or cfg.lambda_per_recon > 0)
    seg_A, seg_B = segmenter, segmenter if segmenter_b is None else segmenter_b
    if use_per:  # M is a fixed judge of semantics here: eval mode, no gradient into its weights
        for judge in {id(seg_A): seg_A, id(seg_B): seg_B}.values():
            compute.model(judge).eval()
            for p in judge.parameters():
                p.requires_grad_(False)
    run = TrainingRun(stage, cfg.iterations, cfg.log_every, resumable, {
        "model": F_ab, "model_inv": F_ba, "D_A": D_a, "D_B": D_b, "optimizer": opt_g, "optimizer_D": opt_d,
        "pool_A": pool_a, "pool_B": pool_b, "pool_rng": GeneratorState(gen)},
        replace(watch or Watch(), snapshot=SampleGrid(samples, source_loader.dataset, target_loader.dataset,
                                                      F_ab, F_ba, compute, device) if samples else None))
    start = run.start()

    with cycling(source_loader, target_loader, start_step=start) as (a_iter, b_iter):
        for step in run.steps():
            scale = cfg.lr_scale(step)
            for opt in (opt_g, opt_d):
                for group in opt.param_groups:
                    group["lr"] = cfg.lr * scale
            real_A = compute.images(to_gan(next(a_iter)["image"], device))
            real_B = compute.images(to_gan(next(b_iter)["image"], device))

            for p in itertools.chain(D_a.parameters(), D_b.parameters()):
                p.requires_grad_(False)
            opt_g.zero_grad(set_to_none=True)
            with compute.autocast():
                fake_B, fake_A = F_ab(real_A), F_ba(real_B)
                rec_A, rec_B = F_ba(fake_B), F_ab(fake_A)
                losses = {
                    "gan": gan(D_b(fake_B), True) + gan(D_a(fake_A), True),
                    "cycle": cycle_l1(rec_A, real_A) + cycle_l1(rec_B, real_B),
                }
                total = cfg.lambda_gan * losses["gan"] + cfg.lambda_cycle * losses["cycle"]
                if cfg.lambda_idt > 0:
                    losses["idt"] = cycle_l1(F_ab(real_B), real_B) + cycle_l1(F_ba(real_A), real_A)
                    total = total + cfg.lambda_idt * cfg.lambda_cycle * losses["idt"]
                if use_per:
                    unit_A, unit_B = gan_to_unit(real_A), gan_to_unit(real_B)
                    with torch.no_grad():
                        logits_A, logits_B = seg_A(unit_A), seg_B(unit_B)
                    losses["per"] = (perceptual(seg_A, unit_A, gan_to_unit(fake_B), logits_A, seg_B)
                                     + perceptual(seg_B, unit_B, gan_to_unit(fake_A), logits_B, seg_A))
                    losses["per_recon"] = (perceptual(seg_A, unit_A, gan_to_unit(rec_A), logits_A)
                                           + perceptual(seg_B, unit_B, gan_to_unit(rec_B), logits_B))
                    total = total + cfg.lambda_per * losses["per"] + cfg.lambda_per_recon * losses["per_recon"]
            check_finite(stage, step, losses)
            total.backward()
            world.average_gradients(itertools.chain(F_ab.parameters(), F_ba.parameters()))
            opt_g.step()

            for p in itertools.chain(D_a.parameters(), D_b.parameters()):
                p.requires_grad_(True)
            opt_d.zero_grad(set_to_none=True)
            # the pool keeps float32
            old_B = world.local_slice(pool_b.query(world.gather_batch(fake_B.detach().float())))
            old_A = world.local_slice(pool_a.query(world.gather_batch(fake_A.detach().float())))
            with compute.autocast():
                d_loss = 0.5 * (gan(D_b(real_B), True) + gan(D_b(old_B), False)) \
                    + 0.5 * (gan(D_a(real_A), True) + gan(D_a(old_A), False))
            d_loss.backward()
            world.average_gradients(itertools.chain(D_a.parameters(), D_b.parameters()))
            opt_d.step()
            losses["D"] = d_loss
            check_finite(stage, step, {"D": d_loss})

            run.end_step(step, cfg.lr * scale, world.mean_losses(losses))
    return F_ab, F_ba, run.log


class SampleGrid:
    """The translator's progress as a picture: a few frames of each domain, fixed for the whole run (evenly
    spaced, read once now, so the DataLoader workers never share this process's open files), through F and
    F_inv at each call. Rows: real A | fake B | rec A | real B | fake A."""

    def __init__(self, path, source_set, target_set, F_ab, F_ba, compute: ComputeFormat, device, count: int = 3):
        self.path, self.F_ab, self.F_ba, self.compute, self.device = path, F_ab, F_ba, compute, device
        self.frames = [[ds[int(i)]["image"] for i in torch.linspace(0, len(ds) - 1, min(count, len(ds))).round()]
                       for ds in (source_set, target_set)]
        for ds in (source_set, target_set):
            close = getattr(ds, "close", None)
            if close is not None:
                close()

    @torch.no_grad()
    def __call__(self, step: int) -> None:
        from bdl.viz import save_grid

        def pictures(x):
            return [t for t in gan_to_unit(x.float()).mul(255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu()
                    .numpy()]

        rows = []
        for a, b in zip(*self.frames):
            real_A = self.compute.images(to_gan(a[None], self.device))
            real_B = self.compute.images(to_gan(b[None], self.device))
            with self.compute.autocast():
                fake_B = self.F_ab(real_A)
                rec_A, fake_A = self.F_ba(fake_B), self.F_ba(real_B)
            rows.append([p for x in (real_A, fake_B, rec_A, real_B, fake_A) for p in pictures(x)])
        save_grid(rows, self.path)
