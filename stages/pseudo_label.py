#!/usr/bin/env python
"""Pseudo-label the target train set with M: HDF5 with the prediction, its max probability (float16) and
the class thresholds; a pixel's pseudo-label is its prediction where the probability reaches its class
threshold, else 255 (applied when the set is read). Target train labels are never read.

--mode fixed:     one threshold for all classes (the paper: 0.9)
--mode classwise: per-class median of the max probability, capped at --threshold (the reference code)

--protocol bdl:       softmax of M's logits upsampled to the image; a class's median is the exact median
--protocol reference: as the reference's SSL.py: softmax at M's output stride, the probabilities upsampled to
                      the image (align_corners=True), argmax and max of those; a class's median is the element
                      at index round(n / 2) of its sorted max probabilities (0 for a class never predicted).
Either way the medians come from per-class histograms of the stored float16 values: exact order statistics of
what is stored, in memory that does not grow with the set.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bdl.cli import (  # noqa: E402
    add_cache_arg,
    add_dataset_args,
    add_protocol_arg,
    add_runtime_args,
    dataset_spec,
    image_set,
    probability,
    run,
)
from bdl.defaults import default  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--segmenter", required=True, nargs="+",
                   help="segmenter checkpoint; several: label from the mean of their probabilities")
    add_dataset_args(p, "target", "target train images")
    add_cache_arg(p, "target")
    p.add_argument("--mode", choices=("fixed", "classwise"), default=default("pseudo_label.mode"))
    p.add_argument("--threshold", type=probability, default=default("pseudo_label.threshold"),
                   help="fixed threshold, or the classwise cap")
    p.add_argument("--batch-size", type=int, default=default("runtime.inference_batch_size"))
    add_protocol_arg(p, "how images are resized, where the softmax is taken and which median (above)")
    add_runtime_args(p, out="pseudo-label set (.h5)")
    from bdl.cli import add_procs_arg

    add_procs_arg(p)
    return p


def main(args):
    from bdl.artifacts import names_hash
    from bdl.data.datasets import make_loader
    from bdl.data.labels import CLASS_NAMES
    from bdl.distributed import World
    from bdl.loops.inference import pseudo_label_set
    from bdl.models import load_segmenter
    from bdl.pseudo import ProbabilityMean
    from bdl.runtime import ComputeFormat, start_process

    device = start_process(args)
    world = World.from_env()
    model = ProbabilityMean([load_segmenter(path) for path in args.segmenter])
    spec = dataset_spec(args, "target")
    ds = image_set(args, "target", False, spec=spec)
    hw = tuple(ds[0]["image"].shape[-2:])
    # several labellers as a JSON list: paths may hold spaces
    labellers = str(args.segmenter[0]) if len(args.segmenter) == 1 else json.dumps([str(p) for p in args.segmenter])
    attrs = {"made_by": "pseudo_label", "segmenter": labellers, "mode": args.mode,
             "threshold": args.threshold, "target": json.dumps(vars(spec)), "protocol": args.protocol,
             "names_hash": names_hash([s.name for s in ds.samples])}
    thresholds, kept, predicted = pseudo_label_set(model, make_loader(ds, args.batch_size, False, args.workers),
                                                   args.out, args.mode, args.threshold, attrs, device, hw,
                                                   ComputeFormat.of(args, device), world, args.protocol)
    if not world.main:
        return
    share = kept.sum() / max(predicted.sum(), 1)
    print(f"wrote {len(ds)} pseudo-labels to {args.out}: {100 * share:.1f}% of pixels kept", file=sys.stderr)
    for c, name in enumerate(CLASS_NAMES):
        if predicted[c]:
            print(f"  {name:14s} threshold {thresholds[c]:.3f} kept {100 * kept[c] / predicted[c]:5.1f}%",
                  file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser()))
