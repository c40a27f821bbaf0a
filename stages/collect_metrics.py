#!/usr/bin/env python
"""Collect evaluation JSONs into the ablation table (the paper's Table 1 shape):
columns model, round, ssl_step, miou, miou16, miou13, one IoU column per class, then the protocol that
scored the model (stages/evaluate.py --help; empty for an evaluation made before the JSON recorded it).

  python stages/collect_metrics.py --eval m0=results/m0/eval.json round1_adv=... --out results/metrics.tsv
Model names follow the workflow: m0, round<k>_adv, round<k>_ssl<n>, oracle, m0_target_bn.
"""

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bdl import BDLError  # noqa: E402
from bdl.cli import name_path_pairs, run  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eval", nargs="+", required=True, metavar="NAME=JSON")
    p.add_argument("--out", required=True, help="ablation table (.tsv)")
    return p


def _round_step(name: str):
    m = re.fullmatch(r"round(\d+)_(adv|ssl(\d+))", name)
    if m:
        return m.group(1), (m.group(3) or "0")
    return ("0", "0") if name == "m0" else ("", "")


def main(args):
    import json

    from bdl.artifacts import atomic_path
    from bdl.data.labels import CLASS_NAMES

    header = ["model", "round", "ssl_step", "miou", "miou16", "miou13", *CLASS_NAMES, "protocol"]
    lines = ["\t".join(h.replace(" ", "_") for h in header)]
    for name, path in name_path_pairs(args.eval, "--eval"):
        try:
            res = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise BDLError(f"{path}: cannot read evaluation ({exc})") from None
        k, n = _round_step(name)
        per = [res["per_class"][c] for c in CLASS_NAMES]
        cells = [name, k, n] + [f"{res[key]:.2f}" for key in ("miou", "miou16", "miou13")]
        cells += ["" if v is None else f"{v:.2f}" for v in per]
        cells.append(res.get("protocol", ""))  # last, so the columns before it stay where readers expect them
        lines.append("\t".join(cells))
    with atomic_path(args.out) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:1] + [ln.split("\t", 6)[0] + "\t" + "\t".join(ln.split("\t")[3:6]) for ln in lines[1:]]),
          file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser()))
