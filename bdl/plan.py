"""The disk a run writes, known before it starts: from the config, the data set sizes and the frame sizes.

The workflow prints the plan when it starts and refuses a run whose results folder has less free space than
what is still to be written (``runtime.disk_check``); ``python -m bdl.plan --configfile ... --source-frames N
--target-frames M`` prints it for a preset without the data. The caches and the pseudo-label sets are stored
uncompressed (``bdl.artifacts.H5Writer``), so their size is their frames times the bytes of one frame's arrays,
plus a few bytes a frame and a few kB a file. The translated sets' images are compressed without loss
(``bdl.artifacts.IMAGE_CODEC``): what they take depends on the pictures, and the plan assumes ``IMAGE_RATIO`` of
their raw bytes. Checkpoints, logs and pictures are not counted: a ResNet-101 segmenter checkpoint is ~0.2 GB,
two orders of magnitude below a translated GTA5 set. Torch-free.
"""

import argparse
import math
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

# bytes per pixel of each set (bdl/data/cache.py, bdl/loops/inference.py)
RGB_AND_LABEL = 3 + 1  # uint8 image + uint8 trainIds: the source cache
RGB = 3  # the target cache; a translated set's images before compression (its labels are the source's)
PSEUDO = 1  # a pseudo-label set: the uint8 label alone (255: ignored)
PSEUDO_SCRATCH = 1 + 2  # uint8 argmax + float16 max probability, while a classwise pass waits for its thresholds
# Fitted to the sets the tiny workflow and H5Writer write (file size less the arrays' own bytes): 8.4 kB for a
# cache of 12-16 frames, 10.4 kB for a translated set of 16, 50.8 kB for 1,000 frames' names, 124.4 kB for
# 1,000 compressed frames
FILE_OVERHEAD = 8_000  # HDF5 headers and the common attributes
NAME_BYTES = 44  # a frame's name in the names array (its heap entry and index)
CHUNKED_ARRAY = 1_000  # the first node of a compressed array's chunk index
PSEUDO_ATTRS = 2_000  # a pseudo-label set's per-class thresholds and pixel counts, its labellers and data
CHUNK_INDEX = 72  # each compressed frame's entry in that index

# The share of their raw bytes the translated sets' images are assumed to take (``IMAGE_CODEC``, lossless): the
# mean of benchmarks/compression.py on the two real photographs of ../shared/fixtures/fda_gta5_cityscapes_pair at
# 1280x720 (GTA5 0.373, Cityscapes 0.415; 0.394 with the names), rounded up. A translated set holds F's outputs,
# not photographs: the same measurement on the demo's barely trained F's outputs of those frames gave 0.756 (PNG
# 0.77), so a noisy F can take up to twice this; the rehearsal measures the preset's own.
IMAGE_RATIO = 0.40
IMAGE_RATIO_SOURCE = ("delta + zstd on the two real photographs of ../shared/fixtures/fda_gta5_cityscapes_pair "
                      "at 1280x720 (benchmarks/compression.py, docs/benchmarks.md)")


@dataclass(frozen=True)
class Planned:
    path: str
    frames: int
    raw_per_frame: int  # bytes of a frame's uncompressed arrays
    compressed_per_frame: int = 0  # bytes of a frame's compressed arrays before compression
    ratio: float = 1.0  # what compression leaves of them
    kept: bool = True  # False: deleted once every job that reads it is done (keep_translated: false)
    scratch_per_frame: int = 0  # bytes of a frame beside the set while its job runs, deleted when it ends
    attrs: int = 0  # bytes of attributes beyond the common ones

    @property
    def bytes_per_frame(self) -> int:
        compressed = round(self.compressed_per_frame * self.ratio) + CHUNK_INDEX if self.compressed_per_frame else 0
        return self.raw_per_frame + compressed + NAME_BYTES

    @property
    def bytes(self) -> int:
        return (self.frames * self.bytes_per_frame + FILE_OVERHEAD + self.attrs
                + (CHUNKED_ARRAY if self.compressed_per_frame else 0))

    @property
    def scratch(self) -> int:
        return self.frames * self.scratch_per_frame + FILE_OVERHEAD if self.scratch_per_frame else 0


