#!/usr/bin/env python
"""Export (part of) a translated set to PNG files for viewing: ``<out>/<name>.png`` (translated image)
and, with --labels, ``<out>/<name>_label.png`` (colour label).

  python stages/export_translated.py results/round1/translated.h5 --out translated_png --first 50
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bdl import BDLError  # noqa: E402
from bdl.cli import run  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("translated", help="translated set (.h5)")
    p.add_argument("--out", required=True, help="folder for the PNG files")
    p.add_argument("--first", type=int, default=None, help="only the first N images")
    p.add_argument("--names", nargs="*", default=None, help="only these image names")
    p.add_argument("--labels", action="store_true", help="also write colour labels")
    return p


def main(args):
    import h5py
    from PIL import Image

    from bdl.data.labels import colorize

    path = Path(args.translated)
    if not path.is_file():
        raise BDLError(f"{path}: translated set not found")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "r") as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f["names"][:]]
        wanted = range(len(names)) if args.names is None else [i for i, n in enumerate(names) if n in set(args.names)]
        wanted = list(wanted)[: args.first]
        for i in wanted:
            Image.fromarray(f["images"][i]).save(out / f"{names[i]}.png")
            if args.labels:
                Image.fromarray(colorize(f["labels"][i])).save(out / f"{names[i]}_label.png")
    print(f"exported {len(wanted)} images to {out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser()))
