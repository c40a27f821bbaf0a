#!/usr/bin/env python
"""Cut a Cityscapes-layout target's labelled split into a tuning part and a reporting part, as a new root of
symbolic links (no file copied): the other splits link through unchanged, so the run adapts to the same train
frames, and ``target.val_split`` picks the part it is scored on.

  python stages/hold_out.py --root ../shared/realpair_dev/target_lowlight_cityscapeslayout \\
      --out results/holdout/lowlight
then ``target: {root: results/holdout/lowlight, val_split: val_tune}`` while choosing settings, and
``val_split: val_report`` once, for the numbers you report. The parts are contiguous in name order (the
first half and the rest): neighbouring frames of a drive are nearly the same picture.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bdl import BDLError  # noqa: E402
from bdl.cli import probability, run  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="Cityscapes-layout root (leftImg8bit/, gtFine/)")
    p.add_argument("--split", default="val", help="labelled split to cut")
    p.add_argument("--names", nargs=2, default=["val_tune", "val_report"], metavar=("FIRST", "REST"),
                   help="split names of the two parts")
    p.add_argument("--fraction", type=probability, default=0.5, help="share of the frames in the first part")
    p.add_argument("--out", required=True, help="the new root (made; an existing one of the same links is kept)")
    return p


def main(args):
    from bdl.data.holdout import split_root
    from bdl.data.readers import DataError

    try:
        counts = split_root(args.root, args.out, args.split, tuple(args.names), args.fraction)
    except DataError as exc:
        raise BDLError(str(exc)) from None
    print(", ".join(f"{name}: {n} frames" for name, n in counts.items()) + f" ({args.out})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser()))
