#!/usr/bin/env python
"""Check the source and target data before any training: layout, image/label pairing, decodability,
equal sizes and label ids inside the table. Writes a JSON summary (counts, sizes, class pixels).
Target *train* labels are not opened: adaptation never uses them."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bdl.cli import add_dataset_args, dataset_spec, run  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__)
    add_dataset_args(p, "source", "labelled source")
    add_dataset_args(p, "target", "target: train images, val images and labels")
    p.add_argument("--target-train-split", default="train")
    p.add_argument("--target-val-split", default="val")
    p.add_argument("--oracle", action="store_true", help="also check target train labels (oracle runs use them)")
    p.add_argument("--out", required=True, help="summary (.json)")
    return p


def main(args):
    from bdl.artifacts import write_json
    from bdl.data.readers import check_samples
    from bdl.training import progress

    src, tgt = dataset_spec(args, "source"), dataset_spec(args, "target")
    report = {
        "source": check_samples(src.samples(True), src.label_decoder(), lambda s: progress(s, desc="source")),
        "target_train": check_samples(tgt.samples(args.oracle, split=args.target_train_split), tgt.label_decoder(),
                                      lambda s: progress(s, desc="target train")),
        "target_val": check_samples(tgt.samples(True, split=args.target_val_split), tgt.label_decoder(),
                                    lambda s: progress(s, desc="target val")),
    }
    write_json(args.out, report)
    print(f"data ok: {report['source']['count']} source, {report['target_train']['count']} target train, "
          f"{report['target_val']['count']} target val images", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser()))
