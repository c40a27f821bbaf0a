"""Is bf16 autocast + channels_last safe to train with on this CPU? A probe in a child process.

torch 2.14.1 ships oneDNN 3.12.0, whose ``jit_bf16_1x1`` backward-weights convolution (chosen on CPUs with
AVX512 and bf16 instructions, e.g. AMD EPYC Zen 4) corrupts the heap for a stride-2 1x1 convolution at
batch 1 in channels_last: the process dies with ``double free or corruption`` (or silently scribbles over
memory). ResNet's stride-2 downsample is exactly that layer. The probe runs the smallest reproduction in
a child process, so a crash there costs nothing here; the child inherits this environment, so a
``ONEDNN_MAX_CPU_ISA`` cap (AVX2 keeps oneDNN's bf16 convolution kernels out entirely) is probed as set.

``python -m bdl.onednn`` runs the reproduction itself (what the probe starts) and prints ``ok``.
"""

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

# glibc >= 2.34 checks the heap on every call with its debug library preloaded: a corruption that would
# go unnoticed for a while aborts the child at once (ignored where the library does not exist)
_HEAP_CHECK = {"LD_PRELOAD": "libc_malloc_debug.so.0", "MALLOC_CHECK_": "3"}
_TIMEOUT_S = 120


def reproduce(steps: int = 10) -> None:
    """The failing pattern: a stride-2 1x1 conv, batch 1, channels_last, bf16 autocast, backward."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 1, 2, bias=False).to(memory_format=torch.channels_last)
    x = torch.rand(1, 8, 8, 16).to(memory_format=torch.channels_last).requires_grad_()
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(x)
        y.float().sum().backward()


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@functools.lru_cache(maxsize=1)
def probe() -> tuple[bool, str]:
    """(safe, what the child showed). Cached per process: the answer cannot change while it runs."""
    return verdict([sys.executable, "-m", "bdl.onednn"])


def verdict(cmd: list[str]) -> tuple[bool, str]:
    """Run ``cmd`` with the heap checks on: safe only if it exits 0 after printing ``ok``."""
    env = os.environ | _HEAP_CHECK
    env["LD_PRELOAD"] = " ".join(filter(None, [os.environ.get("LD_PRELOAD"), _HEAP_CHECK["LD_PRELOAD"]]))
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=_TIMEOUT_S,
                              cwd=Path(__file__).resolve().parents[1])
    except subprocess.TimeoutExpired:
        return False, f"the reproduction did not finish in {_TIMEOUT_S} s"
    if proc.returncode == 0 and proc.stdout.strip().endswith("ok"):
        return True, "ok"
    last = [ln for ln in proc.stderr.splitlines() if ln.strip() and "LD_PRELOAD" not in ln]
    return False, f"exit {proc.returncode}" + (f": {last[-1].strip()[:160]}" if last else "")


def onednn_version() -> str:
    """The oneDNN version torch was built with, as its build configuration names it ("?" if it does not)."""
    import torch

    found = re.search(r"MKL-DNN v([0-9.]+)", torch.__config__.show())
    return found.group(1) if found else "?"


def describe(safe: bool, detail: str) -> str:
    import torch

    onednn = onednn_version()
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA")
    flag = "avx512_bf16" in cpu_flags()
    return (f"torch {torch.__version__}, oneDNN {onednn}, CPU {'with' if flag else 'without'} avx512_bf16"
            f"{f', ONEDNN_MAX_CPU_ISA={isa}' if isa else ''}: bf16 + channels_last training "
            f"{'is safe' if safe else 'corrupts memory'} ({detail})")


if __name__ == "__main__":
    reproduce()
    print("ok")
