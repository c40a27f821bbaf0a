#!/usr/bin/env python
"""Rehearse a preset at its real resolutions before a multi-day run: its whole DAG for a few steps on a
generated pair in the real layouts, then the time, memory and disk of the full run, extrapolated.

  python benchmarks/rehearse.py --configfile config/paper_gta5_resnet101.yaml
  python benchmarks/rehearse.py --configfile config/paper_gta5_resnet101.yaml --steps 2 --frames 6 --out /tmp/r
  python benchmarks/rehearse.py --configfile ... --report-only --gpu-proof DIR   # the table with a GPU's rates

What it changes in the preset, and nothing else: the two roots (a generated pair: source frames at the
dataset's native size in the GTA5 layout, target frames at 2048x1024 in the Cityscapes layout), the results
folder, every iteration count (--steps), log_every 1, and, unless ImageNet's file is cached, segmenter.weights
(a stand-in trunk: random weights, BatchNorm statistics measured on the generated frames) with the segmenter's
learning rate a hundredth of the preset's (the weights and the rate change no figure below). On a CPU:
runtime.gpu 0 and --threads.
Then it runs `snakemake` on that config (every rule of the preset, K and N as set) and reads back each job's
seconds per step or per frame (the progress bar's final rate in its log), its peak memory (snakemake's
benchmark max_rss; the stage's own peak CUDA line on a GPU) and the bytes per frame of every set it wrote.
Last, evaluate and pseudo_label run on 8 and on 32 frames, to show that their peak does not grow with the
data set. The table extrapolates to the data set sizes of the real datasets and the preset's step counts.
Its last two columns are one GPU's seconds per step (or frame) and the days each stage then takes, read from
a GPU proof's summary (--gpu-proof DIR, benchmarks/gpu_proof.sh): the same stage's step at the preset's
shapes, in the compute format the preset runs in there; 'not run' until a proof has run on a GPU.
"""

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# frames of the real datasets (GTA5; SYNTHIA RAND-CITYSCAPES; Cityscapes train / val) and their native sizes
FULL_FRAMES = {"gta5": 24966, "synthia": 9400}
NATIVE_SIZE = {"gta5": (1914, 1052), "synthia": (1280, 760)}
CITYSCAPES = {"train": 2975, "val": 500, "size": (2048, 1024)}


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configfile", required=True, help="the preset to rehearse")
    p.add_argument("--out", default="rehearsal", help="folder for the generated pair, the run and the table")
    p.add_argument("--steps", type=int, default=2, help="iterations of every training stage")
    p.add_argument("--frames", type=int, default=6, help="source, target train and target val frames")
    p.add_argument("--memory-frames", type=int, nargs=2, default=(8, 32),
                   help="val / train frame counts for the flat-memory check of evaluate and pseudo_label")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 2, help="snakemake --cores, and each job's threads")
    p.add_argument("--device", default="auto")
    p.add_argument("--gpu-proof", help="a GPU proof's results folder (its summary.json): one GPU's rate per stage")
    p.add_argument("--report-only", action="store_true",
                   help="only read back a finished rehearsal in --out and print its table again")
    return p


def generate_pair(out: Path, preset: dict, frames: int, memory_frames) -> dict:
    """Source in the GTA5 layout at the source dataset's native size; target at Cityscapes' size, with extra
    val/train splits of the flat-memory check (memcheck<n>)."""
    from bdl.data.demo import generate

    fmt = preset["source"]["format"]
    width, height = NATIVE_SIZE.get(fmt, NATIVE_SIZE["gta5"])
    if not (out / "source").is_dir():
        generate(out / "gen_source", frames, 0, 0, width=width, height=height, seed=1)
        (out / "gen_source" / "source").rename(out / "source")
    if not (out / "target").is_dir():
        w, h = CITYSCAPES["size"]
        generate(out / "gen_target", 0, frames, frames, width=w, height=h, seed=2)
        (out / "gen_target" / "target").rename(out / "target")
        extra = max(memory_frames)
        generate(out / "gen_memory", 0, 0, extra, width=w, height=h, seed=3)
        for n in memory_frames:
            for kind in ("leftImg8bit", "gtFine"):
                src = out / "gen_memory" / "target" / kind / "val" / "demoval"
                dst = out / "target" / kind / f"memcheck{n}" / "demoval"
                dst.mkdir(parents=True)
                for f in sorted(src.iterdir()):
                    index = int(f.name.split("_")[1])
                    if index < n:
                        shutil.copy(f, dst / f.name)
    for folder in ("gen_source", "gen_target", "gen_memory"):
        shutil.rmtree(out / folder, ignore_errors=True)
    return {"source": (width, height), "source_format": fmt}


