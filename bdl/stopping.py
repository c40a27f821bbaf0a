"""Stopping a training stage on a signal: SIGTERM, SIGINT or SIGUSR1 asks the run to write its checkpoint at the
next step boundary and exit with ``STOPPED_ON_SIGNAL``; a second signal stops it at once.

Clusters send SIGTERM at a job's time limit or on preemption (and any signal ahead of the limit with
``sbatch --signal``); a run that stops at a step boundary loses no work, and its rerun resumes from the very step.
"""

import os
import signal
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
    """Raised by a training loop after it wrote its checkpoint because a signal asked it to stop."""

    def __init__(self, signame: str, step: int):
        super().__init__(f"stopped on {signame} after step {step}")
        self.signame, self.step = signame, step


class StopRequest:
    """The signal handlers of a training process: ``requested`` names the first signal received (None before)."""

    def __init__(self):
        self.requested: str | None = None
        self.at = 0.0

    def install(self) -> "StopRequest":
        for sig in SIGNALS:
            signal.signal(sig, self._handle)
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


def exit_line(exc: StoppedOnSignal) -> str:
    return (f"stopped: {exc}; its checkpoint holds that step and a rerun resumes there "
            f"(exit status {STOPPED_ON_SIGNAL})")
