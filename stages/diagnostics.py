#!/usr/bin/env python
"""Why a round helped or not, as one TSV (kind, model, overall, then one column per class):

  iou_delta            per-class IoU change from the previous model of the loop (mIoU change overall)
  pseudo_coverage      share of target train pixels each SSL step's pseudo-labels keep, per predicted class
  pseudo_val_coverage  the same thresholds applied to the model's predictions on the labelled val split
  pseudo_val_accuracy  share of those kept val pixels whose label is right (pseudo-label precision)

  python stages/diagnostics.py --eval m0=results/demo/m0/eval.json ... \\
      --pseudo round1_ssl1=results/demo/round1/ssl1/pseudo.h5 ... --out results/demo/diagnostics.tsv
The translator's perceptual and cycle losses are in each round's translator_losses.tsv and curves.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bdl.cli import name_path_pairs, run  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eval", nargs="+", required=True, metavar="NAME=JSON", help="evaluations in loop order")
    p.add_argument("--pseudo", nargs="*", default=[], metavar="NAME=H5", help="pseudo-label sets per SSL step")
    p.add_argument("--out", required=True, help="diagnostics (.tsv)")
    return p


def main(args):
    import json

    import numpy as np

    from bdl.artifacts import atomic_path, read_attrs
    from bdl.data.labels import CLASS_NAMES
    from bdl.seeds import YARDSTICKS

    def fmt(v):
        return "" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.2f}"

    rows = []
    evals = [(name, json.loads(path.read_text())) for name, path in name_path_pairs(args.eval, "--eval")]
    for (prev_name, prev), (name, cur) in zip(evals, evals[1:]):
        if name in YARDSTICKS or prev_name in YARDSTICKS:  # yardsticks, not steps of the loop
            continue
        deltas = [None if cur["per_class"][c] is None or prev["per_class"][c] is None
                  else cur["per_class"][c] - prev["per_class"][c] for c in CLASS_NAMES]
        rows.append(["iou_delta", f"{name}-{prev_name}", fmt(cur["miou"] - prev["miou"]), *map(fmt, deltas)])
    for name, path in name_path_pairs(args.pseudo, "--pseudo"):
        attrs = read_attrs(path)
        kept, predicted = np.asarray(attrs["kept_pixels"], float), np.asarray(attrs["predicted_pixels"], float)
        per = [100 * k / t if t else None for k, t in zip(kept, predicted)]
        rows.append(["pseudo_coverage", name, fmt(100 * kept.sum() / max(predicted.sum(), 1)), *map(fmt, per)])
    for name, res in evals:
        pl = res.get("pseudo_label_on_val")
        if pl:
            rows.append(["pseudo_val_coverage", name, fmt(pl["coverage"]),
                         *(fmt(pl["per_class_coverage"][c]) for c in CLASS_NAMES)])
            rows.append(["pseudo_val_accuracy", name, fmt(pl["accuracy"]),
                         *(fmt(pl["per_class_accuracy"][c]) for c in CLASS_NAMES)])
    header = ["kind", "model", "overall", *(c.replace(" ", "_") for c in CLASS_NAMES)]
    with atomic_path(args.out) as tmp:
        tmp.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    for r in rows:
        print(f"{r[0]:20s} {r[1]:24s} {r[2]}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser()))
