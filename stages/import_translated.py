#!/usr/bin/env python
"""Import translated source images made elsewhere (the reference's released "GTA5 as CityScapes" images, or
another translator's) as a round's translated set: the HDF5 file translate.py writes (the images alone; the labels
stay the source's), so the round's segmenters train on it as on F_k's output (config key ``import_translated``).

Every source frame must have its translation in --images, found by file name (stem; .png or .jpg) under the
folder or its ``images/`` subfolder; each must be the source frame's own size or the training size
(--source-size), and is resized to the training size as the source frames are. A missing frame or a
translation of another size stops the import in one line before anything is written; files for frames the
source listing does not hold are counted and left out.

  python stages/import_translated.py --images /data/gta5_as_cityscapes --source-format gta5 \\
      --source-root /data/GTA5 --source-size 1280 720 --out results/gta5_resnet101/round1/translated.h5
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bdl import BDLError  # noqa: E402
from bdl.cli import add_cache_arg, add_dataset_args, add_protocol_arg, dataset_spec, image_set, run  # noqa: E402

SUFFIXES = (".png", ".jpg", ".jpeg")


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", required=True, help="folder of translated source images, named as the source's")
    add_dataset_args(p, "source", "the labelled source those images translate")
    add_cache_arg(p, "source")
    add_protocol_arg(p, "how the images are resized to the training size")
    p.add_argument("--out", required=True, help="translated set (.h5)")
    return p


def translations(folder: Path) -> dict:
    """Stem -> file of every image in ``folder`` (or its images/ subfolder, the GTA5 layout)."""
    if (folder / "images").is_dir():
        folder = folder / "images"
    if not folder.is_dir():
        raise BDLError(f"{folder}: no such folder of translated images")
    return {p.stem: p for p in sorted(folder.rglob("*")) if p.suffix.lower() in SUFFIXES and p.is_file()}


def main(args):
    from bdl.artifacts import H5Writer, names_hash, set_attrs
    from bdl.data.readers import image_size, read_image, resize_pair
    from bdl.data.translated import translated_arrays
    from bdl.training import progress

    spec = dataset_spec(args, "source")
    source = image_set(args, "source", True, spec=spec)
    samples = source.samples
    found = translations(Path(args.images))
    missing = [s for s in samples if Path(s.name).stem not in found]
    if missing:
        raise BDLError(f"{args.images}: no translation of source frame {missing[0].name} "
                       f"({len(missing)} of {len(samples)} frames missing)")
    h, w = source[0]["image"].shape[-2:]
    train_size = (w, h)
    for s in samples:  # every size checked before anything is written
        got, native = image_size(found[Path(s.name).stem]), image_size(s.image)
        if got not in (native, train_size):
            raise BDLError(f"{found[Path(s.name).stem]}: {got[0]}x{got[1]}, but its source frame {s.name} is "
                           f"{native[0]}x{native[1]} and the training size (source.size) {w}x{h}")
    extra = len(found) - len(samples)
    attrs = {"made_by": "import_translated", "translator": f"imported from {args.images}",
             "names_hash": names_hash(s.name for s in samples), "source": json.dumps(vars(spec)),
             "source_size": json.dumps(args.source_size)} | set_attrs("translated")
    with H5Writer(args.out, len(samples), translated_arrays((h, w)), attrs) as out:
        for i, s in enumerate(progress(samples, desc="import")):
            image, _ = resize_pair(read_image(found[Path(s.name).stem]), None, train_size, args.protocol)
            out.write(i, [s.name], images=image[None])
    print(f"wrote {len(samples)} imported translations to {args.out}"
          + (f"; {extra} images in {args.images} are of frames the source listing does not hold" if extra else ""),
          file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser()))
