#!/usr/bin/env python
"""Save M with its BatchNorm statistics re-estimated on the target's unlabelled train frames (AdaBN, Li et al.
2016), weights unchanged, as a segmenter checkpoint that evaluate.py, predict.py and pseudo_label.py read.

From M0 it is the row 'm0_target_bn' (config m0_target_bn): the source-only model adapted by normalisation
alone, a yardstick the loop's models should beat. M trains its BatchNorm statistics (resnet_mini, DeepLab/ResNet
without freeze_bn); M0's running statistics are the source's, and a target frame normalised by them can read
far worse than the same M reads it with the target's (on the low-light target of realpair_dev: 9 against 27
mIoU). Up to 512 frames, spread evenly over the split, are used.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bdl import BDLError, cli  # noqa: E402
from bdl.defaults import default  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--segmenter", required=True, help="segmenter checkpoint (M0 for the baseline)")
    cli.add_dataset_args(p, "target", "unlabelled target frames whose statistics M takes (--target-split)")
    cli.add_cache_arg(p, "target")
    cli.add_protocol_arg(p)
    p.add_argument("--batch-size", type=int, default=default("runtime.inference_batch_size"),
                   help="frames per forward pass (each batch's statistics are averaged, weighted by its frames)")
    cli.add_runtime_args(p, out="segmenter checkpoint with the target's statistics (.pt)")
    cli.add_procs_arg(p)  # taken with the workflow's runtime flags; every process makes the same estimate
    return p


def main(args):
    from bdl.artifacts import load_checkpoint, save_checkpoint
    from bdl.distributed import World
    from bdl.models import segmenter_from_checkpoint
    from bdl.models.bn_stats import MAX_FRAMES, has_batchnorm, with_domain_statistics
    from bdl.runtime import start_process

    device = start_process(args)
    state = load_checkpoint(args.segmenter, kind="segmenter")
    model = segmenter_from_checkpoint(state, args.segmenter)
    if not has_batchnorm(model):
        raise BDLError(f"{args.segmenter}: no BatchNorm statistics to re-estimate (backbone "
                       f"{state['arch'].get('backbone')}; config m0_target_bn)")
    frames = cli.image_set(args, "target", False)
    twin = with_domain_statistics(model, frames, device, batch_size=args.batch_size)
    used = min(len(frames), MAX_FRAMES)
    if not World.from_env().main:
        return
    save_checkpoint(args.out, {"kind": "segmenter", "model": twin.cpu().state_dict(), "arch": state["arch"],
                               "args": cli.recorded_args(args),
                               "target_bn": {"from": str(args.segmenter), "split": args.target_split,
                                             "frames": used, "batch_size": args.batch_size}})
    print(f"{args.out}: {args.segmenter} with BatchNorm statistics of {used} "
          f"{args.target_split} frames", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser()))
