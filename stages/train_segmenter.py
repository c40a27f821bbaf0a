#!/usr/bin/env python
"""Train the segmenter M: source-only (M0), adversarial (Eq. 1), self-supervised (Eq. 3) or target oracle.

  M0:          --mode source      --source-format gta5 --source-root DIR ...
  M_k (adv):   --mode adversarial --translated round1/translated.h5 --source-... --target-format cityscapes ...
  M_k (SSL):   --mode ssl         --translated ... --source-... --pseudo round1/ssl1/pseudo.h5 --target-...

A translated set holds F(S)'s images only: their labels come from the source (--source-cache or its files).
  upper bound: --mode oracle      --target-... (reads the target's train labels; only this mode does)

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
    p.add_argument("--mode", required=True, choices=("source", "adversarial", "ssl", "oracle"))
    cli.add_dataset_args(p, "source", "labelled source, for --mode source; its labels for --translated")
    cli.add_dataset_args(p, "target", "target images; labels only in --mode oracle")
    cli.add_cache_arg(p, "source")
    cli.add_cache_arg(p, "target")
    cli.add_protocol_arg(p, "how images are resized and --eval-every scores")
    p.add_argument("--translated", help="translated source set (HDF5 from translate.py) for adversarial/ssl")
    p.add_argument("--pseudo", help="pseudo-label set (HDF5 from pseudo_label.py) for --mode ssl")
    m = p.add_argument_group("model")
    m.add_argument("--init", help="start from this segmenter checkpoint (its architecture wins)")
    m.add_argument("--backbone", default=default("segmenter.backbone"),
                   choices=("resnet101", "resnet50", "resnet18", "resnet_mini", "vgg16", "resnet101_ref", "vgg16_ref"))
    m.add_argument("--width", type=int, default=default("segmenter.width"), help="trunk width for resnet_mini / vgg16")
    m.add_argument("--weights", default=default("segmenter.weights"),
                   help="'none', 'imagenet' or a local state-dict file")
    m.add_argument("--freeze-bn", action="store_true", help="keep BatchNorm statistics fixed (reference)")
    m.add_argument("--aspp-dilations", type=int, nargs=4, default=default("segmenter.aspp_dilations"))
    o = p.add_argument_group("optimisation")
    o.add_argument("--iterations", type=cli.steps, required=True,
                   help="training steps (config segmenter.iterations.<mode>)")
    o.add_argument("--batch-size", type=int, default=default("segmenter.batch_size"))
    o.add_argument("--crop", type=int, nargs=2, metavar=("W", "H"), default=None, help="random crop W H")
    o.add_argument("--no-flip", action="store_true", help="disable random horizontal flips")
    o.add_argument("--lr", type=float, default=default("segmenter.lr"))
    o.add_argument("--momentum", type=float, default=default("segmenter.momentum"))
    o.add_argument("--weight-decay", type=float, default=default("segmenter.weight_decay"))
    o.add_argument("--optimizer", default=default("segmenter.optimizer"), choices=("sgd", "adam"),
                   help="sgd (momentum, weight decay) or adam (--betas; the reference's FCN-8s)")
    o.add_argument("--betas", type=float, nargs=2, default=default("segmenter.betas"), help="Adam's betas for M")
    o.add_argument("--lr-schedule", default=default("segmenter.lr_schedule"), choices=("poly", "step"),
                   help="schedule of M and D: poly (--lr-horizon, --power) or step (--lr-step, --lr-gamma)")
    o.add_argument("--lr-horizon", type=cli.steps, default=default("segmenter.lr_horizon"),
                   help="steps where poly reaches zero (default: --iterations; the reference 250000)")
    o.add_argument("--lr-step", type=cli.steps, default=default("segmenter.lr_step"),
                   help="steps between the step schedule's decays")
    o.add_argument("--lr-gamma", type=float, default=default("segmenter.lr_gamma"), help="step schedule's factor")
    o.add_argument("--power", type=float, default=default("segmenter.power"), help="poly decay power")
    o.add_argument("--lambda-adv", type=float, default=default("segmenter.lambda_adv"),
                   help="weight of the output-space adversarial loss")
    o.add_argument("--lr-d", type=float, default=default("segmenter.lr_d"), help="Adam learning rate of D")
    o.add_argument("--ndf", type=int, default=default("segmenter.ndf"), help="width of D")
    cli.add_training_args(p, o)
    p.add_argument("--eval-every", type=int, default=default("runtime.eval_every"),
                   help="score the target's --eval-split every N steps, logged as val_miou (0: never)")
    p.add_argument("--eval-split", default=default("target.val_split"), help="labelled target split for --eval-every")
    return p


def main(args):
    from bdl.artifacts import load_checkpoint, names_hash, read_attrs
    from bdl.data.cache import domain_set
    from bdl.data.datasets import make_loader
    from bdl.data.translated import TranslatedSet
    from bdl.distributed import World, split_batch
    from bdl.models import build_segmenter, segmenter_arch, segmenter_from_checkpoint
    from bdl.pseudo import PseudoLabelSet
    from bdl.runtime import ComputeFormat, start_process
    from bdl.training import Resumable, Watch, save_trained

    if args.mode in ("adversarial", "ssl") and not args.translated:
        raise BDLError(f"--mode {args.mode} needs --translated")
    if args.mode == "ssl" and not args.pseudo:
        raise BDLError("--mode ssl needs --pseudo")
    if args.mode in ("adversarial", "ssl") and not (args.source_format and args.source_root):
        raise BDLError(f"--translated {args.translated}: a translated set holds the images only, its labels are the "
                       "source's: give --source-format and --source-root (and --source-cache if there is one)")
    if args.lr_schedule == "poly" and args.lr_horizon is not None and args.lr_horizon < args.iterations:
        raise BDLError(f"--lr-horizon {args.lr_horizon} is shorter than --iterations {args.iterations}: the rate would "
                       "pass zero (config segmenter.lr_horizon)")
    device = start_process(args)
    world = World.from_env()
    split_batch(args.batch_size, world, "segmenter.batch_size")
    crop, flip = args.crop, not args.no_flip

    if args.mode == "source":
        src = cli.image_set(args, "source", True, crop, flip, args.seed)
    elif args.mode == "oracle":
        spec = cli.dataset_spec(args, "target")
        src = domain_set(spec, None, args.target_size, True, crop, flip, args.seed,  # labels: never cached
                         protocol=args.protocol)
    else:
        src = TranslatedSet(args.translated, cli.image_set(args, "source", True), crop=crop, flip=flip, seed=args.seed)

    # with_labels=False: adaptation must never see a target training label
    tgt = None
    if args.mode == "ssl":
        images = cli.image_set(args, "target", False)
        names = read_attrs(args.pseudo).get("names_hash")
        if names and names != names_hash([s.name for s in images.samples]):
            raise BDLError(f"{args.pseudo}: pseudo-labels were made for a different target image list")
        tgt = PseudoLabelSet(args.pseudo, images, crop=crop, flip=flip, seed=args.seed + 1)
    elif args.mode == "adversarial":
        tgt = cli.image_set(args, "target", False, crop, flip, args.seed + 1)

    if args.init:
        state = load_checkpoint(args.init, kind="segmenter")
        model = segmenter_from_checkpoint(state, args.init)
        arch = state["arch"]
    else:
        model = build_segmenter(args.backbone, weights=args.weights, width=args.width, freeze_bn=args.freeze_bn,
                                aspp_dilations=args.aspp_dilations)
        if model.ignored_weights:
            extra = model.ignored_weights
            print(f"weights {args.weights}: every tensor of the trunk loaded; {len(extra)} in the file that the model "
                  f"does not have were ignored ({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''})",
                  file=sys.stderr)
        arch = segmenter_arch(args)

    src_loader = make_loader(src, args.batch_size, True, args.workers, args.seed, drop_last=True, world=world)
    tgt_loader = make_loader(tgt, args.batch_size, True, args.workers, args.seed + 1, drop_last=True,
                             world=world) if tgt else None
    from bdl.loops.segmenter import SegmenterSettings, train_segmenter

    # only the adaptation modes train D
    settings = SegmenterSettings.from_args(args, lambda_adv=args.lambda_adv if args.mode in ("adversarial", "ssl")
                                           else 0.0)
    resumable = Resumable(Path(args.out), vars(args), args.checkpoint_every, args.stop_before_limit)
    compute = ComputeFormat.of(args, device)
    watch = Watch.from_args(args, f"segmenter, mode {args.mode}",
                            evaluate=val_score(args, model, device, compute) if args.eval_every > 0 and world.main
                            else None)  # rank 0 scores and logs
    model, log = train_segmenter(model, src_loader, tgt_loader, settings, compute, device, resumable,
                                 stage=f"train_segmenter[{args.mode}]", watch=watch, world=world)
    checkpoint = {"kind": "segmenter", "model": model.state_dict(), "arch": arch, "args": cli.recorded_args(args)}
    save_trained(args, checkpoint, log, resumable)


def val_score(args, model, device, compute):
    """The evaluation's mIoU on the labelled --eval-split, as a function the loop calls every --eval-every steps."""
    from bdl.data.datasets import SegmentationDataset
    from bdl.loops.inference import evaluate_set

    spec = cli.dataset_spec(args, "target", split=args.eval_split)
    val = SegmentationDataset(spec.samples(with_labels=True, split=args.eval_split), None, args.target_size,
                              protocol=args.protocol)

    def score() -> dict:
        cm, _, _ = evaluate_set(model, val, device, decode=spec.label_decoder(), compute=compute,
                                protocol=args.protocol)
        compute.model(model).train()  # evaluate_set leaves it in eval mode
        return {"val_miou": cm.summary()["miou"]}

    return score


if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser()))
