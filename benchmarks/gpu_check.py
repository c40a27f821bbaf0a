#!/usr/bin/env python
"""GPU check: the paper preset's model shapes for a few steps in fp32 and in bf16 + channels_last, then
the stage scripts chained on the device. One line per figure; about 3 minutes on one recent GPU.

  python benchmarks/gpu_check.py                        # on a CUDA machine (random init, no downloads)
  python benchmarks/gpu_check.py --device cpu --tiny    # the same code at toy sizes (the tests run this)
  python benchmarks/gpu_check.py --procs 4              # only: 1 process against 4 (runtime.gpus_per_job)

Shapes (config/paper_gta5_resnet101.yaml): DeepLab v2 ResNet-101, batch 1, source 1280x720 and target
1024x512 (adversarial step: CE on source + output-space D on target); CycleGAN (ngf 64, 9 blocks) on
452x452 crops with the perceptual loss through that frozen M; pseudo-labelling forward at 1024x512.
Each is run through the training/inference loops the stages use, so autocast, channels_last, cudnn
benchmark and non-blocking copies are the stages' own.
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


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=20, help="timed steps per figure (after 3 warm-up steps)")
    p.add_argument("--tiny", action="store_true", help="toy shapes, to check the script itself on a CPU")
    p.add_argument("--skip-stages", action="store_true", help="only the model-shape figures")
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


def main(args):
    import torch

    from bdl.distributed import pick_device
    from bdl.loops.inference import predict
    from bdl.loops.segmenter import SegmenterSettings, train_segmenter
    from bdl.loops.translator import TranslatorSettings, train_translator
    from bdl.models import build_segmenter
    from bdl.runtime import ComputeFormat, setup_torch
    from bdl.training import Resumable

    if args.procs:
        return scaling(args)
    device = pick_device(args.device)
    setup_torch(device, None)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {device} ({name}), torch {torch.__version__}, {args.steps} timed steps per figure")
    if args.tiny:
        backbone, width, src_hw, tgt_hw, crop, ngf, blocks = "resnet_mini", 8, (32, 64), (32, 64), 32, 8, 1
    else:
        backbone, width, src_hw, tgt_hw, crop, ngf, blocks = "resnet101", 64, (720, 1280), (512, 1024), 452, 64, 9
    tmp = Path(tempfile.mkdtemp(prefix="bdl-gpu-check-"))
    gen = torch.Generator().manual_seed(0)

    def images(hw):
        return torch.randint(0, 256, (1, 3, *hw), dtype=torch.uint8, generator=gen)

    src = {"image": images(src_hw), "label": torch.randint(0, 19, (1, *src_hw), generator=gen)}
    tgt = {"image": images(tgt_hw)}
    seg_cfg = stage_defaults("train_segmenter")
    seg_cfg.lambda_adv, seg_cfg.log_every, seg_cfg.checkpoint_every = 0.001, 10**9, 0
    f_cfg = stage_defaults("train_translator")
    f_cfg.log_every, f_cfg.checkpoint_every, f_cfg.decay_start = 10**9, 0, 0
    modes = {"fp32": ("off", "off"), "bf16+channels_last": ("on", "on")}
    results = {}
    for mode, (bf16, cl) in modes.items():
        compute = ComputeFormat(device, bf16, cl)

        def seg_steps(n, mode=mode, compute=compute):
            model = build_segmenter(backbone, width=width, freeze_bn=True)
            settings = SegmenterSettings.from_args(seg_cfg, iterations=n)
            train_segmenter(model, Repeat(src, n), Repeat(tgt, n), settings, compute, device,
                            Resumable(tmp / "seg.pt", {}, 0), stage=f"segmenter {mode}")

        judge = build_segmenter(backbone, width=width, freeze_bn=True)

        def f_steps(n, mode=mode, judge=judge, compute=compute):
            f_cfg.iterations = n  # TranslatorSettings.from_args reads it
            train_translator({"ngf": ngf, "n_blocks": blocks}, Repeat({"image": images((crop, crop))}, n),
                             Repeat({"image": images((crop, crop))}, n), judge, TranslatorSettings.from_args(f_cfg),
                             compute, device,
                             Resumable(tmp / "f.pt", {}, 0), stage=f"translator {mode}")

        def infer(n, compute=compute, judge=judge):
            compute.model(judge).eval()
            for _ in range(n):
                prob, pred = predict(judge, tgt["image"], device, compute)
                prob.cpu(), pred.cpu()

        sizes = f"source {src_hw[1]}x{src_hw[0]} + target {tgt_hw[1]}x{tgt_hw[0]}"
        for figure, fn in ((f"DeepLab v2 adversarial step ({sizes})", seg_steps),
                           (f"CycleGAN step with perceptual loss ({crop}x{crop})", f_steps),
                           (f"DeepLab v2 pseudo-label forward ({tgt_hw[1]}x{tgt_hw[0]})", infer)):
            seconds, peak = measure(device, fn, args.steps)
            results[(figure, mode)] = seconds
            memory = f"peak {peak:.0f} MiB" if peak == peak else "peak memory: CUDA only"
            print(f"{figure} [{mode}]: {1 / seconds:.2f} steps/s, {memory}")
    for figure in dict.fromkeys(f for f, _ in results):
        print(f"{figure}: bf16+channels_last / fp32 speed = "
              f"{results[(figure, 'fp32')] / results[(figure, 'bf16+channels_last')]:.2f}x")
    # the adversarial step's peak memory with the source loss backpropagated first (what the stage does) and
    # with one joint backward, each in its own process (benchmarks/adv_step_memory.py)
    memory = subprocess.run([sys.executable, str(REPO / "benchmarks" / "adv_step_memory.py"), "--device",
                             str(device)] + (["--tiny"] if args.tiny else []), capture_output=True, text=True)
    print(memory.stdout.strip() if memory.returncode == 0 else f"adv_step_memory failed: {memory.stderr[-500:]}")
    if not args.skip_stages:
        stage_chain(device, tmp)


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
