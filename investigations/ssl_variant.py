#!/usr/bin/env python
"""Try another pseudo-label rule or SSL training on a finished run, without running the loop again.

Round K's first SSL step labels the target with the round's adversarial model and retrains it. This repeats
that step for each seed of a finished run with the flags it recorded (the training's in the step's
checkpoint, the rule's in its pseudo-label set) and yours added after them, so yours win: ``--pseudo-flags``
go to stages/pseudo_label.py, ``--train-flags`` to stages/train_segmenter.py. Each variant model is scored
on the splits the run scored (its val split, and its report split where it has one); printed beside the
run's own adversarial and SSL models, and the mean over the seeds. Choose on the val split, report the other.

  python investigations/ssl_variant.py --results results/n2d --seeds 0 1 2 --round 1 \\
      --pseudo-flags="--mode fixed --threshold 0.9" --train-flags="--lr 0.0025" --out results/n2d_fixed_lr

Only the first SSL step of a round is repeated (the preset's only one); later rounds are not run again from
the variant, so a variant of round 1 says what its step does, not what the rest of the loop would make of it.
The flags are split like a shell's words (shlex) but never run by a shell, and run from the repository root
(paths in them, as the run's recorded ones, are read from there). Only flags that take a value can be changed:
a recorded switch (--no-flip, --freeze-bn) stays on. With no flags and the run's threads (no --threads) it
makes the run's own pseudo-labels and model again. Reusing an --out with other flags is refused.
"""

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ssl_control import _OWN, _stage  # noqa: E402

from bdl.training import WATCH_ARGS  # noqa: E402

# the recorded target data flags that pseudo_label.py and evaluate.py take as they are
_TARGET = ("target_format", "target_root", "target_list", "target_label_map", "target_size",
           "target_on_mismatch", "protocol")


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", required=True, help="a finished run (with seed<s>/ folders when --seeds)")
    p.add_argument("--seeds", nargs="*", default=None, help="the seeds' folders to use (default: the run itself)")
    p.add_argument("--round", type=int, default=1, help="K: whose first SSL step to repeat")
    p.add_argument("--pseudo-flags", default="", help="added to the recorded pseudo_label.py flags")
    p.add_argument("--train-flags", default="", help="added to the recorded train_segmenter.py flags")
    p.add_argument("--out", required=True, help="folder for the variant's sets, models and scores")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the run's)")
    return p


def _miou(path: Path) -> float:
    return json.loads(path.read_text())["miou"]


def repeat(run: Path, k: int, out: Path, pseudo_flags: list, train_flags: list, threads) -> dict:
    """One seed's variant of round k's first SSL step: split -> (adversarial, run's SSL, variant) mIoU."""
    import h5py

    from bdl.artifacts import load_checkpoint
    from bdl.cli import option_args
    from bdl.errors import BDLError

    step = run / f"round{k}" / "ssl1"
    adv = run / f"round{k}" / "adv"
    translated = run / f"round{k}" / "translated.h5"
    if not (step / "segmenter.pt").is_file() or not (step / "pseudo.h5").is_file():
        raise BDLError(f"{step}: no finished SSL step (run the workflow first)")
    if not translated.is_file():
        raise BDLError(f"{translated}: not kept (keep_translated: false), so the step cannot be repeated")
    rec = load_checkpoint(step / "segmenter.pt", kind="segmenter")["args"]
    # this run's own sets (a copied or moved run records its old paths); data roots stay as recorded
    rec["translated"] = str(translated.resolve())
    rec["threads"] = threads or rec["threads"]
    with h5py.File(step / "pseudo.h5", "r") as fh:
        rule = {"mode": str(fh.attrs["mode"]), "threshold": float(fh.attrs["threshold"])}
    target = {key: rec[key] for key in _TARGET}
    out.mkdir(parents=True, exist_ok=True)
    pseudo, model = out / "pseudo.h5", out / "segmenter.pt"
    runtime = option_args({key: rec.get(key) for key in ("device", "threads", "workers", "bf16", "channels_last")})
    if not pseudo.exists():
        data = option_args({key: rec[key] for key in ("target_split", "target_cache")})
        _stage("pseudo_label.py", ["--segmenter", str((adv / "segmenter.pt").resolve()), *option_args(target),
                                   *data, *option_args(rule), *runtime, *pseudo_flags, "--out", str(pseudo)],
               out / "pseudo.log")
    if not model.exists():
        # the run's loss log, curves and TensorBoard folder are its own, not the variant's
        _stage("train_segmenter.py", ["--mode", "ssl", *option_args(rec, {*_OWN, *WATCH_ARGS}), "--init",
                                      str((adv / "segmenter.pt").resolve()), "--pseudo", str(pseudo),
                                      *train_flags, "--out", str(model)], out / "train.log")
    scores = {}
    for name in ("eval.json", "eval_report.json"):
        if not (step / name).is_file():
            continue
        split = json.loads((step / name).read_text())["split"]
        own = out / name
        if not own.exists():
            _stage("evaluate.py", ["--segmenter", str(model), *option_args(target), "--split", split,
                                   "--num-predictions", "0", *runtime, "--out", str(own)], out / f"{own.stem}.log")
        scores[split] = (_miou(adv / name), _miou(step / name), _miou(own))
    return scores


def main(args):
    from bdl.errors import BDLError

    results, k = Path(args.results), args.round
    runs = {s: results / f"seed{s}" for s in args.seeds} if args.seeds else {"": results}
    out = Path(args.out).resolve()
    pseudo_flags, train_flags = shlex.split(args.pseudo_flags), shlex.split(args.train_flags)
    # the stages skip what exists: a folder made with other flags would give their scores as these
    asked = {"results": str(results.resolve()), "round": k, "pseudo_flags": pseudo_flags,
             "train_flags": train_flags, "threads": args.threads}
    record = out / "variant.json"
    if record.exists() and json.loads(record.read_text()) != asked:
        sys.exit(f"error: {record}: {out} holds a variant made with other flags; give another --out")
    out.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(asked, indent=1) + "\n")
    print(f"round {k}'s SSL step of {results}, with pseudo_label.py {args.pseudo_flags or '(as recorded)'} and "
          f"train_segmenter.py {args.train_flags or '(as recorded)'}; models in {out}")
    print("seed\tsplit\tadversarial\trun's SSL\tvariant\tvariant - adversarial\trun's SSL - adversarial")
    table = {}
    try:
        for seed, run in runs.items():
            for split, (adv, ssl, var) in repeat(run, k, out / (f"seed{seed}" if seed else ""), pseudo_flags,
                                                 train_flags, args.threads).items():
                table.setdefault(split, []).append((adv, ssl, var))
                print(f"{seed or '-'}\t{split}\t{adv:.2f}\t{ssl:.2f}\t{var:.2f}\t{var - adv:+.2f}\t{ssl - adv:+.2f}",
                      flush=True)
    except BDLError as exc:
        sys.exit(f"error: {exc}")
    for split, rows in table.items():
        adv, ssl, var = np.array(rows).mean(0)
        print(f"mean\t{split}\t{adv:.2f}\t{ssl:.2f}\t{var:.2f}\t{var - adv:+.2f}\t{ssl - adv:+.2f}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
