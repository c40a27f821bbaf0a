"""Stopping a training stage on a signal: SIGTERM, SIGINT or SIGUSR1 asks the run to write its checkpoint at the
next step boundary and exit with ``STOPPED_ON_SIGNAL``; a second signal stops it at once.

Clusters send SIGTERM at a job's time limit or on preemption; a run that stops at a step boundary loses no work,
and its rerun resumes from the very step. Inside a SLURM job a training stage also stops by itself ``lead`` seconds
before the job's end (``JobDeadline``) and requeues its own job, which SLURM starts again and which resumes there:
a stage longer than the partition's limit finishes without a person.

Why not ``sbatch --signal``: SLURM signals every process of the job step, and the Snakemake process that runs the
stage inside the job reports the job failed once signalled (SIGTERM) or dies (SIGUSR1), whatever the stage does;
a signal that lands after the stage's last step boundary then fails a finished job and deletes its outputs.
"""

import os
import signal
import subprocess
import time

# sysexits' EX_TEMPFAIL: "try again later". Not a code a failing stage returns (errors exit 2, Python's
# uncaught exceptions 1, deaths by signal 128+n), so a job script can tell a stop it should resubmit from a failure.
STOPPED_ON_SIGNAL = 75

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)

# Copies of one signal arrive together: SLURM signals every process of a job step, a terminal every process of
# its group, and a distributed stage's launcher passes the signal on to its workers too. Within this window a
# signal is the same request, not the second one that stops at once.
SAME_REQUEST_S = 2.0


class StoppedOnSignal(Exception):
    """Raised by a training loop after it wrote its checkpoint because a signal (or the job's time limit) asked it to
    stop; ``while_saving``: the request came during the final save, and the kept checkpoint is of an earlier step."""

    def __init__(self, signame: str, step: int, first: int = 0, while_saving: bool = False):
        super().__init__(f"stopped on {signame} after step {step}")
        self.signame, self.step, self.first, self.while_saving = signame, step, first, while_saving


class StopRequest:
    """The signal handlers of a training process: ``requested`` names the first signal received (None before);
    ``first``: the step this run started at."""

    def __init__(self, first: int = 0):
        self.requested: str | None = None
        self.at = 0.0
        self.first = first

    def install(self) -> "StopRequest":
        global _installed
        for sig in SIGNALS:
            signal.signal(sig, self._handle)
        _installed = self
        return self

    def _handle(self, signum, frame) -> None:
        now = time.monotonic()
        if self.requested is None:
            self.requested, self.at = signal.Signals(signum).name, now
            return
        if now - self.at < SAME_REQUEST_S:
            return
        # a second request: the person or the cluster will not wait for the step boundary
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


_installed: StopRequest | None = None


def stop_after_saving(step: int) -> None:
    """A training stage calls this once its final file is written: a signal that came after its last step boundary
    (a preemption, scancel, Ctrl-C) still stops it, with exit status 75 and its partial checkpoint kept: the job is
    then failed or requeued, and Snakemake deletes a failed job's outputs, so the kept checkpoint is what the rerun
    resumes from (it redoes the steps since that checkpoint, to the same weights)."""
    if _installed is not None and _installed.requested is not None:
        raise StoppedOnSignal(_installed.requested, step, _installed.first, while_saving=True)


def exit_line(exc: StoppedOnSignal) -> str:
    if exc.while_saving:
        return (f"stopped: {exc.signame} came while the final checkpoint was written; the partial checkpoint of an "
                f"earlier step is kept and a rerun resumes there (exit status {STOPPED_ON_SIGNAL})")
    return (f"stopped: {exc}; its checkpoint holds that step and a rerun resumes there "
            f"(exit status {STOPPED_ON_SIGNAL})")


TIME_LIMIT = "the job's time limit"


