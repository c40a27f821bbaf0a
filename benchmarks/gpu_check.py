#!/usr/bin/env python
"""GPU check: the paper preset's model shapes for a few steps in fp32 and in bf16 + channels_last, then
the stage scripts chained on the device. One line per figure; about 3 minutes on one recent GPU.

  python benchmarks/gpu_check.py                        # on a CUDA machine (random init, no downloads)
  python benchmarks/gpu_check.py --device cpu --tiny    # the same code at toy sizes (the tests run this)
  python benchmarks/gpu_check.py --procs 4              # only: 1 process against 4 (runtime.gpus_per_job)
  python benchmarks/gpu_check.py --json gpu_check.json  # also the figures as JSON, rewritten after each one

Shapes, read from the preset (--preset, config/paper_gta5_resnet101.yaml): its segmenter (DeepLab v2
ResNet-101, the reference's, with its BatchNorm setting), batch 1, source 1280x720 and target 1024x512; one step
of each training stage (source-only, adversarial: CE on source + output-space D on target, SSL: that plus the
pseudo-label CE), its CycleGAN (ngf 64, 9 blocks) on its 452x452 crops with the perceptual loss through that
frozen M, F over one source frame (translate) and M over one target frame (pseudo_label). Each runs through the
training/inference loops the stages use, so autocast, channels_last, cudnn benchmark and non-blocking copies
are the stages' own.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bdl.cli  # noqa: E402,F401  (sets the OpenMP spin policy before torch loads)

PRESET = REPO / "config" / "paper_gta5_resnet101.yaml"
MODES = {"fp32": ("off", "off"), "bf16+channels_last": ("on", "on")}


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=20, help="timed steps per figure (after 3 warm-up steps)")
    p.add_argument("--tiny", action="store_true", help="toy shapes, to check the script itself on a CPU")
    p.add_argument("--preset", default=str(PRESET), help="the config whose shapes are measured")
    p.add_argument("--skip-stages", action="store_true", help="only the model-shape figures")
    p.add_argument("--skip-memory", action="store_true", help="leave out benchmarks/adv_step_memory.py")
    p.add_argument("--json", help="write the figures here as JSON too (rewritten after each figure)")
    p.add_argument("--procs", type=int, default=0,
                   help="instead of the figures above: the adversarial step of one global batch of N frames as 1 "
                        "process and as N (one GPU each, NCCL; gloo on a CPU), seconds per step and the speed-up")
    return p


class Repeat:
    """A loader stand-in that yields one batch ``n`` times per epoch (enough for ``infinite``)."""

    def __init__(self, batch: dict, n: int):
        from bdl.data.datasets import EpochSampler

        self.batch, self.batch_size, self.drop_last, self.dataset = batch, 1, False, None
        self.sampler = EpochSampler(n, False, 0)

    def __iter__(self):
        return (self.batch for _ in range(len(self.sampler)))

    def __len__(self):
        return len(self.sampler)


def stage_defaults(script: str) -> argparse.Namespace:
    """A stage's argument defaults (its own get_args_parser), without its required paths."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(script, REPO / "stages" / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return argparse.Namespace(**{a.dest: a.default for a in module.get_args_parser()._actions if a.dest != "help"})


def measure(device, fn, steps):
    """Seconds per step and peak memory (MiB) of ``fn(n)``, which runs n steps; 3 warm-up steps first."""
    import torch

    fn(3)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    fn(steps)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    return seconds, peak


def shapes(preset: str, tiny: bool) -> dict:
    """The measured shapes: the preset's (merged over the schema's defaults), or toy ones for a CPU check."""
    import yaml

    from bdl.defaults import merged, schema_defaults

    cfg = merged(schema_defaults(), yaml.safe_load(Path(preset).read_text()))
    seg, tr = cfg["segmenter"], cfg["translator"]
    if tiny:
        return {"backbone": "resnet_mini", "width": 8, "freeze_bn": True, "src_hw": (32, 64), "tgt_hw": (32, 64),
                "crop": (32, 32), "ngf": 8, "n_blocks": 1, "ndf": 8, "lambda_adv": seg["lambda_adv"]}
    (sw, sh), (tw, th) = cfg["source"]["size"], cfg["target"]["size"]
    crop = tr["crop"] or [sw, sh]
    return {"backbone": seg["backbone"], "width": seg["width"], "freeze_bn": bool(seg["freeze_bn"]),
            "src_hw": (sh, sw), "tgt_hw": (th, tw), "crop": (crop[1], crop[0]), "ngf": tr["ngf"],
            "n_blocks": tr["n_blocks"], "ndf": tr["ndf"], "lambda_adv": seg["lambda_adv"]}


