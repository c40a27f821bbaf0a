#!/usr/bin/env python
"""Train the translator F (source -> target look) and F_inv with CycleGAN losses and, given --segmenter,
BDL's perceptual loss through the frozen M (Eq. 2). Source labels are not read; target labels never.

Resumes from ``<out>.partial.pt`` when rerun after a crash; writes ``--out`` only when finished.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bdl import BDLError, cli  # noqa: E402
from bdl.defaults import default  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_dataset_args(p, "source", "source images (domain A)")
    cli.add_dataset_args(p, "target", "target images (domain B)")
    cli.add_cache_arg(p, "source")
    cli.add_cache_arg(p, "target")
    cli.add_protocol_arg(p)
    p.add_argument("--segmenter", help="frozen M checkpoint for the perceptual loss (omit to train without it)")
    p.add_argument("--domain-bn", action="store_true",
                   help="the perceptual loss reads source-look images through M with BatchNorm statistics "
                        "re-estimated on the source frames and target-look images through M with the target "
                        "frames' (M trained each domain's batches with their own statistics)")
    p.add_argument("--init", help="start F and F_inv from this translator checkpoint (the previous round's); the "
                                  "PatchGANs and optimisers start afresh")
    m = p.add_argument_group("model")
    m.add_argument("--ngf", type=int, default=default("translator.ngf"), help="generator width (paper 64)")
    m.add_argument("--n-blocks", type=int, default=default("translator.n_blocks"),
                   help="generator residual blocks (paper 9)")
    m.add_argument("--ndf", type=int, default=default("translator.ndf"), help="PatchGAN width (paper 64)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--iterations", type=cli.steps, default=default("translator.iterations"))
    o.add_argument("--decay-start", type=int, default=default("translator.decay_start"),
                   help="step where linear decay starts (default: half way to the horizon)")
    o.add_argument("--lr-horizon", type=cli.steps, default=default("translator.lr_horizon"),
                   help="step where the linear decay reaches zero (default: --iterations)")
    o.add_argument("--batch-size", type=int, default=default("translator.batch_size"))
    o.add_argument("--crop", type=int, nargs=2, metavar=("W", "H"), default=None)
    o.add_argument("--no-flip", action="store_true")
    o.add_argument("--lr", type=float, default=default("translator.lr"))
    o.add_argument("--beta1", type=float, default=default("translator.beta1"))
    o.add_argument("--gan-mode", default="lsgan", choices=("lsgan", "vanilla"))
    o.add_argument("--pool-size", type=int, default=default("translator.pool_size"))
    o.add_argument("--lambda-gan", type=float, default=default("translator.lambda_gan"))
    o.add_argument("--lambda-cycle", type=float, default=default("translator.lambda_cycle"))
    o.add_argument("--lambda-idt", type=float, default=default("translator.lambda_idt"),
                   help="identity weight, times lambda-cycle")
    o.add_argument("--lambda-per", type=float, default=default("translator.lambda_per"),
                   help="perceptual loss S vs F(S)")
    o.add_argument("--lambda-per-recon", type=float, default=default("translator.lambda_per_recon"),
                   help="perceptual loss S vs F_inv(F(S))")
    cli.add_training_args(p, o)
    p.add_argument("--samples", help="sample grid (PNG) of a few frames through F and F_inv, redrawn at every "
                                     "checkpoint: real A | fake B | rec A | real B | fake A")
    return p


def main(args):
    from bdl.data.datasets import make_loader
    from bdl.distributed import World, split_batch
    from bdl.loops.translator import TranslatorSettings, train_translator
    from bdl.models import load_segmenter
    from bdl.runtime import ComputeFormat, start_process
    from bdl.training import Resumable, Watch, save_trained

    if args.lr_horizon is not None and args.lr_horizon < args.iterations:
        raise BDLError(f"--lr-horizon {args.lr_horizon} is shorter than --iterations {args.iterations}: the rate would "
                       "pass zero (config translator.lr_horizon)")
    device = start_process(args)
    world = World.from_env()
    split_batch(args.batch_size, world, "translator.batch_size")
    flip = not args.no_flip
    src = cli.image_set(args, "source", False, args.crop, flip, args.seed)
    tgt = cli.image_set(args, "target", False, args.crop, flip, args.seed + 1)
    segmenter = segmenter_b = None
    if args.segmenter:
        segmenter = load_segmenter(args.segmenter)
        if args.domain_bn:
            segmenter, segmenter_b = domain_judges(args, segmenter, device)
    arch = {"ngf": args.ngf, "n_blocks": args.n_blocks}
    init = None
    if args.init:
        from bdl.artifacts import load_checkpoint

        init = load_checkpoint(args.init, kind="translator")
        if dict(init["arch"]) != arch:
            raise BDLError(f"{args.init}: a translator with {dict(init['arch'])}, this one is {arch} "
                           "(config translator.ngf / n_blocks)")
    settings = TranslatorSettings.from_args(args)
    resumable = Resumable(Path(args.out), vars(args), args.checkpoint_every, args.stop_before_limit)
    F_ab, F_ba, log = train_translator(
        arch, make_loader(src, args.batch_size, True, args.workers, args.seed, drop_last=True, world=world),
        make_loader(tgt, args.batch_size, True, args.workers, args.seed + 1, drop_last=True, world=world),
        segmenter, settings, ComputeFormat.of(args, device), device, resumable,
        watch=Watch.from_args(args, "translator F / F_inv"), samples=args.samples, world=world, init=init,
        init_path=args.init, segmenter_b=segmenter_b)
    save_trained(args, {"kind": "translator", "model": F_ab.state_dict(), "model_inv": F_ba.state_dict(),
                        "arch": arch, "args": cli.recorded_args(args)}, log, resumable)


def domain_judges(args, segmenter, device):
    """M with the source frames' BatchNorm statistics and M with the target frames' (all frames, uncropped,
    unflipped: the statistics of each set as M0 and the evaluation see it)."""
    from bdl.models.bn_stats import has_batchnorm, with_domain_statistics

    if not has_batchnorm(segmenter):
        print("--domain-bn: M has no BatchNorm, it reads both domains as it is", file=sys.stderr)
        return segmenter, None
    judges = tuple(with_domain_statistics(segmenter, cli.image_set(args, domain, False), device)
                   for domain in ("source", "target"))
    print("--domain-bn: M's BatchNorm statistics re-estimated on the source and on the target frames", file=sys.stderr)
    return judges


if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser()))