def rehearsal_config(preset: dict, out: Path, args) -> dict:
    from bdl.defaults import default
    from bdl.hub import imagenet_file

    cfg = yaml.safe_load(yaml.safe_dump(preset))
    cfg["results"] = str(out / "results")
    cfg["device"] = args.device
    cfg["source"] |= {"format": "gta5", "root": str(out / "source"), "list_file": None}
    cfg["target"] |= {"format": "cityscapes", "root": str(out / "target")}
    seg = cfg.setdefault("segmenter", {})
    seg["iterations"] = {mode: args.steps for mode in ("source", "adversarial", "ssl", "oracle")}
    backbone, weights = seg.get("backbone", default("segmenter.backbone")), seg.get("weights")
    cached = imagenet_file(backbone).is_file() if weights == "imagenet" else Path(str(weights)).is_file()
    if weights not in (None, "none") and not cached:
        # the preset's starting weights are not on this machine (no download here): a stand-in trunk
        frames = sorted((out / "source" / "images").glob("*.png")) + sorted((out / "target").rglob("*_leftImg8bit.png"))
        seg["weights"] = stand_in_weights(backbone, out / f"stand_in_{backbone}.pth", frames[:8])
        # a random trunk under the preset's rates went from a loss of 12 to 222 in one step, then NaN: a
        # hundredth keeps it finite, and no figure of the rehearsal depends on the rate
        seg["lr"] = seg.get("lr", default("segmenter.lr")) / 100
    tr = cfg.setdefault("translator", {})
    tr["iterations"], tr["decay_start"] = args.steps, 0
    rt = cfg.setdefault("runtime", {})
    rt |= {"threads": args.cores, "log_every": 1, "checkpoint_every": 0}
    if args.device == "cpu" or not _cuda():
        rt["gpu"] = 0
    return cfg


def stand_in_weights(backbone: str, path: Path, frames: list[Path]) -> str:
    """A trunk file in torchvision's format when ImageNet's cannot be had: random weights whose BatchNorm
    statistics are measured, through our own dilated trunk, on the rehearsal's own frames. A frozen-BN trunk
    straight from random init multiplies its activations at every block (the rehearsal's first try: a source
    loss of 1e5 after one step, then NaN; statistics measured on noise still gave 600 on these frames);
    with measured statistics the numbers stay finite, and time, memory and disk are those of ImageNet's."""
    import numpy as np
    import torch
    from PIL import Image

    from bdl.models import build_segmenter

    if backbone.startswith("vgg"):
        return "none"  # no BatchNorm: a random init stays finite
    if not path.is_file():
        torch.manual_seed(0)
        model = build_segmenter(backbone, weights="none")
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None  # a plain average over the calibration batches
                m.reset_running_stats()
        model.backbone.train()
        with torch.no_grad():
            for frame in frames:
                with Image.open(frame) as img:
                    x = np.asarray(img.convert("RGB").resize((640, 352)), dtype=np.float32) / 255
                model.backbone(model.normalize(torch.from_numpy(x).permute(2, 0, 1)[None]))
        torch.save(model.backbone.state_dict(), path)
    return str(path)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def bar_seconds(log: Path, items: int | None = None):
    """Seconds per item from a stage log's last finished progress bar (``n/n [mm:ss<..., 1.23s/it, ...]``): the
    bar's own rate for training steps; for inference, whose bar counts batches, its elapsed time over the
    ``items`` (frames) it went through."""
    text = log.read_text(errors="replace") if log.is_file() else ""
    bars = [b for b in re.findall(r"(\d+)/(\d+) \[([\d:]+)<[^\]]*\]", text) if b[0] == b[1]]
    if not bars:
        return None
    n, _, elapsed = bars[-1]
    seconds = sum(int(part) * 60 ** i for i, part in enumerate(reversed(elapsed.split(":"))))
    if items is not None:
        return seconds / items
    rate = re.findall(r"\d+/\d+ \[[\d:]+<[^,\]]*,\s*([\d.]+)(s/it|it/s)", text)
    if rate:
        value, unit = rate[-1]
        return float(value) if unit == "s/it" else 1 / float(value)
    return seconds / int(n)