class JobDeadline:
    """Inside a SLURM job (``SLURM_JOB_ID``): when a training stage stops by itself, ``lead`` seconds before the job's
    end as ``squeue`` gives it (read at the start and again at every checkpoint, so a limit changed with ``scontrol
    update`` counts). Outside SLURM, or with ``lead`` 0, never."""

    def __init__(self, lead: float):
        self.lead, self.job, self.end = float(lead), os.environ.get("SLURM_JOB_ID"), None
        self.refresh()

    def refresh(self) -> None:
        if not self.job or self.lead <= 0:
            return
        out = _slurm("squeue", "-h", "-j", self.job, "-o", "%e")
        try:  # EndTime in the controller's local time, e.g. 2026-12-07T01:26:38; 'N/A' without a limit
            self.end = time.mktime(time.strptime(out.stdout.strip(), "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            pass  # keep the last end read (squeue briefly unreachable), or none

    def passed(self) -> bool:
        return self.end is not None and time.time() >= self.end - self.lead


def ignore_in_worker(worker_id: int) -> None:
    """DataLoader workers let the first stop signal pass. SLURM signals every process of a job step and a terminal
    its whole group: a worker that died of it would fail the main process's next batch before its step boundary.
    The next signal kills the worker: the SIGTERM with which the exiting main process ends its workers, or a second
    request, which stops the main process at once too. A worker forked after the request (a new epoch's, or one the
    signal reached between its fork and this call) has nothing to let pass: the main process's state, copied by the
    fork, says so, and the worker takes the default action. It must not keep the handler the fork copied: that one
    ignores a signal within SAME_REQUEST_S of the request, and the exiting main process's SIGTERM, followed by a
    join without a timeout, would then wait for the worker for ever."""
    if _installed is not None and _installed.requested is not None:
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        return

    def first(signum, frame):
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_DFL)

    for sig in SIGNALS:
        signal.signal(sig, first)


def stop_record(exc: StoppedOnSignal) -> dict:
    """One stop, as the checkpoint keeps it for the resumed run's log."""
    return {"signal": exc.signame, "step": exc.step, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "slurm_job": os.environ.get("SLURM_JOB_ID", "")}


def describe(stop: dict) -> str:
    job = f", slurm job {stop['slurm_job']}" if stop.get("slurm_job") else ""
    return f"stopped on {stop['signal']} after step {stop['step']} ({stop['time']}{job})"


def _slurm(*cmd: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(cmd, 1, "", str(exc))


def requeue(exc: StoppedOnSignal, say=print) -> bool:
    """After a stop whose checkpoint is written: inside a SLURM job that SLURM is not ending itself (state RUNNING:
    the stage stopped ahead of its limit, or was sent a signal with ``scancel --signal``), requeue the job; it starts
    again and the stage resumes from the checkpoint. A cancelled, preempted or timed-out job is left to SLURM
    (``scancel`` stays final; a site whose preemption requeues does so itself). True when the job was requeued."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return False
    if exc.step <= exc.first:
        # a job whose time limit is shorter than its start and the stop's lead would be requeued forever
        say(f"slurm job {job} not requeued: it stopped before its first step (started at step {exc.first}); "
            "its time limit leaves no time for training before runtime.stop_before_limit: raise the rule's runtime")
        return False
    state = _slurm("squeue", "-h", "-j", job, "-o", "%T")
    status = state.stdout.strip() if state.returncode == 0 else f"unknown ({state.stderr.strip()})"
    if status != "RUNNING":
        say(f"slurm job {job} is {status}: not requeued (left to SLURM); a rerun of the workflow resumes")
        return False
    say(f"requeuing slurm job {job}: it resumes from its checkpoint when SLURM starts it again")
    done = _slurm("scontrol", "requeue", job)  # SLURM ends this job now: nothing after this line is sure to run
    if done.returncode:
        say(f"slurm job {job} could not be requeued ({done.stderr.strip()}); a rerun of the workflow resumes "
            "(submit with --requeue: the profile's slurm-requeue)")
        return False
    return True
