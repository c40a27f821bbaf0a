#!/usr/bin/env python
"""Decode one domain's training images once, at the size the stages use, into an HDF5 cache that the
training and inference stages read instead of the image files (``--source-cache``/``--target-cache``).

  --domain source: images and their decoded trainId labels
  --domain target: images only (adaptation never reads a target training label)
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bdl.cli import add_dataset_args, add_protocol_arg, dataset_spec, run  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--domain", required=True, choices=("source", "target"))
    add_dataset_args(p, "source", "for --domain source")
    add_dataset_args(p, "target", "for --domain target (its train split)")
    p.add_argument("--workers", type=int, default=0, help="decoding worker processes")
    add_protocol_arg(p)
    p.add_argument("--out", required=True, help="image cache (.h5)")
    return p


def main(args):
    from bdl.data.cache import write_cache
    from bdl.training import progress

    spec = dataset_spec(args, args.domain)
    labelled = args.domain == "source"
    samples = spec.samples(with_labels=labelled)
    size = getattr(args, f"{args.domain}_size")
    attrs = {"made_by": "cache_images", "domain": args.domain, args.domain: json.dumps(vars(spec))}
    n = write_cache(samples, spec.label_decoder() if labelled else None, size, args.out, attrs, args.workers,
                    lambda it, total: progress(it, total=total, desc=f"cache {args.domain}"), spec,
                    args.protocol)
    print(f"cached {n} {args.domain} images{' with labels' if labelled else ''} in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser()))