def cuda_peak(log: Path):
    match = re.findall(r"peak CUDA memory: allocated ([\d.]+) GiB, reserved ([\d.]+) GiB",
                       log.read_text(errors="replace") if log.is_file() else "")
    return (float(match[-1][0]), float(match[-1][1])) if match else None


def max_rss_gib(bench: Path):
    if not bench.is_file():
        return None
    with open(bench) as fh:
        row = next(csv.DictReader(fh, delimiter="\t"))
    try:
        return float(row["max_rss"]) / 1024
    except (KeyError, ValueError):
        return None


def jobs_of(cfg: dict):
    """Every model job of the run: its stage, log, benchmark record, unit of work and the set it writes."""
    R, K, N = Path(cfg["results"]), cfg["rounds"], cfg["ssl_steps"]
    if cfg["oracle"]:
        yield {"stage": "train_oracle", "log": R / "logs/oracle/train.log", "unit": "step", "mode": "oracle",
               "bench": R / "benchmarks/oracle/train.tsv"}
    yield {"stage": "train_m0", "log": R / "logs/m0/train.log", "bench": R / "benchmarks/m0/train.tsv",
           "unit": "step", "mode": "source"}
    for k in range(1, K + 1):
        yield {"stage": "train_translator", "log": R / f"logs/round{k}/translator_train.log",
               "bench": R / f"benchmarks/round{k}/translator_train.tsv", "unit": "step", "mode": "translator"}
        yield {"stage": "translate", "log": R / f"logs/round{k}/translate.log", "unit": "source frame",
               "bench": R / f"benchmarks/round{k}/translate.tsv", "set": R / f"round{k}/translated.h5"}
        yield {"stage": "train_adversarial", "log": R / f"logs/round{k}/adv_train.log",
               "bench": R / f"benchmarks/round{k}/adv_train.tsv", "unit": "step", "mode": "adversarial"}
        for n in range(1, N + 1):
            yield {"stage": "pseudo_label", "log": R / f"logs/round{k}/ssl{n}_pseudo.log",
                   "bench": R / f"benchmarks/round{k}/ssl{n}_pseudo.tsv", "unit": "target frame",
                   "set": R / f"round{k}/ssl{n}/pseudo.h5"}
            yield {"stage": "train_ssl", "log": R / f"logs/round{k}/ssl{n}_train.log",
                   "bench": R / f"benchmarks/round{k}/ssl{n}_train.tsv", "unit": "step", "mode": "ssl"}
    steps = [f"round{k}/{m}" for k in range(1, K + 1) for m in ["adv"] + [f"ssl{n}" for n in range(1, N + 1)]]
    for model in ["m0"] + (["oracle"] if cfg["oracle"] else []) + steps:
        yield {"stage": "evaluate", "log": R / f"logs/{model}/evaluate.log",
               "bench": R / f"benchmarks/{model}/evaluate.tsv", "unit": "val frame"}


def full_work(job: dict, cfg: dict, n_source: int) -> int:
    if job["unit"] == "step":
        return cfg["translator"]["iterations"] if job["mode"] == "translator" else \
            cfg["segmenter"]["iterations"][job["mode"]]
    return {"source frame": n_source, "target frame": CITYSCAPES["train"], "val frame": CITYSCAPES["val"]}[job["unit"]]


# the GPU proof's figure for each stage's unit of work (benchmarks/gpu_check.py; evaluate: its own piece)
GPU_FIGURES = {"train_m0": "source_step", "train_translator": "translator_step", "translate": "translate_frame",
               "train_adversarial": "adversarial_step", "pseudo_label": "pseudo_label_frame", "train_ssl": "ssl_step"}


