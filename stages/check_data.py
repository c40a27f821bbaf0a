#!/usr/bin/env python
"""Check the source and target data before any training: layout, image/label pairing, decodability,
label ids inside the table, label sizes equal to their images' (or the --*-on-mismatch policy, whose
skipped and resized pairs are recorded) and one frame size per training split read at its own size.
Writes a JSON summary (counts, sizes, class pixels, mismatched pairs).
Target *train* labels are not opened: adaptation never uses them."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bdl.cli import add_dataset_args, dataset_spec, run  # noqa: E402
from bdl.defaults import default  # noqa: E402

PARTS = ["source", "target_train", "target_val"]


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__)
    add_dataset_args(p, "source", "labelled source")
    add_dataset_args(p, "target", "target: train images, val images and labels")
    p.add_argument("--target-train-split", default=default("target.train_split"))
    p.add_argument("--target-val-split", default=default("target.val_split"))
    p.add_argument("--oracle", action="store_true", help="also check target train labels (oracle runs use them)")
    p.add_argument("--parts", nargs="+", choices=PARTS,
                   help="what to check (default: all; the report split alone: target_val with --target-val-split <it>)")
    p.add_argument("--out", required=True, help="summary (.json)")
    return p


def main(args):
    from bdl.artifacts import write_json
    from bdl.data.readers import check_samples
    from bdl.training import progress

    tgt = dataset_spec(args, "target")

    def check(spec, labelled, split, desc, trained_on):
        # training splits read at the files' own size are batched and stored as sets: one size for all;
        # the val split is scored one frame at a time at its label's size, so it may mix sizes
        one_size = f"{spec.domain}.size" if trained_on and getattr(args, f"{spec.domain}_size") is None else None
        return check_samples(spec.samples(labelled, split=split, keep_mismatched=True), spec.label_decoder(),
                             lambda s: progress(s, desc=desc), spec.on_mismatch, spec.mismatch_key, one_size)

    checks = {
        "source": lambda: check(dataset_spec(args, "source"), True, None, "source", True),
        "target_train": lambda: check(tgt, args.oracle, args.target_train_split, "target train", True),
        "target_val": lambda: check(tgt, True, args.target_val_split, "target val", False),
    }
    report = {part: checks[part]() for part in args.parts or PARTS}
    for part, facts in report.items():
        for m in facts["mismatched"]:
            print(f"{part}: {m['label']} is {m['label_size']}, its image {m['image_size']}: {m['action']}",
                  file=sys.stderr)
    write_json(args.out, report)
    names = {"source": "source", "target_train": "target train", "target_val": f"target {args.target_val_split}"}
    print("data ok: " + ", ".join(f"{facts['count']} {names[part]}" for part, facts in report.items()) + " images",
          file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser()))
