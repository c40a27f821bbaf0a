"""What the training loops share: poly schedule, checkpoint/resume, loss log and progress, NaN guard.
(Process set-up, the device and the compute format are in ``bdl.runtime``.)"""

import csv
import hashlib
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from bdl.artifacts import atomic_path, load_checkpoint, save_checkpoint
from bdl.distributed import is_main
from bdl.errors import BDLError
from bdl.stopping import (
    TIME_LIMIT,
    JobDeadline,
    StoppedOnSignal,
    StopRequest,
    describe,
    stop_after_saving,
    stop_record,
)


def poly_lr(base: float, step: int, max_steps: int, power: float = 0.9) -> float:
    """``max_steps`` is the horizon where the rate would reach zero; a run may stop before it (the reference
    decays over 250k steps and stops at 120k)."""
    return base * (1 - step / max(max_steps, 1)) ** power


def step_lr(base: float, step: int, every: int, gamma: float) -> float:
    """The rate times ``gamma`` once per ``every`` steps (the reference's FCN-8s schedule)."""
    return base * gamma ** (step // every)


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)


WATCH_ARGS = ("losses", "curves", "tensorboard", "eval_every", "eval_split", "samples")


# switches added since partial checkpoints were first written, left out of the fingerprint while off (their old
# behaviour), so that a run interrupted before they existed resumes
LATER_SWITCHES = ("domain_bn",)


def args_fingerprint(args: dict, ignore=("threads", "device", "workers", "procs", "checkpoint_every", "log_every",
                                         "stop_before_limit", *WATCH_ARGS)) -> str:
    """A hash of the settings that change results; resuming is allowed only into the same fingerprint."""
    kept = {k: v for k, v in sorted(args.items())
            if k not in ignore and k != "out" and not (k in LATER_SWITCHES and v is False)}
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

    def __init__(self, out: Path, args: dict, every: int, stop_before_limit: float = 0):
        self.out = Path(out)
        self.path = self.out.with_name(self.out.name + ".partial.pt")
        self.every = max(int(every), 0)
        self.fingerprint = args_fingerprint(args)
        self.stop_before_limit = stop_before_limit  # seconds before a SLURM job's end (bdl.stopping.JobDeadline)

    def load(self) -> dict | None:
        if not self.path.exists():
            return None
        state = load_checkpoint(self.path)
        if state.get("fingerprint") != self.fingerprint:
            if is_main():
                print(f"[resume] {self.path}: made with other settings; starting from step 0", file=sys.stderr)
            return None
        if is_main():  # every process reads the checkpoint; one says so
            print(f"[resume] {self.path}: resuming at step {state['step']}", file=sys.stderr)
        return state

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def save(self, state: dict) -> None:
        if not is_main():  # the processes of a distributed run hold the same state: rank 0 writes it
            return
        state["fingerprint"] = self.fingerprint
        save_checkpoint(self.path, state)

    def finish(self) -> None:
        if is_main() and self.path.exists():
            self.path.unlink()


class LossLog:
    """Rows of (step, loss terms...) in memory and in the checkpoint. Given a path, each row is also appended to
    that TSV as it comes, so a long job can be watched and a killed one leaves its rows on disk. ``stops``: the
    steps after which earlier runs stopped on a signal; the TSV then has a ``run`` column, the run (1, 2, ...) that
    logged each row, so where it changes the stage resumed (the rows themselves, and so the checkpoint, are those
    of an uninterrupted run)."""

    def __init__(self, rows: list | None = None, path=None, stops=()):
        self.rows = list(rows or [])
        self.stops = sorted(stops)
        self.path, self.columns = (Path(path) if path else None), None
        if self.path is not None:
            # a resumed run starts from its checkpoint's rows: those logged after it are made again
            self.write(self.path)

    def _tsv(self, row: dict) -> dict:
        if not self.stops:
            return row
        return row | {"run": 1 + sum(stop < row["step"] for stop in self.stops)}

    def add(self, step: int, values: dict) -> None:
        row = {"step": step, **{k: float(v) for k, v in values.items()}}
        self.rows.append(row)
        if self.path is None:
            return
        row = self._tsv(row)
        if self.columns is None or not set(row) <= set(self.columns):
            self.write(self.path)  # a new column (a first val score, say) needs a new header
            return
        with open(self.path, "a", newline="") as fh:  # closing flushes: the row is on disk now
            csv.DictWriter(fh, self.columns, delimiter="\t", restval="").writerow(row)

    def write(self, path) -> None:
        rows = [self._tsv(r) for r in self.rows]
        keys = ["step"] + sorted({k for r in rows for k in r} - {"step"})
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, keys, delimiter="\t", restval="")
            w.writeheader()
            w.writerows(rows)
        if self.path is not None and Path(path) == self.path:
            self.columns = keys


