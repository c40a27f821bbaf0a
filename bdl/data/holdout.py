"""A Cityscapes-layout root whose labelled split is cut into two contiguous parts, made of symbolic links to
the original files (nothing copied): tune on one part (``target.val_split: <first>``), report on the other."""

import os
from pathlib import Path

from bdl.data.readers import DataError, cityscapes_samples


def split_root(root, out, split: str = "val", names=("val_tune", "val_report"), fraction: float = 0.5) -> dict:
    """Link ``root`` into ``out``: every split folder as it is, and ``split``'s frames, in name order, as
    ``names[0]`` (the first ``fraction``) and ``names[1]`` (the rest). Contiguous, not interleaved: the frames
    of a drive a few frames apart are nearly the same picture, so interleaving would tune on the report half.
    Returns name -> frame count. An existing ``out`` is kept if it holds exactly these links, refused otherwise."""
    root, out = Path(root).resolve(), Path(out)
    samples = cityscapes_samples(root, split, with_labels=True)
    for s in samples:
        if not s.label.is_file():
            raise DataError(f"{s.label}: label file not found for image {s.image.name}")
    if not 0 < fraction < 1:
        raise DataError(f"fraction {fraction}: must lie between 0 and 1")
    cut = round(len(samples) * fraction)
    if cut == 0 or cut == len(samples):
        raise DataError(f"{root}: split '{split}' has {len(samples)} frame(s), too few to cut at {fraction}")
    if len(set(names)) != 2 or any(n in {p.name for p in (root / "leftImg8bit").iterdir()} for n in names):
        raise DataError(f"names {list(names)}: give two new split names (the root already has {split})")
    parts = {names[0]: samples[:cut], names[1]: samples[cut:]}
    links = []
    for kind in ("leftImg8bit", "gtFine"):
        links += [(out / kind / f.name, f) for f in sorted((root / kind).iterdir()) if f.is_dir()]
        for name, part in parts.items():
            links += [(out / kind / name / src.parent.name / src.name, src)
                      for src in (s.image if kind == "leftImg8bit" else s.label for s in part)]
    if out.exists() and any(out.iterdir()):  # made before: only if it is exactly these links
        have = {Path(d) / f for d, dirs, files in os.walk(out) for f in dirs + files if (Path(d) / f).is_symlink()}
        same = have == {path for path, _ in links} and all(path.resolve() == t.resolve() for path, t in links)
        if not same:
            raise DataError(f"{out}: exists and holds other files or links; give an empty --out")
        return {name: len(part) for name, part in parts.items()}
    for path, target in links:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)
    return {name: len(part) for name, part in parts.items()}
