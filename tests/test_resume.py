"""A training stage killed after a checkpoint resumes from it and ends with the same weights as an
uninterrupted run (CPU, same seed)."""

import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import STAGES, run_stage, source_flags, target_flags

ARGS = ["--backbone", "resnet_mini", "--width", "8", "--batch-size", "4", "--threads", "1", "--log-every", "1",
        "--checkpoint-every", "3", "--iterations", "150", "--seed", "5"]


def kill_after_checkpoint(cmd, partial, timeout=120):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not partial.exists():
        assert proc.poll() is None, "stage ended before writing a checkpoint"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return torch.load(partial, weights_only=True)["step"]


@pytest.mark.parametrize("mode", ["source", "translator"])
def test_killed_stage_resumes_and_matches_uninterrupted(tiny_demo, tmp_path, mode):
    if mode == "source":
        script, extra = "train_segmenter", ["--mode", "source", *source_flags(tiny_demo), *ARGS]
    else:
        script = "train_translator"
        extra = [*source_flags(tiny_demo), *target_flags(tiny_demo), "--ngf", "4", "--n-blocks", "1", "--ndf", "4",
                 "--batch-size", "2", "--pool-size", "3", "--threads", "1", "--checkpoint-every", "3",
                 "--iterations", "60", "--seed", "5"]
    run_stage(script, *extra, "--out", tmp_path / "straight.pt")
    out = tmp_path / "killed.pt"
    partial = tmp_path / "killed.pt.partial.pt"
    step = kill_after_checkpoint([sys.executable, str(STAGES / f"{script}.py"), *map(str, extra), "--out", str(out)],
                                 partial)
    assert step > 0 and not out.exists()  # a killed job leaves no file that looks finished
    proc = run_stage(script, *extra, "--out", out)
    assert f"resuming at step {step}" in proc.stderr
    a = torch.load(tmp_path / "straight.pt", weights_only=True)
    b = torch.load(out, weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["log"] == b["log"]
    assert not partial.exists()


def test_changed_settings_do_not_resume(tiny_demo, tmp_path):
    base = ["--mode", "source", *source_flags(tiny_demo), *ARGS]
    partial = tmp_path / "m.pt.partial.pt"
    kill_after_checkpoint([sys.executable, str(STAGES / "train_segmenter.py"), *map(str, base), "--out",
                           str(tmp_path / "m.pt")], partial)
    proc = run_stage("train_segmenter", *base[:-2], "--seed", "6", "--iterations", "4", "--out", tmp_path / "m.pt")
    assert "made with other settings; starting from step 0" in proc.stderr


def test_nan_loss_stops_with_stage_step_and_term(tiny_demo, tmp_path):
    args = ["--mode", "source", *source_flags(tiny_demo), *ARGS, "--checkpoint-every", "1", "--lr", "1e12"]
    proc = run_stage("train_segmenter", *args, "--out", tmp_path / "m.pt", check=False)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert re.match(r"error: train_segmenter\[source\]: loss '\w+' became (nan|inf|-inf) at step \d+", last), last
    assert not (tmp_path / "m.pt").exists()
    assert (tmp_path / "m.pt.partial.pt").exists()  # the last good checkpoint stays for a rerun