def disk_plan(cfg: dict, counts: dict, frames: dict, ratio: float = IMAGE_RATIO) -> list[Planned]:
    """The sets a run writes. ``counts``: source, target_train frames; ``frames``: domain -> (w, h) as trained;
    ``ratio``: what compression leaves of the translated images (``IMAGE_RATIO``)."""
    results, rounds, steps = cfg["results"], cfg["rounds"], cfg["ssl_steps"]
    (sw, sh), (tw, th) = frames["source"], frames["target"]
    n_source, n_target = counts["source"], counts["target_train"]
    classwise = cfg.get("pseudo_label", {}).get("mode", _default_mode()) == "classwise"
    plan = []
    if cfg["source"]["cache"]:
        plan.append(Planned(f"{results}/cache/source.h5", n_source, sw * sh * RGB_AND_LABEL))
    if cfg["target"]["cache"]:
        plan.append(Planned(f"{results}/cache/target.h5", n_target, tw * th * RGB))
    seeds = cfg.get("seeds") or [cfg.get("seed", 0)]
    # several seeds: each runs the loop in its own folder (the caches are shared)
    for run in [f"{results}/seed{s}" for s in seeds] if len(seeds) > 1 else [results]:
        for k in range(1, rounds + 1):
            plan.append(Planned(f"{run}/round{k}/translated.h5", n_source, 0, sw * sh * RGB, ratio,
                                kept=cfg["keep_translated"]))
            plan += [Planned(f"{run}/round{k}/ssl{n}/pseudo.h5", n_target, tw * th * PSEUDO,
                             scratch_per_frame=tw * th * PSEUDO_SCRATCH if classwise else 0, attrs=PSEUDO_ATTRS)
                     for n in range(1, steps + 1)]
    return plan


def _default_mode() -> str:
    from bdl.defaults import default

    return default("pseudo_label.mode")


def peak_bytes(plan: list[Planned]) -> int:
    """Most bytes on disk at once, an upper bound: every kept set, plus the largest dropped one of each run
    (round k's translated set goes before round k+1's is written, since F_{k+1} waits for the last model of
    round k), plus the largest scratch file of each run (a run's pseudo-labelling jobs wait for the model
    before them); the runs of several seeds may be at the same point at once."""
    dropped, scratch = {}, {}
    for p in plan:
        run = p.path.rsplit("/round", 1)[0]  # <run>/round<k>/...; a cache is a run of its own
        if not p.kept:
            dropped[run] = max(dropped.get(run, 0), p.bytes)
        scratch[run] = max(scratch.get(run, 0), p.scratch)
    return sum(p.bytes for p in plan if p.kept) + sum(dropped.values()) + sum(scratch.values())


def end_bytes(plan: list[Planned]) -> int:
    """Bytes on disk when the run is done: the kept sets."""
    return sum(p.bytes for p in plan if p.kept)


def stored_ratio(path, key: str = "images") -> float:
    """What compression left of array ``key`` of the set at ``path``: its stored bytes over its raw bytes."""
    import h5py

    with h5py.File(path, "r") as f:
        d = f[key]
        return d.id.get_storage_size() / max(d.size * d.dtype.itemsize, 1)


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
        if items[0].compressed_per_frame:
            text += f" (images at {items[0].ratio:.2f} of raw, assumed)"
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


# --- time: each training job's hours at a rehearsal's rates, and the submissions its time limit makes it need ---

# Seconds of a submission that train nothing besides runtime.stop_before_limit: the job's start (two Snakemake
# processes, the stage's imports, the model and the checkpoint loaded).
JOB_START_S = 120


