"""The disk a run writes, known before it starts: from the config, the data set sizes and the frame sizes.

The workflow prints the plan when it starts and refuses a run whose results folder has less free space than
what is still to be written (``runtime.disk_check``). Every figure is the HDF5 sets' own arithmetic: they
are stored uncompressed (``bdl.artifacts.H5Writer``), so a set's size is its frames times the bytes of one
frame's arrays, plus a few kB. Checkpoints, logs and pictures are not counted: a ResNet-101 segmenter
checkpoint is ~0.2 GB, two orders of magnitude below a translated GTA5 set. Torch-free.
"""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

# bytes per pixel of each set (bdl/data/cache.py, bdl/loops/inference.py)
RGB_AND_LABEL = 3 + 1  # uint8 image + uint8 trainIds: the source cache, a translated set
RGB = 3  # the target cache
PSEUDO = 1 + 2  # uint8 argmax + float16 max probability
FILE_OVERHEAD = 10_000  # HDF5 headers, attributes and the names' heap: 8-10 kB measured on the tiny sets


@dataclass(frozen=True)
class Planned:
    path: str
    frames: int
    bytes_per_frame: int
    kept: bool = True  # False: deleted once every job that reads it is done (keep_translated: false)

    @property
    def bytes(self) -> int:
        return self.frames * self.bytes_per_frame + FILE_OVERHEAD


def disk_plan(cfg: dict, counts: dict, frames: dict) -> list[Planned]:
    """The sets a run writes. ``counts``: source, target_train frames; ``frames``: domain -> (w, h) as trained."""
    results, rounds, steps = cfg["results"], cfg["rounds"], cfg["ssl_steps"]
    (sw, sh), (tw, th) = frames["source"], frames["target"]
    n_source, n_target = counts["source"], counts["target_train"]
    plan = []
    if cfg["source"]["cache"]:
        plan.append(Planned(f"{results}/cache/source.h5", n_source, sw * sh * RGB_AND_LABEL))
    if cfg["target"]["cache"]:
        plan.append(Planned(f"{results}/cache/target.h5", n_target, tw * th * RGB))
    seeds = cfg.get("seeds") or [cfg.get("seed", 0)]
    # several seeds: each runs the loop in its own folder (the caches are shared)
    for run in [f"{results}/seed{s}" for s in seeds] if len(seeds) > 1 else [results]:
        for k in range(1, rounds + 1):
            plan.append(Planned(f"{run}/round{k}/translated.h5", n_source, sw * sh * RGB_AND_LABEL,
                                kept=cfg["keep_translated"]))
            plan += [Planned(f"{run}/round{k}/ssl{n}/pseudo.h5", n_target, tw * th * PSEUDO)
                     for n in range(1, steps + 1)]
    return plan


def peak_bytes(plan: list[Planned]) -> int:
    """Most bytes on disk at once: every kept set, plus the largest dropped one of each run (round k's
    translated set goes before round k+1's is written, since F_{k+1} waits for the last model of round k;
    the runs of several seeds may be at the same point at once)."""
    dropped = {}
    for p in plan:
        if not p.kept:
            run = str(Path(p.path).parents[1])  # <run>/round<k>/translated.h5
            dropped[run] = max(dropped.get(run, 0), p.bytes)
    return sum(p.bytes for p in plan if p.kept) + sum(dropped.values())


def still_to_write(plan: list[Planned]) -> int:
    """Peak bytes less what is already on disk (a resumed run needs only the rest)."""
    present = sum(os.path.getsize(p.path) for p in plan if os.path.isfile(p.path))
    return max(peak_bytes(plan) - present, 0)


def free_bytes(folder) -> int:
    """Free space of the file system that holds ``folder`` (or would: its nearest existing parent).
    BDL_TEST_FREE_BYTES stands in for it in tests."""
    if os.environ.get("BDL_TEST_FREE_BYTES"):
        return int(os.environ["BDL_TEST_FREE_BYTES"])
    path = Path(folder).absolute()
    nearest = next(p for p in (path, *path.parents) if p.exists())
    return shutil.disk_usage(nearest).free


def gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def describe(plan: list[Planned]) -> str:
    """What the plan holds, by kind: 'target cache 4.7 GB, translated sets 2 x 92.0 GB (dropped ...), ...'."""
    kinds = {}
    for p in plan:
        name = Path(p.path).name
        kind = {"source.h5": "source cache", "target.h5": "target cache", "translated.h5": "translated sets",
                "pseudo.h5": "pseudo-label sets"}[name]
        kinds.setdefault(kind, []).append(p)
    parts = []
    for kind, items in kinds.items():
        each = items[0].bytes
        text = f"{kind} {len(items)} x {gb(each)}" if len(items) > 1 else f"{kind} {gb(each)}"
        if not items[0].kept:
            text += " (each dropped when its round is done)"
        parts.append(text)
    return ", ".join(parts)


def disk_check(plan: list[Planned], results, check: bool) -> tuple[str, str | None]:
    """(the plan's line to print, a refusal line or None)."""
    total, peak, needed, free = (sum(p.bytes for p in plan), peak_bytes(plan), still_to_write(plan),
                                 free_bytes(results))
    line = (f"disk plan for '{results}': {gb(total)} of data sets written, {gb(peak)} at most on disk at once "
            f"({describe(plan) or 'no sets'}); {gb(needed)} still to write, {gb(free)} free")
    if check and needed > free:
        return line, (f"the run needs {gb(needed)} more in '{results}' and its file system has {gb(free)} free "
                      f"({describe(plan)}); make room, set keep_translated: false to drop each translated set "
                      f"after its round, or set runtime.disk_check: false to start anyway")
    return line, None
