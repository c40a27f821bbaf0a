#!/usr/bin/env python
"""Mean and standard deviation over seeds, per row of several metrics.tsv files (same models in each).

  python benchmarks/seed_summary.py results/demo/metrics.tsv results/seed1/metrics.tsv results/seed2/metrics.tsv \\
      --out results/seed_summary.tsv
Prints a Markdown table of mIoU / mIoU16 / mIoU13 as mean ± std (sample std, n-1) and writes the TSV, then,
on the mean mIoU, the share of the M0-to-oracle gap the final model closes and every step of the loop that
loses: M_1 adversarial below M0, an SSL step below the model before it, a round's last model below the
round before's, a final model below any row.
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
    mean = {m: float(np.mean([float(t[m]["miou"]) for t in tables])) for m in models}
    print("\n".join(loop_checks(mean)))


def loop_checks(mean: dict) -> list[str]:
    """Lines on the mean mIoU of each model of the loop (names as metrics.tsv's): the gap closed and the
    steps that lose."""
    loop = [m for m in mean if m != "oracle"]
    final = loop[-1]
    out = []
    if "oracle" in mean and "m0" in mean and mean["oracle"] > mean["m0"]:
        closed = (mean[final] - mean["m0"]) / (mean["oracle"] - mean["m0"])
        out.append(f"gap closed by {final}: {100 * closed:.0f}% ((final - m0) / (oracle - m0) of the means)")
    # M_1 against M0 and each SSL step against the model before it; an adversarial M_k (k >= 2) is judged
    # with its round, through the round's last model
    steps = [(a, b) for a, b in zip(loop, loop[1:]) if a == "m0" or "_ssl" in b]

    def below(b, a, a_is=""):  # as many decimals as it takes to show the two apart
        digits = next((d for d in range(2, 6) if f"{mean[b]:.{d}f}" != f"{mean[a]:.{d}f}"), 6)
        return f"{b} {mean[b]:.{digits}f} < {a_is}{a} {mean[a]:.{digits}f}"

    def lower(b, a):  # means of 2-decimal tables: a difference in the last float bits is a tie
        return mean[b] < mean[a] - 1e-9

    losses = [below(b, a) for a, b in steps if lower(b, a)]
    rounds = sorted({int(m[5:].split("_")[0]) for m in loop if m.startswith("round")})
    lasts = [[m for m in loop if m.startswith(f"round{k}_")][-1] for k in rounds]
    losses += [f"{below(b, a)} (round {k + 1} below round {k})"
               for k, a, b in zip(rounds, lasts, lasts[1:]) if lower(b, a)]
    best = max(loop, key=mean.get)
    if lower(final, best):  # a final model level with the best row is the best row
        losses.append(f"final {below(final, best, 'best row ')}")
    out.append("steps that lose on the mean: " + ("; ".join(losses) if losses else "none"))
    return out


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser()))
