#!/usr/bin/env python
"""Build a check pair from ../shared/realpair_dev with a shift of scenes as well as of look: the development
pair's roles exchanged. Source: the low-light drive (CamVid Seq05VD through the low-light camera model), all 171
frames with their labels. Target: the day drive the development pair adapts *from*, made a Cityscapes-layout
root of links: ``train`` its 0016E5 sequence (204 frames, labels unread), ``val`` its other sequence 0006R0
(101 frames, another road), cut into ``val_tune`` and ``val_report`` (stages/hold_out.py's halves). Source and
target are different drives, and the target's val another drive again; nothing was tuned on this direction.

  python benchmarks/night_to_day_pair.py --realpair ../shared/realpair_dev --out results/pairs/night_to_day
then ``source: {format: cityscapes, root: <out>/source, split: all}`` and
``target: {root: <out>/target, val_split: val_tune, report_split: val_report}``. Nothing is copied.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bdl import BDLError  # noqa: E402
from bdl.cli import run  # noqa: E402

LOWLIGHT = "target_lowlight_cityscapeslayout"
DAY = "source_day_gta5layout"
TRAIN_SEQ, VAL_SEQ = "0016E5", "0006R0"  # the day drive's two CamVid sequences (provenance.tsv)


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--realpair", required=True, help="the realpair_dev folder")
    p.add_argument("--out", required=True, help="new folder for the two roots (an existing one is kept as it is)")
    return p


def _link(path: Path, target: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target.resolve())


def build(realpair: Path, out: Path) -> dict:
    from bdl.data.holdout import split_root
    from bdl.data.readers import DataError, cityscapes_samples

    night, day = realpair / LOWLIGHT, realpair / DAY
    prov = day / "provenance.tsv"
    if not prov.is_file():
        raise DataError(f"{prov}: not found (is --realpair the realpair_dev folder?)")
    if out.exists():
        raise DataError(f"{out}: exists; give a new --out")
    counts = {}
    source = out / "source"
    for split in ("train", "val"):  # every labelled low-light frame is source data here
        for s in cityscapes_samples(night, split):
            _link(source / "leftImg8bit" / "all" / s.image.parent.name / s.image.name, s.image)
            _link(source / "gtFine" / "all" / s.label.parent.name / s.label.name, s.label)
            counts["source"] = counts.get("source", 0) + 1
    full = out / "target_full"
    for line in prov.read_text().splitlines():
        name, origin = line.split("\t")
        seq = Path(origin).name.split("_")[0]
        split = {TRAIN_SEQ: "train", VAL_SEQ: "val"}.get(seq)
        if split is None:
            raise DataError(f"{prov}: sequence {seq} is neither {TRAIN_SEQ} nor {VAL_SEQ}")
        city, stem = f"camvid{seq}", f"camvid{seq}_000000_{Path(name).stem}"
        _link(full / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", day / "images" / name)
        # GTA5-layout labels here are palette PNGs whose index is the Cityscapes labelId: read as labelIds
        _link(full / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", day / "labels" / name)
        counts[f"target {split}"] = counts.get(f"target {split}", 0) + 1
    counts.update(split_root(full, out / "target", "val"))
    return counts


def main(args):
    from bdl.data.readers import DataError

    try:
        counts = build(Path(args.realpair), Path(args.out))
    except DataError as exc:
        raise BDLError(str(exc)) from None
    print(", ".join(f"{k}: {n}" for k, n in counts.items()) + f" ({args.out})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser()))
