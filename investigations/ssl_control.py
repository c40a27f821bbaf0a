#!/usr/bin/env python
"""Do the pseudo-labels help, or only the extra iterations? A control for the SSL steps of a finished run.

Each SSL step of round K retrains M for ``iterations.ssl`` more iterations with the pseudo-label loss added.
The control arm repeats exactly those trainings (same flags, seed, learning-rate schedule, translated set,
adversarial term, chained from the same adversarial model) without the pseudo-labels, and scores each
model on the target val split. The SSL arm's scores are the run's own ``eval.json`` files (the stages are
deterministic on the CPU). A positive difference is what the pseudo-labels add.

  python investigations/ssl_control.py --results results/demo --round 2
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# flags of train_segmenter.py that name this step's own files, or the SSL inputs the control leaves out
_OWN = {"mode", "pseudo", "init", "out", "losses", "curves"}


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="results/demo", help="a finished run")
    p.add_argument("--round", type=int, default=1, help="K: whose SSL steps to control")
    p.add_argument("--out", default=None, help="folder for the control models (default: a temporary folder)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the run's)")
    return p


def _stage(script: str, argv: list[str], log: Path) -> None:
    with open(log, "w") as fh:
        # from the repository root: the recorded data paths are relative to where the workflow ran
        proc = subprocess.run([sys.executable, str(REPO / "stages" / script), *argv], stdout=fh, stderr=fh, cwd=REPO)
    if proc.returncode:
        last = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        sys.exit(f"error: {script} failed ({last[0]}); log: {log}")


def main(args):
    from bdl.artifacts import load_checkpoint
    from bdl.cli import option_args

    R, k = Path(args.results), args.round
    steps = sorted((R / f"round{k}").glob("ssl*/segmenter.pt"), key=lambda p: int(p.parent.name[3:]))
    if not steps:
        sys.exit(f"error: {R}/round{k}: no finished SSL steps (run the workflow first)")
    out = Path(args.out or tempfile.mkdtemp(prefix="bdl-ssl-control-")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    adv = R / f"round{k}" / "adv"
    prev = (adv / "segmenter.pt").resolve()
    base = json.loads((adv / "eval.json").read_text())["miou"]
    print(f"round {k} of {R}: adversarial model {base:.2f} mIoU; control models in {out}")
    print("step\tssl (pseudo-labels)\tcontrol (same training, no pseudo-labels)\tdifference")
    for ckpt in steps:
        step = ckpt.parent.name
        rec = load_checkpoint(ckpt, kind="segmenter")["args"]
        # the translated set from this run's folder (a copied or moved run records its old path); data roots
        # stay as recorded
        rec["translated"] = str((R / f"round{k}" / "translated.h5").resolve())
        if args.threads:
            rec["threads"] = args.threads
        model = out / step / "segmenter.pt"
        model.parent.mkdir(exist_ok=True)
        _stage("train_segmenter.py", ["--mode", "adversarial", *option_args(rec, _OWN), "--init", str(prev),
                                      "--out", str(model)], model.parent / "train.log")
        # evaluate reads the val split's files; the cache holds the train split
        own_split = ("target_split", "target_cache")
        target = {k_: v for k_, v in rec.items() if k_.startswith("target_") and k_ not in own_split}
        ssl_eval = json.loads((ckpt.parent / "eval.json").read_text())
        split = ssl_eval["split"]
        _stage("evaluate.py", ["--segmenter", str(model), *option_args(target), "--target-split", split,
                               "--split", split, "--num-predictions", "0", "--device", rec["device"],
                               "--threads", str(rec["threads"]), "--out", str(model.parent / "eval.json")],
               model.parent / "eval.log")
        ssl = ssl_eval["miou"]
        ctrl = json.loads((model.parent / "eval.json").read_text())["miou"]
        print(f"{step}\t{ssl:.2f}\t{ctrl:.2f}\t{ssl - ctrl:+.2f}", flush=True)
        prev = model


if __name__ == "__main__":
    main(get_args_parser().parse_args())
