"""A training stage sent SIGTERM or SIGINT between checkpoints writes the checkpoint of the step it is in, exits
with STOPPED_ON_SIGNAL within a step, and its rerun ends with the weights of an uninterrupted run (CPU, same seed);
with two gloo processes the ranks stop at the same step."""

import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import STAGES, run_stage, source_flags

from bdl.stopping import STOPPED_ON_SIGNAL

# checkpoints every 1000 steps: every checkpoint this run has was made by the signal
ARGS = ["--mode", "source", "--backbone", "resnet_mini", "--width", "8", "--batch-size", "4", "--threads", "1",
        "--log-every", "1", "--checkpoint-every", "1000", "--iterations", "60", "--seed", "5"]


def stop_while_training(cmd, losses, sig, after_rows=4, timeout=120):
    """Send ``sig`` once the loss log has ``after_rows`` rows; the exit status, the step logged last and stderr."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while not (losses.exists() and len(losses.read_text().splitlines()) > after_rows):
        assert proc.poll() is None, "stage ended before it was signalled"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(sig)
    sent = int(losses.read_text().splitlines()[-1].split("\t")[0])
    _, err = proc.communicate(timeout=60)
    return proc.returncode, sent, err


@pytest.fixture(scope="module")
def straight(tiny_demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "m.pt"
    run_stage("train_segmenter", *ARGS, *source_flags(tiny_demo), "--out", out)
    return torch.load(out, weights_only=True)


@pytest.mark.parametrize("sig,procs", [(signal.SIGTERM, 1), (signal.SIGINT, 1)])
def test_signal_checkpoints_exits_and_rerun_matches(tiny_demo, straight, tmp_path, sig, procs):
    args = [*ARGS, *source_flags(tiny_demo)] + (["--procs", "2"] if procs > 1 else [])
    out, losses = tmp_path / "m.pt", tmp_path / "losses.tsv"
    partial = tmp_path / "m.pt.partial.pt"
    cmd = [sys.executable, str(STAGES / "train_segmenter.py"), *map(str, args), "--out", str(out),
           "--losses", str(losses)]
    code, sent, err = stop_while_training(cmd, losses, sig)
    assert code == STOPPED_ON_SIGNAL, err[-3000:]
    assert not out.exists() and partial.exists()
    step = torch.load(partial, weights_only=True)["step"]
    assert sent <= step <= sent + 2  # the step running when the signal came (or the one after, in a race)
    assert f"stopped on {sig.name} after step {step}" in err
    if procs > 1:  # rank 1 stopped at the same boundary: it left the loop with rank 0, whose barrier it passed
        assert "error:" not in err
    proc = run_stage("train_segmenter", *args, "--out", out, "--losses", losses)
    assert f"resuming at step {step}" in proc.stderr
    assert f"the previous run stopped on {sig.name} after step {step}" in proc.stderr
    final = torch.load(out, weights_only=True)
    if procs == 1:  # with 2 processes BatchNorm runs per slice on the CPU: compared with the 2-process run
        for key in straight["model"]:
            assert torch.equal(straight["model"][key], final["model"][key]), key
        assert straight["log"] == final["log"]
    assert not partial.exists()


def test_two_process_stop_matches_two_process_run(tiny_demo, tmp_path):
    args = [*ARGS, *source_flags(tiny_demo), "--procs", "2"]
    run_stage("train_segmenter", *args, "--out", tmp_path / "a.pt")
    out, losses = tmp_path / "b.pt", tmp_path / "losses.tsv"
    cmd = [sys.executable, str(STAGES / "train_segmenter.py"), *map(str, args), "--out", str(out),
           "--losses", str(losses)]
    code, sent, err = stop_while_training(cmd, losses, signal.SIGTERM)  # to the launcher, which passes it on
    assert code == STOPPED_ON_SIGNAL, err[-3000:]
    assert "error:" not in err  # no rank was stopped by the launcher before the checkpoint was written
    step = torch.load(tmp_path / "b.pt.partial.pt", weights_only=True)["step"]
    assert sent <= step <= sent + 2 and f"stopped on SIGTERM after step {step}" in err
    proc = run_stage("train_segmenter", *args, "--out", out)
    assert f"resuming at step {step}" in proc.stderr
    a, b = (torch.load(tmp_path / n, weights_only=True) for n in ("a.pt", "b.pt"))
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_signal_to_the_whole_group_with_dataloader_workers(tiny_demo, straight, tmp_path):
    """As SLURM and a terminal do: every process gets the signal, DataLoader workers included. They let it pass (a
    worker killed by it would fail the next batch); the stage stops at its step boundary. Stopped twice (the second
    run writing periodic checkpoints, which keep the history), the third run resumes and ends as an uninterrupted
    run; its log names both stops and losses.tsv the run of each row."""
    import os

    args = [*ARGS, *source_flags(tiny_demo), "--workers", "2"]
    out, losses = tmp_path / "m.pt", tmp_path / "losses.tsv"
    stops = []
    for rows, every in ((6, "1000"), (30, "5")):
        cmd = [sys.executable, str(STAGES / "train_segmenter.py"), *map(str, args), "--checkpoint-every", every,
               "--out", str(out), "--losses", str(losses)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        deadline = time.time() + 120
        while not (losses.exists() and len(losses.read_text().splitlines()) > rows):
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == STOPPED_ON_SIGNAL, err[-3000:]
        stops.append(torch.load(tmp_path / "m.pt.partial.pt", weights_only=True)["step"])
        assert f"stopped on SIGTERM after step {stops[-1]}" in err and "DataLoader worker" not in err
    rerun = run_stage("train_segmenter", *args, "--out", out, "--losses", losses)
    for n, step in enumerate(stops, 1):
        assert re.search(rf"\[resume\] run {n} stopped on SIGTERM after step {step} \(", rerun.stderr)
    assert f"run 3 resumes at step {stops[1]}" in rerun.stderr
    final = torch.load(out, weights_only=True)
    for key in straight["model"]:
        assert torch.equal(straight["model"][key], final["model"][key]), key
    header, *rows = [line.split("\t") for line in losses.read_text().splitlines()]
    runs = [(int(r[0]), int(r[header.index("run")])) for r in rows]
    assert all(run == 1 + sum(stop < logged for stop in stops) for logged, run in runs)
    assert {run for _, run in runs} == {1, 2, 3}


class FakeSlurm:
    """squeue and scontrol as seen from inside a job, recorded."""

    def __init__(self, state):
        self.state, self.calls = state, []

    def __call__(self, *cmd):
        self.calls.append(cmd)
        out = self.state if cmd[0] == "squeue" else ""
        return subprocess.CompletedProcess(cmd, 0, out + "\n", "")


@pytest.mark.parametrize("state,requeued", [("RUNNING", True), ("CANCELLED", False), ("PREEMPTED", False),
                                            ("COMPLETING", False)])
def test_requeue_only_a_job_slurm_is_not_ending(monkeypatch, state, requeued):
    """Stopped ahead of its limit the job is still RUNNING: it requeues itself. scancel, a preemption or the limit
    itself leave it in another state, and SLURM's decision stands."""
    from bdl import stopping

    fake = FakeSlurm(state)
    monkeypatch.setattr(stopping, "_slurm", fake)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    said = []
    assert stopping.requeue(stopping.StoppedOnSignal("SIGTERM", 120, 40), said.append) is requeued
    assert (("scontrol", "requeue", "42") in fake.calls) is requeued
    assert ("requeuing slurm job 42" in said[-1]) is requeued


