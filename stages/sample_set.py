#!/usr/bin/env python
"""Copy an evenly spaced sample of an HDF5 set's frames (every per-frame array, its names and attributes) to a
small HDF5 file: what the viewer shows of a translated set, kept after the set itself is dropped
(keep_translated: false). The sample records the frames' positions in the set (attribute ``indices``).

  python stages/sample_set.py results/demo/round1/translated.h5 --sample 24 --out round1/viewer_sample.h5
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bdl import BDLError  # noqa: E402
from bdl.cli import run, steps  # noqa: E402
from bdl.defaults import default  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("set", help="an HDF5 set with a 'names' array (translated, pseudo-label, cache)")
    p.add_argument("--sample", type=steps, default=default("viewer.sample"), help="frames to keep, evenly spaced")
    p.add_argument("--out", required=True, help="the sample (.h5)")
    return p


def main(args):
    import h5py

    from bdl.artifacts import atomic_path
    from bdl.viz import sample_indices

    path = Path(args.set)
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise BDLError(f"{path}: not an HDF5 set") from None
    with f:
        if "names" not in f:
            raise BDLError(f"{path}: not a set of frames (no 'names' array)")
        n = len(f["names"])
        indices = sample_indices(n, args.sample)
        with atomic_path(args.out) as tmp, h5py.File(tmp, "w") as out:
            for key, data in f.items():
                if len(data) == n:  # per-frame arrays; h5py reads a sorted index list in one call
                    # stored as in the set (chunks, filter, codec attribute): the rows are copied as stored
                    plist = data.id.get_create_plist() if data.chunks else None
                    copy = out.create_dataset(key, (len(indices), *data.shape[1:]), dtype=data.dtype, dcpl=plist)
                    if len(indices):
                        copy[...] = data[list(indices)]
                    copy.attrs.update(dict(data.attrs))
            out.attrs.update(dict(f.attrs))
            out.attrs.update({"sample_of": str(path), "indices": indices, "total": n})
    print(f"{args.out}: {len(indices)} of {n} frames of {path}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser()))
