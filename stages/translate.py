#!/usr/bin/env python
"""Translate the whole source set with F and write it to one HDF5 file: the uint8 images (lossless, compressed),
names, and attributes naming the translator and data that made it. The labels are not copied: the segmenter
reads them from the source (its cache or files). export_set.py writes it, with those labels, as GTA5-layout PNGs."""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bdl.cli import (  # noqa: E402
    add_cache_arg,
    add_dataset_args,
    add_procs_arg,
    add_protocol_arg,
    add_runtime_args,
    dataset_spec,
    image_set,
    run,
)
from bdl.defaults import default  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--translator", required=True, help="checkpoint from train_translator.py")
    add_dataset_args(p, "source", "labelled source to translate")
    add_cache_arg(p, "source")
    add_protocol_arg(p)
    p.add_argument("--batch-size", type=int, default=default("runtime.inference_batch_size"))
    add_runtime_args(p, out="translated set (.h5)")
    add_procs_arg(p)
    return p


def main(args):
    from bdl.artifacts import load_checkpoint, load_weights, names_hash
    from bdl.data.datasets import make_loader
    from bdl.distributed import World
    from bdl.loops.inference import translate_set
    from bdl.models import build_translator
    from bdl.runtime import ComputeFormat, start_process

    device = start_process(args)
    state = load_checkpoint(args.translator, kind="translator")
    generator, _ = build_translator(state["arch"])
    load_weights(generator, state["model"], args.translator, "translator")
    spec = dataset_spec(args, "source")
    ds = image_set(args, "source", True, spec=spec)  # the labelled frames: the listing the segmenter trains on
    first = ds[0]["image"]
    attrs = {"made_by": "translate", "translator": str(args.translator),
             "names_hash": names_hash(s.name for s in ds.samples), "source": json.dumps(vars(spec)),
             "source_size": json.dumps(args.source_size)}
    n = translate_set(generator, make_loader(ds, args.batch_size, False, args.workers), args.out, attrs, device,
                      tuple(first.shape[-2:]), ComputeFormat.of(args, device), World.from_env())
    if World.from_env().main:
        print(f"wrote {n} translated images to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser()))
