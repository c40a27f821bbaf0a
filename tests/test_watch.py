"""Watching a training job: loss rows on disk as they are logged (also when the job is killed), curves and
the translator's sample grid at checkpoints, a val score every N steps, TensorBoard events; none of it changes
what is trained."""

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import REPO, STAGES, run_stage, snakemake, source_flags, target_flags
from PIL import Image

from bdl.artifacts import load_checkpoint

SEG = ["--backbone", "resnet_mini", "--width", "8", "--ndf", "8", "--batch-size", "4", "--threads", "1",
       "--log-every", "5", "--checkpoint-every", "50"]
TRANSLATOR = ["--ngf", "4", "--n-blocks", "1", "--ndf", "4", "--batch-size", "2", "--threads", "1",
              "--log-every", "1", "--checkpoint-every", "2"]


def rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def same_weights(a, b) -> bool:
    sa, sb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_killed_job_leaves_its_loss_rows_and_a_resumed_one_logs_as_an_uninterrupted_one(tiny_demo, tmp_path):
    args = ["--mode", "source", *source_flags(tiny_demo), *SEG, "--iterations", "400"]
    losses, curves, out = tmp_path / "losses.tsv", tmp_path / "curves.png", tmp_path / "m0.pt"
    cmd = [sys.executable, str(STAGES / "train_segmenter.py"), *map(str, args), "--out", str(out),
           "--losses", str(losses), "--curves", str(curves)]
    job = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    # wait for the first checkpoint (step 50) and some rows after it, then kill the job half way
    while not (curves.exists() and losses.exists() and len(rows(losses)) >= 14):
        assert job.poll() is None, "the job ended before it was killed"
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    left = rows(losses)
    assert not out.exists() and 14 <= len(left) < 80
    assert [int(r["step"]) for r in left] == list(range(5, 5 * len(left) + 1, 5))
    assert all(np.isfinite(float(r["seg"])) and float(r["lr"]) > 0 for r in left)

    # resumed from the step-50 checkpoint: the rows after it are made again, not duplicated
    run_stage("train_segmenter", *args, "--out", out, "--losses", losses, "--curves", curves)
    run_stage("train_segmenter", *args, "--out", tmp_path / "straight.pt", "--losses", tmp_path / "straight.tsv")
    assert losses.read_text() == (tmp_path / "straight.tsv").read_text()
    assert len(rows(losses)) == 80
    assert same_weights(out, tmp_path / "straight.pt")


def test_val_score_every_n_steps_changes_nothing_trained(tiny_demo, tmp_path):
    # the adversarial mode reads the most (a translated set, target images, D): one step of F makes the set
    run_stage("train_translator", *source_flags(tiny_demo), *target_flags(tiny_demo), *TRANSLATOR,
              "--iterations", "1", "--out", tmp_path / "f.pt")
    run_stage("translate", "--translator", tmp_path / "f.pt", *source_flags(tiny_demo), "--threads", "1",
              "--out", tmp_path / "t.h5")
    # the translated set holds images only: its labels come from the source
    base = ["--mode", "adversarial", "--translated", tmp_path / "t.h5", *source_flags(tiny_demo),
            *target_flags(tiny_demo), *SEG,
            "--iterations", "6", "--log-every", "4"]
    run_stage("train_segmenter", *base, "--eval-every", "3", "--out", tmp_path / "scored.pt",
              "--losses", tmp_path / "scored.tsv")
    run_stage("train_segmenter", *base, "--out", tmp_path / "plain.pt", "--losses", tmp_path / "plain.tsv")
    assert same_weights(tmp_path / "scored.pt", tmp_path / "plain.pt")
    scored = rows(tmp_path / "scored.tsv")
    assert [int(r["step"]) for r in scored] == [3, 4, 6]
    assert [bool(r["val_miou"]) for r in scored] == [True, False, True]
    assert [bool(r["seg"]) for r in scored] == [False, True, True]
    # the last score is the evaluation's own figure for the final model
    run_stage("evaluate", "--segmenter", tmp_path / "scored.pt", *target_flags(tiny_demo), "--threads", "1",
              "--out", tmp_path / "eval.json")
    assert float(scored[-1]["val_miou"]) == pytest.approx(json.loads((tmp_path / "eval.json").read_text())["miou"],
                                                          abs=1e-9)


def test_translator_sample_grid_at_checkpoints_changes_nothing_trained(tiny_demo, tmp_path):
    common = [*source_flags(tiny_demo), *target_flags(tiny_demo), *TRANSLATOR, "--iterations", "3"]
    run_stage("train_translator", *common, "--samples", tmp_path / "samples.png", "--out", tmp_path / "a.pt")
    run_stage("train_translator", *common, "--out", tmp_path / "b.pt")
    assert same_weights(tmp_path / "a.pt", tmp_path / "b.pt")
    grid = np.asarray(Image.open(tmp_path / "samples.png"))
    h, w = 32, 64  # the tiny demo's frames; 3 rows of 5 tiles, 2 px apart
    assert grid.shape == (3 * h + 2 * 2, 5 * w + 4 * 2, 3)
    real_a, fake_b = grid[:h, :w].astype(int), grid[:h, w + 2:2 * w + 2].astype(int)
    assert np.abs(real_a - fake_b).mean() > 1  # the translation is drawn, not the input twice


def test_tensorboard_events(tiny_demo, tmp_path):
    if importlib.util.find_spec("tensorboard") is None:
        pytest.skip("tensorboard is not installed (pip install -e '.[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_stage("train_segmenter", "--mode", "source", *source_flags(tiny_demo), *SEG, "--iterations", "10",
              "--out", tmp_path / "m0.pt", "--tensorboard", tmp_path / "tb")
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    seg = events.Scalars("train_segmenter[source]/seg")
    assert [e.step for e in seg] == [5, 10] and all(np.isfinite(e.value) for e in seg)


def test_workflow_final_model_samples_and_watch_flags(finished_run, tmp_path):
    cfg, results = finished_run
    final = results / "final" / "segmenter.pt"
    assert final.read_bytes() == (results / "round1" / "ssl1" / "segmenter.pt").read_bytes()
    assert (results / "round1" / "translator_samples.png").is_file()
    import bdl

    model = bdl.load_segmenter(final)
    assert not model.training
    # the watch keys reach the training jobs: a val score for every M (M0 gets the target's data for it)
    import yaml

    over = yaml.safe_load(cfg.read_text())
    over["results"] = str(tmp_path / "r")
    over["runtime"] |= {"eval_every": 2, "tensorboard": True}
    path = tmp_path / "watch.yaml"
    path.write_text(yaml.safe_dump(over))
    shell = snakemake(path, "-n", "-p", "--forceall").stdout
    seg_jobs = [line for line in shell.splitlines() if "train_segmenter.py" in line]
    assert len(seg_jobs) == 4  # m0, adv, ssl1, oracle
    assert all("--eval-every 2 --eval-split val" in line and "--target-root" in line for line in seg_jobs)
    assert all("--tensorboard" in line for line in shell.splitlines()
               if "train_segmenter.py" in line or "train_translator.py" in line)
