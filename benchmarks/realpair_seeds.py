#!/usr/bin/env python
"""The whole loop on the real-photograph development pair, over seeds and targets, with its summary.

For each target of ``realpair_dev`` (a labelled daytime source and two unlabelled looks of another drive) and
each seed, runs the workflow with the given config files and only the roots, the results folder and the seed
changed, times it, then prints per target the mean ± std of every row over the seeds, the share of the
M0-to-oracle gap the final model closes and every step of the loop that loses on the mean
(``seed_summary.py``).

  python benchmarks/realpair_seeds.py --configfile config/cpu_real.yaml --out results/cpu_real
A finished run is not redone (Snakemake finds nothing to do), so a rerun only prints the summary again.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bdl import BDLError  # noqa: E402
from bdl.cli import run  # noqa: E402

TARGETS = {"lowlight": "target_lowlight_cityscapeslayout", "dusk_sim": "target_dusk_sim_cityscapeslayout"}


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configfile", nargs="+", default=["config/cpu_real.yaml"], help="the settings to run")
    p.add_argument("--pair", default=os.environ.get("BDL_REALPAIR", str(REPO.parent / "shared" / "realpair_dev")),
                   help="the realpair_dev folder (default: ../shared/realpair_dev, or $BDL_REALPAIR)")
    p.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", default="results/cpu_real", help="one results folder per target and seed under this")
    p.add_argument("--cores", type=int, default=2, help="snakemake --cores")
    return p


def main(args):
    import yaml

    pair, out = Path(args.pair).resolve(), Path(args.out).resolve()
    if not (pair / "source_day_gta5layout").is_dir():
        raise BDLError(f"{pair}: not a realpair_dev folder (no source_day_gta5layout/); give --pair")
    configs = [str(Path(c).resolve()) for c in args.configfile]
    for target in args.targets:
        roots = out / target / "roots.yaml"
        roots.parent.mkdir(parents=True, exist_ok=True)
        roots.write_text(yaml.safe_dump({"source": {"root": str(pair / "source_day_gta5layout")},
                                         "target": {"root": str(pair / TARGETS[target])}}))
        for seed in args.seeds:
            results = out / target / f"seed{seed}"
            log = out / target / f"seed{seed}.log"
            start = time.monotonic()
            with open(log, "w") as fh:
                proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(args.cores), "--configfile",
                                       *configs, str(roots), "--config", f"results={results}", f"seed={seed}"],
                                      cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)
            if proc.returncode:
                raise BDLError(f"{target} seed {seed}: the workflow failed; log: {log}")
            print(f"{target} seed {seed}: {(time.monotonic() - start) / 60:.1f} min ({results})", flush=True)
    for target in args.targets:
        tables = [str(out / target / f"seed{s}" / "metrics.tsv") for s in args.seeds]
        if len(tables) < 2:  # a standard deviation needs two
            print(f"\n### {target}: one seed, no summary; its table: {tables[0]}")
            continue
        print(f"\n### {target}: {len(args.seeds)} seeds")
        sys.stdout.flush()
        if subprocess.run([sys.executable, str(REPO / "benchmarks" / "seed_summary.py"), *tables,
                           "--out", str(out / target / "seed_summary.tsv")]).returncode:
            raise BDLError(f"{target}: seed_summary.py failed on {', '.join(tables)}")


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser()))
