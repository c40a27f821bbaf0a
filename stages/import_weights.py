#!/usr/bin/env python
"""Turn one of the reference's released models (BDL's GTA5_deeplab, SYNTHIA_deeplab, SSL_step1/2, GTA5_VGG,
SYNTHIA_VGG, or its VGG16-FCN initial weights) into a bdl segmenter checkpoint, which every stage takes:

  python stages/import_weights.py --backbone resnet101_ref --weights GTA5_deeplab.pth --out gta5_deeplab/segmenter.pt
  python stages/evaluate.py --segmenter gta5_deeplab/segmenter.pt --target-format cityscapes \\
      --target-root /data/cityscapes --target-size 1024 512 --out gta5_deeplab/eval.json
  python stages/predict.py --segmenter gta5_deeplab/segmenter.pt --images my_photos --out pred
  python stages/train_segmenter.py --init gta5_deeplab/segmenter.pt ...   (start the loop from it)

Every key is checked against the manifest of the reference's file (bdl.models.reference_manifest) and every
tensor of the model must come from the file: a DeepLab initial model (no trained classifier) is refused here;
give it as ``segmenter.weights`` instead, which trains from its trunk.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bdl import BDLError, cli  # noqa: E402
from bdl.defaults import default  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", required=True, choices=("resnet101_ref", "vgg16_ref"),
                   help="resnet101_ref: the reference's DeepLab v2 files; vgg16_ref: its FCN-8s VGG16 files")
    p.add_argument("--weights", required=True, help="the reference's .pth file (a plain state dict; never unpickled)")
    p.add_argument("--out", required=True, help="segmenter checkpoint to write (.pt)")
    p.add_argument("--freeze-bn", action="store_true",
                   help="recorded in the checkpoint: keep BatchNorm statistics fixed when training from it")
    p.add_argument("--aspp-dilations", type=int, nargs=4, default=default("segmenter.aspp_dilations"),
                   help="resnet101_ref's classifier dilations (the reference's: 6 12 18 24)")
    return p


def main(args):
    from bdl.artifacts import save_checkpoint
    from bdl.data.labels import NUM_CLASSES
    from bdl.models import build_segmenter
    from bdl.models.reference_weights import convert, load_converted

    converted = convert(args.backbone, args.weights, NUM_CLASSES)
    if not converted.complete:
        raise BDLError(f"{args.weights}: no trained classifier in the file (an initial model or a trunk); use it as "
                       "segmenter.weights (train_segmenter --weights) to train from it")
    model = build_segmenter(args.backbone, freeze_bn=args.freeze_bn, aspp_dilations=args.aspp_dilations)
    load_converted(model, converted, args.weights)
    print(converted.note, file=sys.stderr)
    arch = {"backbone": args.backbone, "width": 64, "freeze_bn": bool(args.freeze_bn),
            "aspp_dilations": list(args.aspp_dilations), "num_classes": NUM_CLASSES}
    save_checkpoint(args.out, {"kind": "segmenter", "model": model.state_dict(), "arch": arch,
                               "args": cli.recorded_args(args), "imported_from": str(args.weights)})
    print(f"saved {args.out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser()))