@dataclass
class Watch:
    """What a training stage shows while it runs, besides its progress bar and log lines: the loss TSV
    (``losses``) appended row by row, loss curves (``curves``) redrawn at every checkpoint, TensorBoard event
    files (``tensorboard``, a folder), a picture made at every checkpoint (``snapshot(step)``: the
    translator's sample grid), and every ``eval_every`` steps a score (``evaluate() -> {"val_miou": ...}``)
    logged with the losses. None of it changes what is trained."""

    losses: Path | None = None
    curves: Path | None = None
    title: str = ""
    tensorboard: Path | None = None
    eval_every: int = 0
    evaluate: Callable[[], dict] | None = None
    snapshot: Callable[[int], None] | None = None

    @classmethod
    def from_args(cls, args, title: str, **given):
        tb = getattr(args, "tensorboard", None)
        return cls(losses=args.losses, curves=args.curves, title=title, tensorboard=Path(tb) if tb else None,
                   eval_every=getattr(args, "eval_every", 0) or 0, **given)

    def curves_now(self, rows: list) -> None:
        if self.curves:
            from bdl.viz import plot_curves

            plot_curves(rows, self.curves, self.title)


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
    every ``resumable.every``, under the names of ``state``; ``watch`` says what else is shown on the way.
    """

    def __init__(self, stage: str, iterations: int, log_every: int, resumable: Resumable, state: dict,
                 watch: Watch | None = None):
        self.stage, self.iterations, self.log_every = stage, iterations, log_every
        self.resumable, self.state, self.watch = resumable, state, watch or Watch()
        self.log, self.first, self.bar, self.board = None, 0, None, None
        self.stop = self.deadline = None
        self.stops = []  # the earlier runs' stops on a signal (bdl.stopping.stop_record), oldest first

    def start(self) -> int:
        """Restore a partial checkpoint if there is one; the first step to run."""
        saved = self.resumable.load()
        rows = []
        if saved is not None:
            for name, obj in self.state.items():
                obj.load_state_dict(saved[name])
            rows, self.first = saved["log"], int(saved["step"])
            self.stops = list(saved.get("stops", []))
            if self.stops and is_main():
                for n, stop in enumerate(self.stops, 1):
                    print(f"[resume] run {n} {describe(stop)}", file=sys.stderr)
                print(f"[resume] the previous run {describe(self.stops[-1])}; run {len(self.stops) + 1} resumes "
                      f"at step {self.first}", file=sys.stderr)
        self.log = LossLog(rows, self.watch.losses if is_main() else None, [s["step"] for s in self.stops])
        if self.watch.tensorboard and is_main():
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: a resumed run drops the events it logged after its checkpoint, then logs them again
            self.board = SummaryWriter(str(self.watch.tensorboard), purge_step=self.first or None)
        # from here on a signal means "checkpoint at the next step boundary and exit" (bdl.stopping)
        self.stop = StopRequest(self.first).install()
        self.deadline = JobDeadline(self.resumable.stop_before_limit)
        return self.first

    def steps(self):
        self.bar = progress(total=self.iterations, desc=self.stage)
        self.bar.update(self.first)
        try:
            for step in range(self.first, self.iterations):
                yield step
                # the last step too: a stage stopped there resumes at its end and only writes its final file
                self.stop_if_asked(step + 1)
        finally:
            self.bar.close()
            if self.board is not None:
                self.board.close()

    def end_step(self, step: int, lr: float, losses: dict) -> None:
        done, watch = step + 1, self.watch
        if not is_main():  # rank 0 logs, scores and checkpoints for all (the losses it gets are the ranks' mean)
            self.bar.update(1)
            return
        row = {}
        if done % self.log_every == 0 or done == self.iterations:
            row = log_step(self.bar, self.stage, done, self.iterations, lr, losses)
        if watch.evaluate is not None and watch.eval_every > 0 and (done % watch.eval_every == 0
                                                                     or done == self.iterations):
            # the evaluation draws nothing from torch's generator, but fork it anyway: a score must not move
            # the run's random stream
            with torch.random.fork_rng(devices=[]):
                scores = watch.evaluate()
            self.bar.write(f"[{self.stage}] step {done}: " + " ".join(f"{k} {v:.2f}" for k, v in scores.items()),
                           file=sys.stderr)
            row |= scores
        if row:
            self.log.add(done, row)
            if self.board is not None:
                for key, value in row.items():
                    self.board.add_scalar(f"{self.stage}/{key}", value, done)
                self.board.flush()
        self.bar.update(1)
        checkpoint = self.resumable.due(done) and done < self.iterations
        if checkpoint:
            self.deadline.refresh()
            self.resumable.save({"kind": "partial", **{name: obj.state_dict() for name, obj in self.state.items()},
                                 "step": done, "log": self.log.rows, "stops": self.stops})
        if checkpoint or done == self.iterations:
            watch.curves_now(self.log.rows)
            if watch.snapshot is not None:
                watch.snapshot(done)


    def stop_if_asked(self, done: int) -> None:
        """After step ``done``: if a signal asked any process to stop, all of them stop here (an all-reduce of the
        flag each step: a few bytes, so every rank leaves the loop at the same step boundary); rank 0 writes the
        checkpoint of this step, the others wait for it, then each raises StoppedOnSignal."""
        late = self.deadline is not None and self.deadline.passed()
        asked = self.stop is not None and (self.stop.requested is not None or late)
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
            flag = torch.tensor([float(asked)], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        else:
            stop = asked
        if not stop:
            return
        # a rank the signal did not reach (or whose deadline is a moment later) stops with the others
        name = self.stop.requested or (TIME_LIMIT if late else "a signal")
        exc = StoppedOnSignal(name, done, self.first)
        stopped = str(exc)
        if is_main():
            self.resumable.save({"kind": "partial", **{k: obj.state_dict() for k, obj in self.state.items()},
                                 "step": done, "log": self.log.rows, "stops": [*self.stops, stop_record(exc)]})
            self.watch.curves_now(self.log.rows)
            self.bar.write(f"[{self.stage}] {stopped}: checkpoint {self.resumable.path} holds step {done}",
                           file=sys.stderr)
        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # no rank exits (and has the launcher stop the others) before the checkpoint is whole
        raise exc


def log_step(bar, stage: str, step: int, total: int, lr: float, losses: dict) -> dict:
    """One logged step: the progress bar's figures and a plain log line; the row to record."""
    values = {k: v.item() for k, v in losses.items()}
    bar.set_postfix({k: f"{v:.3f}" for k, v in values.items()})
    bar.write(f"[{stage}] step {step}/{total} lr {lr:.2e} " + " ".join(f"{k} {v:.4f}" for k, v in values.items()),
              file=sys.stderr)
    return values | {"lr": lr}


def progress(iterable=None, total=None, desc=""):
    from tqdm import tqdm

    # Under Snakemake stderr is a log file: update rarely so the log stays readable.
    interactive = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, mininterval=0.5 if interactive else 30, file=sys.stderr,
                dynamic_ncols=interactive, ascii=not interactive, disable=not is_main())


def save_trained(args, checkpoint: dict, log: LossLog, resumable: Resumable) -> None:
    """A training stage's final checkpoint (then the partial one goes). The loss TSV and the curves are
    already whole: the run wrote each row as it came and drew the curves at its last step (``Watch``). Only rank 0
    of a distributed run writes."""
    if not is_main():
        return
    save_checkpoint(args.out, checkpoint | {"step": args.iterations, "log": log.rows})
    stop_after_saving(args.iterations)  # a signal during the save: the partial checkpoint stays (bdl.stopping)
    resumable.finish()
    print(f"saved {args.out} after {args.iterations} iterations", file=sys.stderr)
