#!/usr/bin/env python
"""Peak memory of one adversarial segmenter step at the paper's sizes, the loss backpropagated two ways:

  joint  one backward of (source CE + lambda_adv * target adversarial loss): both graphs held at once
  split  the source CE backpropagated before the target forward (bdl.loops.segmenter.segmenter_backward, what
         the training stage does; the reference code does the same to fit a 12 GB card)

Each way runs in its own process: on a CPU the figure is that process's peak resident memory (VmHWM), on CUDA
torch's peak allocated and reserved memory. The gradients are equal (tests/test_split_backward.py).

  python benchmarks/adv_step_memory.py                   # DeepLab v2 ResNet-101, 1280x720 + 1024x512, CPU fp32
  python benchmarks/adv_step_memory.py --device cuda
  python benchmarks/adv_step_memory.py --tiny            # toy sizes, to check the script (the tests run this)
  python benchmarks/adv_step_memory.py --json memory.json  # the figures as JSON too
"""

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--tiny", action="store_true", help="resnet_mini at 64x32: checks the script in seconds")
    p.add_argument("--json", help="write the figures here as JSON too")
    p.add_argument("--way", choices=("joint", "split"), help=argparse.SUPPRESS)  # the child process's one way
    return p


def joint_backward(model, disc, batch, tbatch, lambda_adv, device=None):
    """The step's loss as one sum and one backward: what the loop did before, kept as the reference."""
    import torch.nn.functional as F

    from bdl.loops.segmenter import SOURCE
    from bdl.losses import bce_adv, seg_ce

    pred_s = model(batch["image"].to(device).float() / 255)
    pred_t = model(tbatch["image"].to(device).float() / 255)
    total = seg_ce(pred_s, batch["label"].to(device))
    if "label" in tbatch:
        total = total + seg_ce(pred_t, tbatch["label"].to(device))
    for p in disc.parameters():
        p.requires_grad_(False)
    total = total + lambda_adv * bce_adv(disc(F.softmax(pred_t, 1)), SOURCE)
    total.backward()


def one_step(args) -> str:
    import torch

    from bdl.data.labels import NUM_CLASSES
    from bdl.distributed import pick_device
    from bdl.loops.segmenter import segmenter_backward
    from bdl.models import build_segmenter
    from bdl.models.discriminator import OutputDiscriminator
    from bdl.runtime import ComputeFormat, setup_torch

    device = pick_device(args.device)
    setup_torch(device, None)
    backbone, width, src_hw, tgt_hw = (("resnet_mini", 8, (32, 64), (32, 64)) if args.tiny
                                       else ("resnet101", 64, (720, 1280), (512, 1024)))
    gen = torch.Generator().manual_seed(0)
    batch = {"image": torch.randint(0, 256, (1, 3, *src_hw), dtype=torch.uint8, generator=gen),
             "label": torch.randint(0, NUM_CLASSES, (1, *src_hw), generator=gen)}
    tbatch = {"image": torch.randint(0, 256, (1, 3, *tgt_hw), dtype=torch.uint8, generator=gen)}
    model = build_segmenter(backbone, width=width, freeze_bn=True).to(device).train()  # the paper presets' BN
    disc = OutputDiscriminator(NUM_CLASSES, 64).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=2.5e-4, momentum=0.9)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if args.way == "joint":
        joint_backward(model, disc, batch, tbatch, 0.001, device)
    else:
        segmenter_backward(model, disc, batch, tbatch, 0.001, ComputeFormat(device, "off", "off"), device)
    opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        return (f"peak allocated {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB, "
                f"reserved {torch.cuda.max_memory_reserved() / 2**30:.2f} GiB")
    with open("/proc/self/status") as status:
        peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return f"peak RSS {peak_kb / 2**20:.2f} GiB"


def main(args):
    if args.way:
        print(one_step(args))
        return
    sizes = "resnet_mini 64x32 + 64x32" if args.tiny else "DeepLab v2 ResNet-101, source 1280x720 + target 1024x512"
    print(f"one adversarial step, batch 1, fp32, {sizes}, {args.device}:")
    result = {"device": args.device, "sizes": sizes, "tiny": args.tiny, "ways": {}}
    for way in ("joint", "split"):
        cmd = [sys.executable, __file__, "--way", way, "--device", args.device] + (["--tiny"] if args.tiny else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{way}: failed\n{proc.stderr[-2000:]}")
        line = proc.stdout.strip().splitlines()[-1]
        print(f"  {way:5s} backward: {line}")
        # "peak allocated 1.23 GiB, reserved 1.50 GiB" (CUDA) or "peak RSS 1.23 GiB" (CPU)
        result["ways"][way] = {f"{name.lower()}_gib": float(value)
                               for name, value in re.findall(r"(allocated|reserved|RSS) ([\d.]+) GiB", line)}
    if args.json:
        from bdl.artifacts import write_json

        write_json(args.json, result)

if __name__ == "__main__":
    main(get_args_parser().parse_args())
