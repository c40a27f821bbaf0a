"""What the training loops share: poly schedule, checkpoint/resume, loss log and progress, NaN guard.
(Process set-up, the device and the compute format are in ``bdl.runtime``.)"""

import csv
import hashlib
import json
import math
import sys
from pathlib import Path

import torch

from bdl import BDLError
from bdl.artifacts import atomic_path, load_checkpoint, save_checkpoint


def poly_lr(base: float, step: int, max_steps: int, power: float = 0.9) -> float:
    return base * (1 - step / max(max_steps, 1)) ** power


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)


def args_fingerprint(args: dict, ignore=("threads", "device", "workers", "checkpoint_every", "log_every")) -> str:
    """A hash of the settings that change results; resuming is allowed only into the same fingerprint."""
    kept = {k: v for k, v in sorted(args.items()) if k not in ignore and k != "out"}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_finite(stage: str, step: int, losses: dict) -> None:
    for name, value in losses.items():
        v = float(value.detach()) if hasattr(value, "detach") else float(value)
        if not math.isfinite(v):
            raise BDLError(f"{stage}: loss '{name}' became {v} at step {step}; "
                           "the last good checkpoint is kept, lower the learning rate or check the data")


class Resumable:
    """The in-progress checkpoint of one stage: ``<out>.partial.pt`` beside the final artifact.

    Snakemake removes a failed job's outputs but not this file, so a rerun continues from it.
    """

    def __init__(self, out: Path, args: dict, every: int):
        self.out = Path(out)
        self.path = self.out.with_name(self.out.name + ".partial.pt")
        self.every = max(int(every), 0)
        self.fingerprint = args_fingerprint(args)

    def load(self) -> dict | None:
        if not self.path.exists():
            return None
        state = load_checkpoint(self.path)
        if state.get("fingerprint") != self.fingerprint:
            print(f"[resume] {self.path}: made with other settings; starting from step 0", file=sys.stderr)
            return None
        print(f"[resume] {self.path}: resuming at step {state['step']}", file=sys.stderr)
        return state

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def save(self, state: dict) -> None:
        state["fingerprint"] = self.fingerprint
        save_checkpoint(self.path, state)

    def finish(self) -> None:
        if self.path.exists():
            self.path.unlink()


class LossLog:
    """Rows of (step, loss terms...) in memory and in the checkpoint; written as TSV at the end."""

    def __init__(self, rows: list | None = None):
        self.rows = list(rows or [])

    def add(self, step: int, losses: dict) -> None:
        self.rows.append({"step": step, **{k: float(v) for k, v in losses.items()}})

    def write(self, path) -> None:
        keys = ["step"] + sorted({k for r in self.rows for k in r} - {"step"})
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, keys, delimiter="\t", restval="")
            w.writeheader()
            w.writerows(self.rows)


class TorchRNG:
    """torch's global generator as a checkpointable object (dropout and every draw without a generator)."""

    def state_dict(self):
        return torch.get_rng_state()

    def load_state_dict(self, state) -> None:
        torch.set_rng_state(state)


class GeneratorState:
    """A ``torch.Generator`` as a checkpointable object."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def state_dict(self):
        return self.generator.get_state()

    def load_state_dict(self, state) -> None:
        self.generator.set_state(state)


class TrainingRun:
    """The skeleton both training loops share. ``state`` names every object a resumed run must get back
    (modules, optimisers, image pools, random generators: anything with ``state_dict``/``load_state_dict``);
    ``start`` restores them from the partial checkpoint, ``steps`` counts the remaining iterations under a
    progress bar, and ``end_step`` logs a loss row every ``log_every`` steps and saves a partial checkpoint
    every ``resumable.every``, under the names of ``state``.
    """

    def __init__(self, stage: str, iterations: int, log_every: int, resumable: Resumable, state: dict):
        self.stage, self.iterations, self.log_every = stage, iterations, log_every
        self.resumable, self.state = resumable, state
        self.log, self.first, self.bar = LossLog(), 0, None

    def start(self) -> int:
        """Restore a partial checkpoint if there is one; the first step to run."""
        saved = self.resumable.load()
        if saved is not None:
            for name, obj in self.state.items():
                obj.load_state_dict(saved[name])
            self.log, self.first = LossLog(saved["log"]), int(saved["step"])
        return self.first

    def steps(self):
        self.bar = progress(total=self.iterations, desc=self.stage)
        self.bar.update(self.first)
        try:
            yield from range(self.first, self.iterations)
        finally:
            self.bar.close()

    def end_step(self, step: int, lr: float, losses: dict) -> None:
        done = step + 1
        if done % self.log_every == 0 or done == self.iterations:
            log_step(self.log, self.bar, self.stage, done, self.iterations, lr, losses)
        self.bar.update(1)
        if self.resumable.due(done) and done < self.iterations:
            self.resumable.save({"kind": "partial", **{name: obj.state_dict() for name, obj in self.state.items()},
                                 "step": done, "log": self.log.rows})


def log_step(log: LossLog, bar, stage: str, step: int, total: int, lr: float, losses: dict) -> None:
    """Record one logged step: a loss-log row, the progress bar's figures and a plain log line."""
    values = {k: v.item() for k, v in losses.items()}
    log.add(step, values | {"lr": lr})
    bar.set_postfix({k: f"{v:.3f}" for k, v in values.items()})
    bar.write(f"[{stage}] step {step}/{total} lr {lr:.2e} " + " ".join(f"{k} {v:.4f}" for k, v in values.items()),
              file=sys.stderr)


def progress(iterable=None, total=None, desc=""):
    from tqdm import tqdm

    # Under Snakemake stderr is a log file: update rarely so the log stays readable.
    interactive = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, mininterval=0.5 if interactive else 30, file=sys.stderr,
                dynamic_ncols=interactive, ascii=not interactive)


def save_trained(args, checkpoint: dict, log: LossLog, resumable: Resumable, title: str) -> None:
    """A training stage's outputs: the final checkpoint (then the partial one goes), the loss log and curves."""
    save_checkpoint(args.out, checkpoint | {"step": args.iterations, "log": log.rows})
    resumable.finish()
    if args.losses:
        log.write(args.losses)
    if args.curves:
        from bdl.viz import plot_curves

        plot_curves(log.rows, args.curves, title)
    print(f"saved {args.out} after {args.iterations} iterations", file=sys.stderr)