def gpu_rates(folder, paper: dict) -> tuple[str, dict]:
    """(what the GPU columns are headed, stage -> seconds per unit) from a GPU proof's summary.json; the mode
    is the preset's (bf16 + channels_last where runtime.bf16 is auto or true, else fp32). A proof that ran on
    a CPU, or at toy sizes, gives no rate: those are not a GPU's."""
    import json

    if not folder:
        return "GPU (proof not run)", {}
    summary = json.loads((Path(folder) / "summary.json").read_text())
    if summary.get("tiny") or not str(summary.get("device", "")).startswith("cuda"):
        return f"GPU (the proof in {folder} is a {summary.get('device')} check at toy sizes)", {}
    pieces = summary["pieces"]
    name = pieces.get("env", {}).get("facts", {}).get("gpu", "GPU")
    mode = "fp32" if paper["runtime"]["bf16"] is False else "bf16+channels_last"
    rates = {stage: f["seconds"] for f in pieces.get("gpu_check", {}).get("figures", []) for stage, key in
             GPU_FIGURES.items() if f["figure"] == key and f["mode"] == mode}
    ev = pieces.get("evaluate", {})
    if ev.get("seconds_per_frame") and ev.get("frame_size") == list(CITYSCAPES["size"]):
        rates["evaluate"] = ev["seconds_per_frame"]
    return f"one {name}, {mode}", rates


def flat_memory(cfg_path: Path, cfg: dict, memory_frames) -> list[str]:
    """Peak RSS of evaluate and pseudo_label on n and on m frames, each in its own process."""
    from measure import stage_peak_rss_mib

    R = Path(cfg["results"])
    target = ["--target-format", "cityscapes", "--target-root", cfg["target"]["root"],
              "--target-size", *map(str, cfg["target"]["size"])]
    common = ["--threads", str(cfg["runtime"]["threads"]), "--device", cfg["device"]]
    lines = []
    for n in memory_frames:
        split = f"memcheck{n}"
        t0 = time.perf_counter()
        ev = stage_peak_rss_mib(REPO / "stages/evaluate.py", "--segmenter", R / "m0/segmenter.pt", *target,
                                "--split", split, *common, "--out", R / f"memcheck/eval{n}.json")
        t1 = time.perf_counter()
        pl = stage_peak_rss_mib(REPO / "stages/pseudo_label.py", "--segmenter", R / "m0/segmenter.pt", *target,
                                "--target-split", split, "--mode", cfg["pseudo_label"]["mode"],
                                "--threshold", str(cfg["pseudo_label"]["threshold"]),
                                "--batch-size", str(cfg["runtime"]["inference_batch_size"]), *common,
                                "--out", R / f"memcheck/pseudo{n}.h5")
        lines.append(f"| {n} | {ev / 1024:.2f} GiB ({t1 - t0:.0f} s) | {pl / 1024:.2f} GiB "
                     f"({time.perf_counter() - t1:.0f} s) |")
    return lines


def memory_rows(out: Path, cfg_path: Path, cfg: dict, memory_frames) -> list[str]:
    """The flat-memory rows, measured once per --out folder (they take minutes) and kept."""
    kept = out / "memory_rows.md"
    if not kept.is_file():
        kept.write_text("\n".join(flat_memory(cfg_path, cfg, memory_frames)) + "\n")
    return kept.read_text().splitlines()


