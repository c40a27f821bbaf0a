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
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise BDLError(f"{path}: not an HDF5 set ({exc})") from None
    with f:
        if "images" not in f or "names" not in f:
            kind = f.attrs.get("made_by", "another kind of file")
            raise BDLError(f"{path}: not a translated set (it holds {', '.join(sorted(f)) or 'nothing'}; "
                           f"made by {kind})")
        names = [n.decode() if isinstance(n, bytes) else n for n in f["names"][:]]
        if args.names is not None:
            unknown = sorted(set(args.names) - set(names))
            if unknown:
                raise BDLError(f"{path}: no image named {', '.join(unknown[:5])} in this set")
        wanted = range(len(names)) if args.names is None else [i for i, n in enumerate(names) if n in set(args.names)]
        wanted = list(wanted)[: args.first]
        if not wanted:
            raise BDLError(f"{path}: the selection is empty (--first {args.first}, {len(names)} images in the set)")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for i in wanted:
            Image.fromarray(f["images"][i]).save(out / f"{names[i]}.png")
            if args.labels:
                Image.fromarray(colorize(f["labels"][i])).save(out / f"{names[i]}_label.png")
    print(f"exported {len(wanted)} images to {out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser()))