def test_no_requeue_without_slurm_or_without_progress(monkeypatch):
    from bdl import stopping

    fake = FakeSlurm("RUNNING")
    monkeypatch.setattr(stopping, "_slurm", fake)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert not stopping.requeue(stopping.StoppedOnSignal("SIGTERM", 10, 0), print)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    said = []
    # signalled before its first step: requeued again it would be signalled again, forever
    assert not stopping.requeue(stopping.StoppedOnSignal("SIGTERM", 40, 40), said.append)
    assert not fake.calls and "raise the rule's runtime" in said[0]


def test_job_deadline_from_squeue(monkeypatch):
    """The stop ahead of the limit: lead seconds before squeue's EndTime, refreshed (a limit changed with scontrol
    update counts); none outside SLURM, with lead 0, or while squeue gives no end."""
    from bdl import stopping

    now = time.time()
    fake = FakeSlurm(time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now + 100)))
    monkeypatch.setattr(stopping, "_slurm", fake)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert stopping.JobDeadline(120).passed() and not stopping.JobDeadline(60).passed()
    assert fake.calls[0] == ("squeue", "-h", "-j", "42", "-o", "%e")
    deadline = stopping.JobDeadline(60)
    fake.state = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now + 30))  # the limit was lowered
    deadline.refresh()
    assert deadline.passed()
    fake.state = "N/A"
    assert not stopping.JobDeadline(60).passed() and not stopping.JobDeadline(0).passed()
    monkeypatch.delenv("SLURM_JOB_ID")
    calls = len(fake.calls)
    assert not stopping.JobDeadline(60).passed() and len(fake.calls) == calls


def test_a_signal_during_the_final_save_keeps_the_partial_checkpoint(monkeypatch):
    """After its last step boundary a stage can still be signalled (while it writes its final file): it stops with
    exit status 75, says the kept partial checkpoint is of an earlier step, and is requeued like any stop."""
    from bdl import stopping

    request = stopping.StopRequest(first=5)
    monkeypatch.setattr(stopping, "_installed", request)
    stopping.stop_after_saving(60)  # no signal: nothing happens
    request.requested = "SIGTERM"
    with pytest.raises(stopping.StoppedOnSignal) as info:
        stopping.stop_after_saving(60)
    assert "while the final checkpoint was written" in stopping.exit_line(info.value)
    assert (info.value.step, info.value.first) == (60, 5)


WORKER_AFTER_REQUEST = """
import multiprocessing as mp, os, signal, sys, time
from bdl import stopping

def worker(ready):
    stopping.ignore_in_worker(0)
    ready.set()
    time.sleep(30)

stopping.StopRequest().install()
os.kill(os.getpid(), signal.SIGTERM)  # the request, then a worker forked after it (a new epoch's)
ready = mp.get_context("fork").Event()
child = mp.get_context("fork").Process(target=worker, args=(ready,), daemon=True)
child.start()
ready.wait(10)
child.terminate()  # what the exiting main process does, well within SAME_REQUEST_S of the request
child.join(10)
print(child.exitcode)
"""


def test_a_worker_forked_after_the_request_dies_of_the_next_signal():
    """The exiting main process ends its workers with SIGTERM and joins them without a timeout: a worker forked after
    the request that kept the copied handler (which takes a signal within SAME_REQUEST_S for the same request) would
    outlive the main process's exit, which then waits for ever."""
    proc = subprocess.run([sys.executable, "-c", WORKER_AFTER_REQUEST], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(-signal.SIGTERM)
