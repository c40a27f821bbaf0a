#!/usr/bin/env python
"""The loop's ablation tables of several seeds as one summary: per row the mean and standard deviation over
the seeds (sample std, n-1) of mIoU / mIoU16 / mIoU13, the share of the M0-to-oracle gap the final model
closes, every step that loses on the mean, each step's change on every seed (mean ± std, the seeds it gains
on, and the 95% interval of the mean change, paired t: whether the seeds tell the step apart from no change),
and a plot of mIoU per step with each seed's point.

  python stages/seed_summary.py --metrics 0=results/x/seed0/metrics.tsv 1=results/x/seed1/metrics.tsv \\
      --out results/x/seed_summary.tsv --checks results/x/seed_summary.json --plot results/x/seed_summary.png
Prints the table as Markdown and the checks; the tables must hold the same models in the same order.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bdl import BDLError  # noqa: E402
from bdl.cli import name_path_pairs, run  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--metrics", nargs="+", required=True, metavar="SEED=TSV", help="metrics.tsv of each seed")
    p.add_argument("--out", required=True, help="summary table (.tsv): model, seeds, <column>_mean, <column>_std")
    p.add_argument("--checks", help="the gap closed, the losing steps and each step's change per seed (.json)")
    p.add_argument("--plot", help="mIoU per step over the seeds (.png)")
    return p


def main(args):
    from bdl import seeds
    from bdl.artifacts import atomic_path, write_json

    pairs = name_path_pairs(args.metrics, "--metrics")
    if len(pairs) < 2:
        raise BDLError("--metrics: give at least two seeds' tables (a spread needs two)")
    names = [name for name, _ in pairs]
    tables = seeds.read_tables([path for _, path in pairs])
    summary = seeds.summarise(tables)
    mean = {model: cols["miou"][0] for model, cols in summary.items()}
    changes = seeds.step_changes(tables)
    checks = seeds.loop_checks(mean) + seeds.change_lines(tables, names, changes)
    with atomic_path(args.out) as tmp:
        tmp.write_text(seeds.summary_tsv(summary, names))
    if args.checks:
        closed = seeds.gap_closed(mean)
        loop = seeds.loop_rows(mean)
        write_json(args.checks, {"seeds": names, "final": loop[-1], "best": max(loop, key=mean.get),
                                 "gap_closed": None if closed is None else round(closed, 4),
                                 "losing_steps": seeds.losing_steps(mean),
                                 "step_changes": changes, "lines": checks})
    if args.plot:
        closed, losses = seeds.gap_closed(mean), seeds.losing_steps(mean)
        gap = "" if closed is None else f": the final model closes {100 * closed:.0f}% of the gap"
        title = f"seeds {', '.join(names)}{gap}\nsteps that lose on the mean: {len(losses) or 'none'}"
        seeds.plot_seeds(tables, names, args.plot, title)
    print(seeds.summary_markdown(summary))
    print("\n".join(checks))


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser()))
