#!/usr/bin/env python
"""Mean and standard deviation over seeds, per row of several metrics.tsv files (same models in each).

  python benchmarks/seed_summary.py results/demo/metrics.tsv results/seed1/metrics.tsv results/seed2/metrics.tsv \\
      --out results/seed_summary.tsv
Prints a Markdown table of mIoU / mIoU16 / mIoU13 as mean ± std (sample std, n-1) and writes the TSV.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bdl import BDLError  # noqa: E402
from bdl.cli import run  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tables", nargs="+", help="metrics.tsv of each seed")
    p.add_argument("--out", help="summary (.tsv)")
    return p


def main(args):
    import csv

    import numpy as np

    from bdl.artifacts import atomic_path

    if len(args.tables) < 2:
        raise BDLError("give at least two metrics.tsv files")
    tables = []
    for path in args.tables:
        try:
            with open(path, newline="") as fh:
                tables.append({r["model"]: r for r in csv.DictReader(fh, delimiter="\t")})
        except OSError as exc:
            raise BDLError(f"{path}: cannot read ({exc.strerror})") from None
    models = list(tables[0])
    for path, t in zip(args.tables, tables):
        if list(t) != models:
            raise BDLError(f"{path}: rows {list(t)} differ from {args.tables[0]}'s {models}")
    cols = ["miou", "miou16", "miou13"]
    lines = ["\t".join(["model", "seeds"] + [f"{c}_{s}" for c in cols for s in ("mean", "std")])]
    md = ["| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for m in models:
        vals = {c: np.array([float(t[m][c]) for t in tables]) for c in cols}
        lines.append("\t".join([m, str(len(tables))] + [f"{f(vals[c]):.2f}" for c in cols
                                                        for f in (np.mean, lambda v: np.std(v, ddof=1))]))
        md.append(f"| {m} | " + " | ".join(f"{vals[c].mean():.2f} ± {vals[c].std(ddof=1):.2f}" for c in cols) + " |")
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text("\n".join(lines) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser()))
