"""How a stage process runs: threads, seeds, malloc settings, and the compute format (bf16 autocast,
channels_last) with its guard against oneDNN's CPU bug. Called from each stage's entry point; importing this
module changes nothing process-wide."""

import ctypes
import os
import platform
import random
import sys

import numpy as np
import torch

from bdl.distributed import World, device_of, init


class ComputeFormat:
    """The compute format models run in: bf16 autocast (dtype) and channels_last (memory format), each 'auto'
    (on for CUDA), 'on' or 'off'.

    bf16 keeps float32 weights and master copies (autocast only lowers matmul/conv inputs), so no loss
    scaling is needed; losses, softmax and norms stay float32 under autocast's own rules. On the CPU both
    default to off: the demo's small convolutions are slower in bf16 there and results must reproduce.
    Forced on together on a CPU whose oneDNN corrupts memory in bf16 channels_last training (``bdl.onednn``),
    channels_last is turned off and a line says why.
    """

    def __init__(self, device: torch.device, bf16: str = "auto", channels_last: str = "auto"):
        cuda = device.type == "cuda"
        self.device = device
        self.bf16 = cuda and torch.cuda.is_bf16_supported() if bf16 == "auto" else bf16 == "on"
        self.channels_last = cuda if channels_last == "auto" else channels_last == "on"
        if device.type == "cpu" and self.bf16 and self.channels_last and not cpu_bf16_channels_last_safe():
            self.channels_last = False

    @classmethod
    def of(cls, cfg, device):
        return cls(device, getattr(cfg, "bf16", "auto"), getattr(cfg, "channels_last", "auto"))

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def model(self, module: torch.nn.Module) -> torch.nn.Module:
        module.to(self.device)
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def images(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def __str__(self):
        return f"bf16 {'on' if self.bf16 else 'off'}, channels_last {'on' if self.channels_last else 'off'}"


_warned = False


def cpu_bf16_channels_last_safe() -> bool:
    """Probe (once per process, in a child) whether this CPU's oneDNN can train bf16 in channels_last
    without corrupting the heap; if not, say once, on one line, why channels_last is turned off."""
    global _warned
    from bdl import onednn

    safe, detail = onednn.probe()
    if not safe and not _warned:
        _warned = True
        print(f"runtime: channels_last turned off for this job: {onednn.describe(safe, detail)}; "
              "keep it with ONEDNN_MAX_CPU_ISA=AVX2 (slower) or bf16 off (docs/benchmarks.md, GPU and precision)",
              file=sys.stderr)
    return safe


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup_torch(device: torch.device, threads: int | None) -> None:
    keep_freed_memory()
    if threads:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    else:
        # torch.use_deterministic_algorithms also imports torch._inductor (~1.2 s in every stage process) only
        # to set torch.compile's flag; nothing here compiles, so set the eager flag alone when torch has it
        eager_only = getattr(torch._C, "_set_deterministic_algorithms", None)
        (eager_only or torch.use_deterministic_algorithms)(True, warn_only=True)


# glibc's malloc returns freed memory at the top of the heap to the system once more than twice the mmap
# threshold is free, and serves blocks above that threshold with fresh mmaps. A CPU forward frees all its
# activations at the end, so both happened on every batch: the demo segmenter's pass over 400 frames took
# ~130,000 page faults (each a zeroed page) and 0.58 s; with these settings 0 faults and 0.42 s.
# Setting either value turns off glibc's own adjustment of the other, so both are set.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_TRIM_BYTES = 1 << 30  # freed memory kept for reuse, at most
_MMAP_BYTES = 32 << 20  # glibc's maximum on 64-bit; larger tensors are still mapped and unmapped


def keep_freed_memory() -> bool:
    """Let glibc keep freed heap memory for the next batch instead of handing it back and faulting it in
    again (no-op elsewhere). Numbers are unchanged; the process holds on to its peak memory."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES))


def start_process(args) -> torch.device:
    """A model stage's process set-up from its runtime flags: its GPU slot on a workstation (``BDL_GPUS``, set by
    the workflow from the job's gpu resource; before CUDA starts), the device, threads and malloc, the seeds.
    In a distributed stage (``bdl.distributed``; its launcher took the GPU slots) it also joins the process group,
    on this rank's device, with the job's ``--threads`` shared among the processes."""
    wanted = int(os.environ.get("BDL_GPUS") or 0)
    if wanted and not os.environ.get("SLURM_JOB_ID"):
        from bdl.gpu_slots import acquire

        acquire(wanted)
    world = World.from_env()
    device = device_of(args.device, world)
    threads = max(1, args.threads // world.size) if args.threads else args.threads
    setup_torch(device, threads)
    init(device, world)
    seed_everything(args.seed)
    return device