def main(args):
    from bdl.defaults import merged, schema_defaults
    from bdl.plan import IMAGE_RATIO, IMAGE_RATIO_SOURCE, disk_plan, gb, peak_bytes, stored_ratio

    preset = yaml.safe_load(Path(args.configfile).read_text())
    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    pair = generate_pair(out, preset, args.frames, args.memory_frames)
    cfg_path = out / "rehearsal.yaml"
    if not args.report_only:
        cfg = rehearsal_config(preset, out, args)
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    print(f"rehearsing {args.configfile}: {args.frames} frames a split, {args.steps} steps a training stage, "
          f"source {pair['source'][0]}x{pair['source'][1]}, target {CITYSCAPES['size'][0]}x{CITYSCAPES['size'][1]};"
          f" log: {out / 'snakemake.log'}", flush=True)
    if args.report_only:
        cfg = yaml.safe_load(cfg_path.read_text())  # the run's own config, not one made again
    else:
        with open(out / "snakemake.log", "w") as log:
            proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(args.cores), "--configfile",
                                   str(cfg_path)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            raise SystemExit(f"the rehearsal's snakemake run failed: see {out / 'snakemake.log'}")
    # a rerun on the same --out finds the run done (snakemake has nothing to do): it keeps the first timing
    timing = out / "dag_seconds.txt"
    if not timing.is_file():
        timing.write_text(f"{time.perf_counter() - started:.0f}\n")
    dag_seconds = float(timing.read_text())

    # the config the rehearsal ran with (where its files are), and the preset's own (what the full run does)
    full_cfg, paper = merged(schema_defaults(), cfg), merged(schema_defaults(), preset)
    n_source = FULL_FRAMES.get(pair["source_format"], FULL_FRAMES["gta5"])
    rows, by_stage = [], {}
    for job in list(jobs_of(full_cfg)):
        rate = bar_seconds(job["log"], None if job["unit"] == "step" else args.frames)
        rss, peak = max_rss_gib(job["bench"]), cuda_peak(job["log"])
        entry = by_stage.setdefault(job["stage"], {"jobs": 0, "rates": [], "rss": [], "cuda": [], "unit": job["unit"],
                                                   "work": full_work(job, paper, n_source), "bytes": []})
        entry["jobs"] += 1
        entry["rates"] += [rate] if rate else []
        entry["rss"] += [rss] if rss else []
        entry["cuda"] += [peak] if peak else []
        if job.get("set") and Path(job["set"]).is_file():
            frames = args.frames
            entry["bytes"].append(os.path.getsize(job["set"]) / frames)
    gpu_label, gpu = gpu_rates(args.gpu_proof, paper)
    total_hours, gpu_days = 0.0, 0.0
    for stage, e in by_stage.items():
        rate = max(e["rates"]) if e["rates"] else float("nan")
        hours = e["jobs"] * e["work"] * rate / 3600
        total_hours += hours if hours == hours else 0
        memory = (f"{max(a for a, _ in e['cuda']):.2f} / {max(r for _, r in e['cuda']):.2f} GiB CUDA"
                  if e["cuda"] else (f"{max(e['rss']):.2f} GiB RSS" if e["rss"] else "?"))
        per_frame = f"{max(e['bytes']) / 1e6:.2f} MB" if e["bytes"] else ""
        if stage in gpu:
            days = e["jobs"] * e["work"] * gpu[stage] / 86400
            gpu_days += days
            on_gpu = f"{gpu[stage]:.3f} s/{e['unit']} | {days:.1f} d"
        else:  # no proof (or no GPU figure of this stage in it, as the oracle's)
            on_gpu = "not measured | " if gpu else "not run | "
        rows.append(f"| {stage} | {e['jobs']} | {rate:.2f} s/{e['unit']} | {memory} | {per_frame} | "
                    f"{e['work']:,} {e['unit']}s | {hours:.1f} h | {on_gpu} |")

    counts = {"source": n_source, "target_train": CITYSCAPES["train"]}
    frames = {"source": tuple(paper["source"]["size"] or pair["source"]),
              "target": tuple(paper["target"]["size"] or CITYSCAPES["size"])}
    full_plan = disk_plan(paper | {"results": "<results>"}, counts, frames)
    # Compressed images take what their content allows: the rehearsal's translated sets (generated frames through a
    # 2-step F) say little of a trained F's outputs. So the plan's arithmetic is checked at the ratio measured on
    # those sets (every other byte is exact), and the full run's figures keep the plan's assumed ratio.
    translated = [p.path for p in disk_plan(full_cfg, {"source": 1, "target_train": 1}, frames)
                  if p.compressed_per_frame and os.path.isfile(p.path)]
    ratio = max((stored_ratio(path) for path in translated), default=IMAGE_RATIO)
    small = {"source": args.frames, "target_train": args.frames}
    rehearsal_plan = disk_plan(full_cfg, small, frames, ratio)
    disk_rows = []
    for planned, small_set in zip(full_plan, rehearsal_plan):
        measured = (os.path.getsize(small_set.path) / small_set.frames if os.path.isfile(small_set.path)
                    else float("nan"))
        planned_mb = small_set.bytes / small_set.frames / 1e6
        off = 100 * (measured * small_set.frames / small_set.bytes - 1)
        disk_rows.append(f"| {planned.path.replace('<results>/', '')} | {measured / 1e6:.3f} MB | {planned_mb:.3f} MB"
                         f" | {off:+.1f}% | {gb(planned.bytes)}{'' if planned.kept else ' (dropped after its round)'}"
                         " |")
    at_measured = disk_plan(paper | {"results": "<results>"}, counts, frames, ratio)
    ratio_line = (f"Translated images: {ratio:.3f} of their raw bytes on the rehearsal's sets (generated frames "
                  f"through F after {args.steps} steps); the plan per frame above uses it, so the difference column "
                  f"checks the plan's arithmetic. The full-run column assumes {IMAGE_RATIO} ({IMAGE_RATIO_SOURCE}); at "
                  f"{ratio:.3f} the full run would write {gb(sum(p.bytes for p in at_measured))}, peak "
                  f"{gb(peak_bytes(at_measured))}.")
    report = "\n".join([
        f"# Rehearsal of {args.configfile}",
        f"{time.strftime('%Y-%m-%d')}, {_machine(args.device)}; `python benchmarks/rehearse.py --configfile "
        f"{args.configfile} --steps {args.steps} --frames {args.frames}`: the whole DAG in {dag_seconds / 60:.1f} min.",
        "",
        "Peak memory is snakemake's max_rss of the job: the stage and its DataLoader workers (runtime.workers) "
        "together; seconds per frame of translate and pseudo_label include their batches' first-batch set-up.",
        "",
        f"GPU columns: {gpu_label}" + (f" (`--gpu-proof {args.gpu_proof}`)" if args.gpu_proof else
                                       "; `--gpu-proof DIR` fills them from a GPU proof (benchmarks/gpu_proof.sh)."),
        "",
        "| stage | jobs | measured | peak memory | written per frame | full run, per job | full run, all jobs "
        "| GPU rate | days on one GPU |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        f"| **total** | | | | | | **{total_hours:.0f} h** ({total_hours / 24:.1f} days) at these rates | | "
        + (f"**{gpu_days:.1f} d** (stages with a rate) |" if gpu else "not run |"),
        "",
        "| set | measured per frame | plan per frame | difference | full run |",
        "|---|---|---|---|---|",
        *disk_rows,
        f"| **all sets** | | | | **{gb(sum(p.bytes for p in full_plan))}** written, **{gb(peak_bytes(full_plan))}** "
        "at the peak |",
        "",
        ratio_line,
        "",
        "Peak memory of evaluate (val frames scored at 2048x1024) and pseudo_label (batch "
        f"{full_cfg['runtime']['inference_batch_size']}) against the number of frames:",
        "",
        "| frames | evaluate | pseudo_label |",
        "|---|---|---|",
        *memory_rows(out, cfg_path, full_cfg, args.memory_frames),
    ])
    (out / "rehearsal.md").write_text(report + "\n")
    (out / "rates.json").write_text(json.dumps(rates_of(by_stage, gpu_label, gpu, _machine(args.device),
                                                        args.configfile), indent=1) + "\n")
    print(report)
    print(f"rates: {out / 'rates.json'} (python -m bdl.plan --configfile {args.configfile} ... --rates "
          f"{out / 'rates.json'} --profile profiles/slurm)")


def rates_of(by_stage: dict, gpu_label: str, gpu: dict, machine: str, configfile: str) -> dict:
    """What the time plan reads (``python -m bdl.plan --rates``, ``runtime.rates``): each stage's seconds per unit,
    one GPU's where a proof gave them (all from it: rates of two devices do not add up), else those measured here."""
    if gpu:
        stages = {stage: {"seconds": sec, "unit": by_stage[stage]["unit"]} for stage, sec in gpu.items()
                  if stage in by_stage}
    else:
        stages = {stage: {"seconds": max(e["rates"]), "unit": e["unit"]} for stage, e in by_stage.items()
                  if e["rates"]}
    return {"device": gpu_label if gpu else machine, "config": configfile, "stages": stages}


def _machine(device: str) -> str:
    import platform

    import torch

    if device != "cpu" and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), torch {torch.__version__}"


if __name__ == "__main__":
    main(get_args_parser().parse_args())
