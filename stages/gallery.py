#!/usr/bin/env python
"""Gallery PNGs for inspection, for a fixed sample of images.

  --translated T.h5 --source-...: source image | translated image | source label overlay (the label read from
                                   the source, as the segmenter reads it)
  --pseudo P.h5 --target-...:     target image | pseudo-label | ignored mask (white = ignored)
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bdl import BDLError  # noqa: E402
from bdl.cli import add_dataset_args, dataset_spec, run  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--translated", help="translated set (.h5)")
    p.add_argument("--pseudo", help="pseudo-label set (.h5)")
    add_dataset_args(p, "source", "for --translated")
    add_dataset_args(p, "target", "for --pseudo")
    p.add_argument("--count", type=int, default=6, help="rows in the gallery")
    p.add_argument("--scale", type=int, default=2, help="pixel scale of the PNG")
    p.add_argument("--out", required=True, help="gallery (.png)")
    return p


def main(args):
    import h5py
    import numpy as np

    from bdl.artifacts import check_set, frames
    from bdl.data.cache import domain_set
    from bdl.data.labels import colorize
    from bdl.data.readers import read_image, resize_pair
    from bdl.data.translated import check_source
    from bdl.viz import ignored_mask, overlay, save_grid

    if bool(args.translated) == bool(args.pseudo):
        raise BDLError("give exactly one of --translated and --pseudo")
    path = Path(args.translated or args.pseudo)
    prefix = "source" if args.translated else "target"
    spec = dataset_spec(args, prefix)
    size = getattr(args, f"{prefix}_size")
    # a translated set's labels are the source's, read as the segmenter reads them
    source = domain_set(spec, None, size, True) if args.translated else None
    if source is not None:
        check_source(path, source)
    samples = source.samples if source is not None else spec.samples(with_labels=False)
    rows = []
    with h5py.File(path, "r") as f:
        n = len(f["names"])
        if not args.translated:
            check_set(path, "pseudo")
        # evenly spaced, so the same images appear in every round's gallery
        for i in np.linspace(0, n - 1, min(args.count, n)).round().astype(int):
            image, _ = resize_pair(read_image(samples[i].image), None, size)
            label = source.label_at(i) if args.translated else f["label"][i]
            if args.translated:
                rows.append([image, frames(f, "images")[i], overlay(image, label)])
            else:
                rows.append([image, colorize(label), ignored_mask(label)])
    save_grid(rows, args.out, scale=args.scale)


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser()))
