#!/usr/bin/env python
"""Segment new images with a trained segmenter: no labels needed, any image size, one image at a time.

For each image (a folder, searched recursively for .png/.jpg/.jpeg, or a list file of paths) it writes,
under --out and keeping the image's sub-folder:
  <stem>_trainIds.png   the 19 Cityscapes trainIds (0..18)
  <stem>_color.png      the same in the Cityscapes palette
  <stem>_labelIds.png   with --label-ids: Cityscapes labelIds, the format of Cityscapes' own evaluation
                        scripts and benchmark server
--formats picks which (e.g. --formats labelIds alone for a folder to hand to cityscapesscripts' evaluation,
which finds every PNG named after a frame and refuses two predictions of one).
The model sees the image resized to --size when given (as in training), and its output is brought back to
the image's own size as the evaluation does under the same --protocol (stages/evaluate.py --help).

  python stages/predict.py --segmenter results/demo/round2/ssl3/segmenter.pt --images my_photos --out pred
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bdl import BDLError  # noqa: E402
from bdl.cli import add_protocol_arg, add_runtime_args, run  # noqa: E402

SUFFIXES = (".png", ".jpg", ".jpeg")
FORMATS = ("trainIds", "color", "labelIds")


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--segmenter", required=True, help="segmenter checkpoint (segmenter.pt)")
    p.add_argument("--images", required=True, help="a folder of images, or a text file listing image paths")
    p.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), default=None,
                   help="resize each image to W H for the model (the size it was trained at); default: as is")
    p.add_argument("--label-ids", action="store_true", help="also write Cityscapes labelId PNGs")
    p.add_argument("--formats", nargs="+", choices=FORMATS, default=["trainIds", "color"],
                   help="which PNGs to write (default: trainIds color; --label-ids adds labelIds)")
    add_protocol_arg(p, "how images are resized and M's output brought to their size (stages/evaluate.py)")
    add_runtime_args(p, out="folder for the label PNGs")
    return p


def list_images(where: Path) -> list[tuple[Path, Path]]:
    """(image, path relative to the output folder without suffix) for every image named by ``where``."""
    if where.is_dir():
        found = sorted(p for p in where.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
        items = [(p, p.relative_to(where).with_suffix("")) for p in found]
    elif where.is_file():
        lines = [ln.strip() for ln in where.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        paths = [(where.parent / ln) if not Path(ln).is_absolute() else Path(ln) for ln in lines]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise BDLError(f"{where}: lists {missing[0]}, which is not a file")
        items = [(p, Path(p.stem)) for p in paths]
    else:
        raise BDLError(f"{where}: no such folder or list file")
    if not items:
        raise BDLError(f"{where}: no {'/'.join(SUFFIXES)} images found")
    return items


def main(args):
    import numpy as np
    import torch
    from PIL import Image

    from bdl.artifacts import atomic_path
    from bdl.data.labels import TRAINID_TO_LABELID, colorize
    from bdl.data.readers import read_image, resize_pair
    from bdl.loops.inference import predict_full_size
    from bdl.models import load_segmenter
    from bdl.runtime import ComputeFormat, start_process
    from bdl.training import progress

    items = list_images(Path(args.images))  # a bad input is named before the model loads
    device = start_process(args)
    model = load_segmenter(args.segmenter)
    compute = ComputeFormat.of(args, device)
    compute.model(model).eval()
    out = Path(args.out)
    formats = set(args.formats) | ({"labelIds"} if args.label_ids else set())

    def save(array, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:  # a killed run leaves no half-written PNG under its final name
            Image.fromarray(array).save(tmp, format="PNG")

    for image_path, rel in progress(items, desc="predict"):
        image = read_image(image_path)
        resized, _ = resize_pair(image, None, args.size, args.protocol)
        _, pred = predict_full_size(model, torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1),
                                    image.shape[:2], device, compute, args.protocol)
        train_ids = pred.numpy().astype(np.uint8)
        if "trainIds" in formats:
            save(train_ids, out / f"{rel}_trainIds.png")
        if "color" in formats:
            save(colorize(train_ids), out / f"{rel}_color.png")
        if "labelIds" in formats:
            save(TRAINID_TO_LABELID[train_ids], out / f"{rel}_labelIds.png")
    print(f"segmented {len(items)} images into {out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser()))