def training_jobs(cfg: dict) -> dict:
    """Training stage -> (jobs, steps each) of a config (``rounds``, ``ssl_steps``, ``oracle``, the seeds)."""
    runs = max(len(cfg.get("seeds") or []), 1)
    its, k, n = cfg["segmenter"]["iterations"], cfg["rounds"], cfg["ssl_steps"]
    jobs = {"train_m0": (runs, its["source"]), "train_translator": (runs * k, cfg["translator"]["iterations"]),
            "train_adversarial": (runs * k, its["adversarial"])}
    if n:
        jobs["train_ssl"] = (runs * k * n, its["ssl"])
    if cfg.get("oracle"):
        jobs["train_oracle"] = (1, its["oracle"])
    return jobs


def read_rates(path) -> dict:
    """A rehearsal's rates.json (benchmarks/rehearse.py): ``{"device": ..., "stages": {stage: {"seconds": s,
    "unit": "step"}}}``."""
    import json

    try:
        rates = json.loads(Path(path).read_text())
        return {"device": str(rates["device"]), "stages": {k: float(v["seconds"]) for k, v in rates["stages"].items()
                                                          if v.get("unit") == "step"}}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a rehearsal's rates.json ({exc})") from None


def profile_limits(profile) -> dict:
    """Training stage -> its time limit in minutes (None: none) from a Snakemake profile folder's config.yaml
    (``runtime`` in set-resources, else default-resources)."""
    import yaml

    path = Path(profile) / "config.yaml" if Path(profile).is_dir() else Path(profile)
    data = yaml.safe_load(path.read_text()) or {}
    default = data.get("default-resources") or {}
    return {stage: {**default, **((data.get("set-resources") or {}).get(stage) or {})}.get("runtime")
            for stage in ("train_m0", "train_oracle", "train_translator", "train_adversarial", "train_ssl")}


def time_lines(cfg: dict, rates: dict, limits: dict) -> list[str]:
    """Per training stage: jobs, steps, hours a job at the rates, and submissions a job needs under its time limit
    (``limits``: stage -> minutes), each submission training until ``runtime.stop_before_limit`` before it."""
    lead = cfg["runtime"]["stop_before_limit"]
    lines = [f"time plan at the rates measured on {rates['device']}:"]
    total = 0.0
    for stage, (jobs, steps) in training_jobs(cfg).items():
        rate = rates["stages"].get(stage)
        if rate is None:
            lines.append(f"  {stage}: {jobs} x {steps:,} steps, no rate measured")
            continue
        hours = steps * rate / 3600
        total += jobs * hours
        m = float(limits.get(stage) or 0)  # the time limit in minutes, 0: none
        if m and lead:
            usable = m * 60 - lead - JOB_START_S
            need = ("no step after the job's start and the stop's lead" if usable <= 0
                    else _submissions(max(math.ceil(hours * 3600 / usable), 1)))
            limit = (f"limit {m / 60:g} h" if m >= 120 else f"limit {m:g} min") + f", stop {lead} s before it"
        elif m:
            need, limit = ("1 submission" if hours * 60 <= m else "more than its limit, and "
                           "runtime.stop_before_limit is 0: killed at its limit"), f"limit {m:g} min"
        else:
            need, limit = _submissions(1), "no time limit"
        lines.append(f"  {stage}: {jobs} x {steps:,} steps at {rate:.3f} s/step = {hours:.1f} h a job; {limit}: "
                     f"{need} a job")
    lines.append(f"  training in all: {total:.1f} h ({total / 24:.1f} days) on one such device per job")
    return lines


def _submissions(n: int) -> str:
    return f"{n} submission" + ("s" if n > 1 else "")


