#!/usr/bin/env python
"""Evaluate a segmenter on the labelled target val set: mIoU (19, 16, 13 classes), per-class IoU and pixel
accuracy as JSON, and for the first few images a colour PNG (image | prediction | ground truth) and the
prediction alone as a trainId palette PNG (<name>_pred.png, read by stages/viewer.py).

Every image is scored at its label's own size (Cityscapes: 2048x1024), after the model saw it at --target-size.
--protocol says how, and the JSON records which ("protocol"):
  bdl        image resized bilinear; M's logits upsampled to its input, then to the label's size
             (align_corners=False), softmax and argmax there
  reference  as the reference's evaluation.py (liyunsheng13/BDL): image resized bicubic, the softmax of the
             logits at M's output stride upsampled once to the label's size (align_corners=True), argmax of
             those probabilities; labelIds mapped to trainIds at full size. Use it to score a released model
             (after import_weights.py) as its authors' script does; a GPU's arithmetic may still move a few pixels.

--target-bn scores M with its BatchNorm statistics re-estimated on the target's unlabelled train frames (AdaBN):
on M0, the baseline that adapts by normalisation alone, which the loop's models should beat.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bdl.cli import add_dataset_args, add_procs_arg, add_protocol_arg, add_runtime_args, dataset_spec, run  # noqa: E402
from bdl.defaults import default  # noqa: E402
from bdl.errors import BDLError  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--segmenter", required=True, help="segmenter checkpoint")
    add_dataset_args(p, "target", "labelled evaluation images")
    p.add_argument("--split", default=default("target.val_split"), help="split to evaluate (Cityscapes layout)")
    p.add_argument("--predictions", help="folder for the prediction PNGs (<name>.png, <name>_pred.png)")
    p.add_argument("--num-predictions", type=int, default=default("evaluate.num_predictions"))
    p.add_argument("--target-bn", nargs="?", const=default("target.train_split"), metavar="SPLIT",
                   help="score M with its BatchNorm statistics re-estimated on the unlabelled target frames of SPLIT "
                        "(default: %(const)s; never the split scored) (AdaBN): for M0, the source-only baseline that "
                        "uses the target's images only to normalise; recorded in the JSON as target_bn")
    p.add_argument("--pseudo", help="pseudo-label set this model made: also score such pseudo-labels on this split")
    add_protocol_arg(p, "how images are resized and M's output brought to the label's size (above)")
    add_runtime_args(p, out="metrics (.json)")
    add_procs_arg(p)
    return p


def main(args):
    import numpy as np

    from bdl.artifacts import write_json
    from bdl.data.datasets import SegmentationDataset
    from bdl.data.labels import CLASS_NAMES, colorize
    from bdl.distributed import World
    from bdl.loops.inference import evaluate_set
    from bdl.models import load_segmenter
    from bdl.runtime import ComputeFormat, start_process
    from bdl.viz import read_png, save_grid, save_label_png

    device = start_process(args)
    model = load_segmenter(args.segmenter)
    if args.target_bn:
        from bdl.cli import image_set
        from bdl.models.bn_stats import has_batchnorm, with_domain_statistics

        if not has_batchnorm(model):
            raise BDLError(f"{args.segmenter}: --target-bn, but this model has no BatchNorm statistics")
        if args.target_bn == args.split:
            raise BDLError(f"--target-bn {args.target_bn}: the statistics would come from the frames scored (--split)")
        model = with_domain_statistics(model, image_set(args, "target", False, spec=dataset_spec(
            args, "target", split=args.target_bn)), device)
    spec = dataset_spec(args, "target", split=args.split)
    samples = spec.samples(with_labels=True, split=args.split)
    ds = SegmentationDataset(samples, None, args.target_size, protocol=args.protocol)
    thresholds = None
    if args.pseudo:
        from bdl.artifacts import check_set

        thresholds = np.asarray(check_set(args.pseudo, "pseudo")["thresholds"], dtype=np.float64)
    cm, kept, pl = evaluate_set(model, ds, device, args.num_predictions if args.predictions else 0,
                                decode=spec.label_decoder(), thresholds=thresholds,
                                compute=ComputeFormat.of(args, device), world=World.from_env(), protocol=args.protocol)
    if not World.from_env().main:  # every rank has the summed counts; rank 0 writes
        return
    result = cm.summary() | {"segmenter": str(args.segmenter), "split": args.split, "images": len(ds),
                             "protocol": args.protocol} | ({"target_bn": args.target_bn} if args.target_bn else {})
    if pl is not None:
        result["pseudo_label_on_val"] = {
            "source": str(args.pseudo),
            "coverage": 100 * pl["kept"].sum() / max(pl["predicted"].sum(), 1),
            "accuracy": 100 * pl["correct"].sum() / max(pl["kept"].sum(), 1),
            "per_class_accuracy": {n: (100 * c / k if k else None)
                                   for n, c, k in zip(CLASS_NAMES, pl["correct"], pl["kept"])},
            "per_class_coverage": {n: (100 * k / t if t else None)
                                   for n, k, t in zip(CLASS_NAMES, pl["kept"], pl["predicted"])},
        }
    if args.predictions:
        out = Path(args.predictions)
        out.mkdir(parents=True, exist_ok=True)
        for (name, pred, gt), s in zip(kept, samples):
            image = read_png(s.image)
            save_grid([[image, colorize(pred), colorize(gt)]], out / f"{name}.png")
            # the labels themselves, not a picture: the viewer draws them at its own sizes
            save_label_png(pred, out / f"{name}_pred.png")
    write_json(args.out, result)
    print(f"{args.segmenter}: mIoU {result['miou']:.2f} (16: {result['miou16']:.2f}, 13: {result['miou13']:.2f}; "
          f"protocol {args.protocol})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser()))
