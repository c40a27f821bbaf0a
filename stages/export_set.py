#!/usr/bin/env python
"""Export (part of) an HDF5 set to PNG files in a layout other tools read; the kind of set is read from
its contents.

  translated set (images)          -> the GTA5 layout: <out>/images/<name>.png (the translated image) and
                                      <out>/labels/<name>.png (its source label: palette PNG, index = Cityscapes
                                      labelId, ignored pixels 0 'unlabeled'), so `--source-format gta5` reads
                                      it back. The labels are read from the source the set records (or the
                                      --source-... flags, for data that has moved)
  pseudo-label set (label)         -> the Cityscapes layout of its trainId labels (the names of
                                      cityscapesscripts' createTrainIdLabelImgs):
                                      <out>/gtFine/<split>/<city>/<name>_gtFine_labelTrainIds.png, 255
                                      where ignored, at the size the set was made (target.size); <city>
                                      comes from <city>_<seq>_<frame> names (other names go to the city
                                      folder 'other')
With --preview, colour labels (ignored pixels black) also go to <out>/preview/<name>.png.

  python stages/export_set.py results/demo/round1/translated.h5 --out translated_gta5 --first 50
  python stages/export_set.py results/demo/round1/ssl1/pseudo.h5 --out pseudo_cityscapes
"""

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bdl import BDLError  # noqa: E402
from bdl.cli import add_dataset_args, positive_int, run  # noqa: E402

CITYSCAPES_NAME = re.compile(r"(?P<city>.+)_\d+_\d+")


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("set", help="translated set or pseudo-label set (.h5)")
    p.add_argument("--out", required=True, help="folder to export into")
    p.add_argument("--first", type=positive_int, default=None, help="only the first N images")
    p.add_argument("--names", nargs="*", default=None, help="only these image names")
    p.add_argument("--split", default=None,
                   help="split folder of a pseudo-label export (default: the split the set was made from)")
    p.add_argument("--preview", action="store_true", help="also write colour labels under <out>/preview/")
    add_dataset_args(p, "source", "a translated set's labels; default: the source it records")
    return p


def set_kind(f, path: Path) -> str:
    from bdl.artifacts import check_set

    held = set(f)
    kind = f.attrs.get("set_kind")
    if kind in ("translated", "pseudo"):
        check_set(path, kind)
        return kind
    # an older layout (translated: images and labels; pseudo-labels: pred and prob): refused, saying what to rerun
    if {"images", "labels", "names"} <= held:
        check_set(path, "translated")
    if {"pred", "prob", "names"} <= held and "thresholds" in f.attrs:
        check_set(path, "pseudo")
    made_by = f.attrs.get("made_by", "an unknown stage")
    raise BDLError(f"{path}: not a translated or pseudo-label set (it holds {', '.join(sorted(held)) or 'nothing'}; "
                   f"made by {made_by})")


def selection(names: list[str], args, path: Path) -> list[int]:
    """Row indices to export; refused before anything is written."""
    if args.names is not None:
        unknown = sorted(set(args.names) - set(names))
        if unknown:
            raise BDLError(f"{path}: no image named {', '.join(unknown[:5])} in this set")
    wanted = [i for i, n in enumerate(names) if args.names is None or n in set(args.names)][: args.first]
    if not wanted:
        given = ([f"--first {args.first}"] if args.first is not None else []) + \
            ([f"--names {' '.join(args.names)}"] if args.names is not None else [])
        raise BDLError(f"{path}: the selection is empty ({', '.join(given + [f'{len(names)} images in the set'])})")
    return wanted


def pseudo_split(f, args) -> str:
    if args.split:
        return args.split
    try:
        return json.loads(f.attrs["target"])["split"]
    except (KeyError, TypeError, ValueError):  # a set made before the target was recorded
        return "train"


def main(args):
    import h5py
    import numpy as np
    from PIL import Image

    from bdl.artifacts import atomic_path, frames
    from bdl.data.labels import PALETTE, TRAINID_TO_LABELID, colorize
    from bdl.data.translated import recorded_source

    path = Path(args.set)
    if not path.is_file():
        raise BDLError(f"{path}: set not found")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise BDLError(f"{path}: not an HDF5 set ({exc})") from None

    def save(image: Image.Image, where: Path):
        with atomic_path(where) as tmp:  # a killed export leaves no half-written PNG under a final name
            image.save(tmp, format="PNG")

    # GTA5 ships its labels as palette PNGs coloured like Cityscapes; viewers show the classes, readers the index
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[TRAINID_TO_LABELID[: len(PALETTE)]] = PALETTE
    out = Path(args.out)
    with f:
        kind = set_kind(f, path)
        names = [n.decode() if isinstance(n, bytes) else n for n in f["names"][:]]
        wanted = selection(names, args, path)
        if kind == "translated":
            source, images = recorded_source(path, args), frames(f, "images")
        if kind == "pseudo":
            split = pseudo_split(f, args)
        for i in wanted:
            if kind == "translated":
                label = source.label_at(i)
                save(Image.fromarray(images[i]), out / "images" / f"{names[i]}.png")
                ids = Image.fromarray(TRAINID_TO_LABELID[label], mode="P")
                ids.putpalette(palette.ravel().tolist())
                save(ids, out / "labels" / f"{names[i]}.png")
            else:
                label = f["label"][i]  # what M was trained on
                match = CITYSCAPES_NAME.fullmatch(names[i])
                city = match["city"] if match else "other"
                save(Image.fromarray(label, mode="L"),
                     out / "gtFine" / split / city / f"{names[i]}_gtFine_labelTrainIds.png")
            if args.preview:
                save(Image.fromarray(colorize(label)), out / "preview" / f"{names[i]}.png")
    layout = "the GTA5 layout" if kind == "translated" else f"the Cityscapes layout (gtFine/{split})"
    print(f"exported {len(wanted)} {'images' if kind == 'translated' else 'pseudo-labels'} of {path} to {out} "
          f"in {layout}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser()))