def get_args_parser():
    p = argparse.ArgumentParser(
        prog="python -m bdl.plan", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The disk plan of a config, without its data: every set the run writes, its bytes, when it is "
                    "deleted, the peak and what is left at the end.\n\n  python -m bdl.plan --configfile "
                    "config/paper_gta5_resnet101.yaml --source-frames 24966 --target-frames 2975")
    p.add_argument("--configfile", required=True, help="the run's config (keys it leaves out: their defaults)")
    p.add_argument("--source-frames", type=int, required=True, help="frames of the source listing (GTA5: 24966)")
    p.add_argument("--target-frames", type=int, required=True,
                   help="frames of the target train split (Cityscapes train: 2975)")
    p.add_argument("--source-size", type=int, nargs=2, metavar=("W", "H"), default=None,
                   help="the source frames' size where the config's source.size is null (GTA5: 1914 1052)")
    p.add_argument("--target-size", type=int, nargs=2, metavar=("W", "H"), default=None,
                   help="the target frames' size where the config's target.size is null (Cityscapes: 2048 1024)")
    p.add_argument("--image-ratio", type=float, default=IMAGE_RATIO,
                   help=f"what compression leaves of the translated images (default {IMAGE_RATIO}: "
                        f"{IMAGE_RATIO_SOURCE})")
    p.add_argument("--rates", help="a rehearsal's rates.json (benchmarks/rehearse.py): also print each training "
                                   "stage's hours and the submissions it needs under --profile's time limits")
    p.add_argument("--profile", help="the Snakemake profile the run is submitted with (folder or its config.yaml): "
                                     "the training jobs' runtime (time limit), for the submissions")
    return p


def plan_lines(cfg: dict, counts: dict, frames: dict, ratio: float = IMAGE_RATIO) -> list[str]:
    """The plan as printed lines, the last ``total written: N GB, peak: N GB``."""
    plan = disk_plan(cfg, counts, frames, ratio)
    (sw, sh), (tw, th) = frames["source"], frames["target"]
    width = max((len(p.path) for p in plan), default=10)
    lines = [f"source: {counts['source']:,} frames at {sw}x{sh}; target train: {counts['target_train']:,} frames "
             f"at {tw}x{th}",
             f"translated images assumed at {ratio:.2f} of their raw bytes"
             + (f": {IMAGE_RATIO_SOURCE}" if ratio == IMAGE_RATIO else " (--image-ratio)"),
             f"{'set':{width}}  {'frames':>7}  {'per frame':>10}  {'bytes':>9}  at the end"]
    for p in plan:
        end = "kept" if p.kept else "deleted when its round is done (keep_translated: false)"
        lines.append(f"{p.path:{width}}  {p.frames:>7,}  {p.bytes_per_frame / 1e6:>7.3f} MB  {gb(p.bytes):>9}  {end}")
        if p.scratch:
            lines.append(f"{'  + scratch while it is made':{width}}  {p.frames:>7,}  "
                         f"{p.scratch_per_frame / 1e6:>7.3f} MB  {gb(p.scratch):>9}  deleted when the job ends "
                         "(classwise thresholds wait for the pass)")
    lines += [f"on disk at the end: {gb(end_bytes(plan))}",
              f"total written: {gb(sum(p.bytes for p in plan))}, peak: {gb(peak_bytes(plan))}"]
    return lines


def main(argv=None) -> int:
    import yaml

    from bdl.defaults import merged, schema_defaults

    args = get_args_parser().parse_args(argv)
    try:
        user = yaml.safe_load(Path(args.configfile).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        print(f"error: {args.configfile}: not a readable config ({str(exc).splitlines()[0]})", file=sys.stderr)
        return 1
    cfg = merged(schema_defaults(), user)
    frames = {}
    for domain in ("source", "target"):
        size = cfg[domain]["size"] or getattr(args, f"{domain}_size")
        if size is None:
            print(f"error: config key '{domain}.size' is null (frames as stored): give --{domain}-size W H",
                  file=sys.stderr)
            return 1
        frames[domain] = tuple(size)
    counts = {"source": args.source_frames, "target_train": args.target_frames}
    print(f"disk plan of {args.configfile} (results: {cfg['results']})")
    print("\n".join(plan_lines(cfg, counts, frames, args.image_ratio)))
    if args.rates:
        try:
            rates = read_rates(args.rates)
            limits = profile_limits(args.profile) if args.profile else {}
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print("\n".join(time_lines(cfg, rates, limits)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