class Record:
    """The figures so far, as JSON at ``path`` (if given), rewritten after each so a stopped run keeps them."""

    def __init__(self, path, head: dict):
        self.path, self.data = path, head | {"figures": [], "ratios": {}, "finished": False}

    def add(self, **entry):
        self.data["figures"].append(entry)
        self.write()

    def write(self):
        if self.path:
            from bdl.artifacts import write_json

            write_json(self.path, self.data)


def main(args):
    import torch

    from bdl.distributed import pick_device
    from bdl.loops.inference import predict
    from bdl.loops.segmenter import SegmenterSettings, train_segmenter
    from bdl.loops.translator import TranslatorSettings, train_translator
    from bdl.models import build_segmenter
    from bdl.models.cyclegan import ResnetGenerator, to_gan
    from bdl.runtime import ComputeFormat, setup_torch
    from bdl.training import Resumable

    if args.procs:
        return scaling(args)
    device = pick_device(args.device)
    setup_torch(device, None)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {device} ({name}), torch {torch.__version__}, {args.steps} timed steps per figure", flush=True)
    sh = shapes(args.preset, args.tiny)
    src_hw, tgt_hw, crop = sh["src_hw"], sh["tgt_hw"], sh["crop"]
    record = Record(args.json, {"device": str(device), "device_name": name, "torch": torch.__version__,
                                "steps": args.steps, "preset": None if args.tiny else str(args.preset),
                                "tiny": args.tiny, "shapes": sh})
    tmp = Path(tempfile.mkdtemp(prefix="bdl-gpu-check-"))
    gen = torch.Generator().manual_seed(0)

    def images(hw):
        return torch.randint(0, 256, (1, 3, *hw), dtype=torch.uint8, generator=gen)

    def segmenter():
        return build_segmenter(sh["backbone"], width=sh["width"], freeze_bn=sh["freeze_bn"])

    src = {"image": images(src_hw), "label": torch.randint(0, 19, (1, *src_hw), generator=gen)}
    tgt = {"image": images(tgt_hw)}
    pseudo = torch.randint(0, 19, (1, *tgt_hw), generator=gen)
    pseudo[torch.rand(pseudo.shape, generator=gen) < 0.3] = 255  # pseudo-labels leave pixels out
    tgt_labelled = tgt | {"label": pseudo}
    seg_cfg = stage_defaults("train_segmenter")
    seg_cfg.lambda_adv, seg_cfg.ndf, seg_cfg.log_every, seg_cfg.checkpoint_every = sh["lambda_adv"], sh["ndf"], \
        10**9, 0
    f_cfg = stage_defaults("train_translator")
    f_cfg.log_every, f_cfg.checkpoint_every, f_cfg.decay_start, f_cfg.ndf = 10**9, 0, 0, sh["ndf"]
    src_size, tgt_size = f"{src_hw[1]}x{src_hw[0]}", f"{tgt_hw[1]}x{tgt_hw[0]}"
    for mode, (bf16, cl) in MODES.items():
        compute = ComputeFormat(device, bf16, cl)

        def seg_steps(target, n, mode=mode, compute=compute):
            torch.manual_seed(0)
            model = segmenter()
            settings = SegmenterSettings.from_args(seg_cfg, iterations=n)
            train_segmenter(model, Repeat(src, n), None if target is None else Repeat(target, n), settings,
                            compute, device, Resumable(tmp / "seg.pt", {}, 0), stage=f"segmenter {mode}")

        judge = segmenter()

        def f_steps(n, mode=mode, judge=judge, compute=compute):
            f_cfg.iterations = n  # TranslatorSettings.from_args reads it
            train_translator({"ngf": sh["ngf"], "n_blocks": sh["n_blocks"]},
                             Repeat({"image": images(crop)}, n), Repeat({"image": images(crop)}, n), judge,
                             TranslatorSettings.from_args(f_cfg), compute, device,
                             Resumable(tmp / "f.pt", {}, 0), stage=f"translator {mode}")

        generator = ResnetGenerator(sh["ngf"], sh["n_blocks"])

        @torch.no_grad()
        def translate(n, compute=compute, generator=generator):
            compute.model(generator).eval()
            for _ in range(n):  # what translate_set does to a batch, up to the copy back
                with compute.autocast():
                    fake = generator(compute.images(to_gan(src["image"], device))).float()
                ((fake + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu()

        def infer(n, compute=compute, judge=judge):
            compute.model(judge).eval()
            for _ in range(n):
                prob, pred = predict(judge, tgt["image"], device, compute)
                prob.cpu(), pred.cpu()

        figures = (
            ("source_step", f"DeepLab v2 source-only step ({src_size})", "step",
             lambda n: seg_steps(None, n)),
            ("adversarial_step", f"DeepLab v2 adversarial step (source {src_size} + target {tgt_size})", "step",
             lambda n: seg_steps(tgt, n)),
            ("ssl_step", f"DeepLab v2 SSL step (adversarial + pseudo-label CE, {src_size} + {tgt_size})", "step",
             lambda n: seg_steps(tgt_labelled, n)),
            ("translator_step", f"CycleGAN step with perceptual loss ({crop[1]}x{crop[0]})", "step", f_steps),
            ("translate_frame", f"CycleGAN translation forward ({src_size})", "source frame", translate),
            ("pseudo_label_frame", f"DeepLab v2 pseudo-label forward ({tgt_size})", "target frame", infer),
        )
        for key, title, unit, fn in figures:
            seconds, peak = measure(device, fn, args.steps)
            record.add(figure=key, title=title, mode=mode, unit=unit, seconds=seconds,
                       peak_mib=None if peak != peak else peak)
            memory = f"peak {peak:.0f} MiB" if peak == peak else "peak memory: CUDA only"
            print(f"{title} [{mode}]: {1 / seconds:.2f} steps/s ({seconds:.4f} s/{unit}), {memory}", flush=True)
    by = {(f["figure"], f["mode"]): f for f in record.data["figures"]}
    for key, title, *_ in figures:
        ratio = by[(key, "fp32")]["seconds"] / by[(key, "bf16+channels_last")]["seconds"]
        record.data["ratios"][key] = ratio
        print(f"{title}: bf16+channels_last / fp32 speed = {ratio:.2f}x")
    record.write()
    if not args.skip_memory:
        # the adversarial step's peak memory with the source loss backpropagated first (what the stage does) and
        # with one joint backward, each in its own process (benchmarks/adv_step_memory.py)
        cmd = [sys.executable, str(REPO / "benchmarks" / "adv_step_memory.py"), "--device", str(device)]
        memory = subprocess.run(cmd + (["--tiny"] if args.tiny else []), capture_output=True, text=True)
        print(memory.stdout.strip() if memory.returncode == 0 else f"adv_step_memory failed: {memory.stderr[-500:]}")
    if not args.skip_stages:
        stage_chain(device, tmp)
    record.data["finished"] = True
    record.write()


def scaling(args) -> None:
    """1 process against ``args.procs`` on the same global batch (``procs`` frames, one per process), the paper
    preset's shapes in fp32 (``--tiny``: toy shapes on the CPU): what runtime.gpus_per_job buys per step."""
    import torch.multiprocessing as mp

    from bdl.distributed import _free_port

    per_step = {}
    for size in dict.fromkeys((1, args.procs)):
        queue = mp.get_context("spawn").SimpleQueue()
        mp.start_processes(_scaling_worker, (size, _free_port(), args, queue), nprocs=size, start_method="spawn")
        per_step[size] = queue.get()
        print(f"DeepLab v2 adversarial step, global batch {args.procs}, {size} process(es) on {args.device}: "
              f"{per_step[size]:.3f} s/step", flush=True)
    print(f"speed-up of {args.procs} processes over 1: {per_step[1] / per_step[args.procs]:.2f}x "
          f"(ideal {args.procs}x)")


def _scaling_worker(rank: int, size: int, port: int, args, queue) -> None:
    import os

    import torch

    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(size),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    from bdl.distributed import World, device_of, init
    from bdl.loops.segmenter import SegmenterSettings, train_segmenter
    from bdl.models import build_segmenter
    from bdl.runtime import ComputeFormat, setup_torch
    from bdl.training import Resumable

    world = World.from_env()
    device = device_of(args.device, world)
    setup_torch(device, 1 if device.type == "cpu" else None)
    init(device, world)
    if args.tiny:
        backbone, width, src_hw, tgt_hw = "resnet_mini", 8, (32, 64), (32, 64)
    else:
        backbone, width, src_hw, tgt_hw = "resnet101", 64, (720, 1280), (512, 1024)
    local = args.procs // size  # this rank's share of the global batch
    gen = torch.Generator().manual_seed(rank)
    src = {"image": torch.randint(0, 256, (local, 3, *src_hw), dtype=torch.uint8, generator=gen),
           "label": torch.randint(0, 19, (local, *src_hw), generator=gen)}
    tgt = {"image": torch.randint(0, 256, (local, 3, *tgt_hw), dtype=torch.uint8, generator=gen)}
    cfg = stage_defaults("train_segmenter")
    cfg.lambda_adv, cfg.log_every = 0.001, 10**9
    tmp = Path(tempfile.mkdtemp(prefix="bdl-scaling-"))

    torch.manual_seed(0)
    model = build_segmenter(backbone, width=width, freeze_bn=True)

    def steps(n):
        train_segmenter(model, Repeat(src, n), Repeat(tgt, n), SegmenterSettings.from_args(cfg, iterations=n),
                        ComputeFormat(device, "off", "off"), device, Resumable(tmp / "seg.pt", {}, 0),
                        stage=f"segmenter x{size}", world=world)
        world.barrier()  # the step time is the slowest rank's

    seconds, _ = measure(device, steps, args.steps)
    if world.main:
        queue.put(seconds)
    if world.distributed:
        import torch.distributed as dist

        dist.destroy_process_group()


def stage_chain(device, tmp: Path):
    """Every model stage as its script on the device (auto settings), on a tiny generated pair."""
    from bdl.data.demo import generate

    generate(tmp / "demo", 24, 16, 8, width=64, height=32, seed=3)
    src = ["--source-format", "gta5", "--source-root", tmp / "demo" / "source"]
    tgt = ["--target-format", "cityscapes", "--target-root", tmp / "demo" / "target"]
    seg = ["--backbone", "resnet_mini", "--width", "8", "--ndf", "8", "--batch-size", "4", "--iterations", "4",
           "--device", str(device)]
    chain = [
        ("train_segmenter", "--mode", "source", *src, *seg, "--out", tmp / "m0.pt"),
        ("train_translator", *src, *tgt, "--segmenter", tmp / "m0.pt", "--ngf", "8", "--n-blocks", "1",
         "--ndf", "8", "--iterations", "4", "--batch-size", "2", "--device", str(device), "--out", tmp / "f.pt"),
        ("translate", "--translator", tmp / "f.pt", *src, "--device", str(device), "--out", tmp / "t.h5"),
        ("train_segmenter", "--mode", "adversarial", "--translated", tmp / "t.h5", *src, *tgt, "--init",
         tmp / "m0.pt", *seg, "--out", tmp / "adv.pt"),
        ("pseudo_label", "--segmenter", tmp / "adv.pt", *tgt, "--device", str(device), "--out", tmp / "p.h5"),
        ("train_segmenter", "--mode", "ssl", "--translated", tmp / "t.h5", "--pseudo", tmp / "p.h5", *src, *tgt,
         "--init", tmp / "adv.pt", *seg, "--out", tmp / "ssl.pt"),
        ("evaluate", "--segmenter", tmp / "ssl.pt", *tgt, "--device", str(device), "--out", tmp / "eval.json"),
    ]
    start = time.perf_counter()
    for script, *argv in chain:
        proc = subprocess.run([sys.executable, str(REPO / "stages" / f"{script}.py"), *map(str, argv)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"stage chain on {device}: {script} FAILED\n{proc.stderr[-3000:]}")
            sys.exit(1)
    print(f"stage chain on {device} (7 stage scripts, auto bf16/channels_last): ok in "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
