"""SIGKILL each training job of the workflow after its first checkpoint, rerun the workflow: the job
resumes from its checkpoint (not step 0) and the final table equals an uninterrupted run's (CPU)."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import tiny_config

REPO = Path(__file__).resolve().parents[1]
PARTIAL = {
    "train_m0": ("m0/segmenter.pt", "m0/train.log"),
    "train_translator": ("round1/translator.pt", "round1/translator_train.log"),
    "train_adversarial": ("round1/adv/segmenter.pt", "round1/adv_train.log"),
    "train_ssl": ("round1/ssl1/segmenter.pt", "round1/ssl1_train.log"),
}


def config(results: Path) -> dict:
    cfg = tiny_config(results)
    cfg["oracle"] = False
    cfg["segmenter"]["iterations"] = {"source": 60, "adversarial": 60, "ssl": 60, "oracle": 3}
    cfg["translator"]["iterations"] = 40
    cfg["runtime"]["checkpoint_every"] = 5
    return cfg


def run(cfg: dict, path: Path, wait=True):
    path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", str(path)]
    if wait:
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    base = tmp_path_factory.mktemp("straight")
    proc = run(config(base / "results"), base / "cfg.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return (base / "results" / "metrics.tsv").read_text()


@pytest.mark.parametrize("rule", sorted(PARTIAL))
def test_sigkilled_job_resumes_and_matches(uninterrupted, tmp_path, rule):
    out_rel, log_rel = PARTIAL[rule]
    results = tmp_path / "results"
    partial = results / (out_rel + ".partial.pt")
    snake = run(config(results), tmp_path / "cfg.yaml", wait=False)
    deadline = time.time() + 300
    while not partial.exists():
        assert snake.poll() is None, "workflow ended before the job wrote a checkpoint"
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(random.Random(rule).uniform(0, 0.5))  # some step after the first checkpoint
    victims = [p for p in psutil.process_iter(["cmdline"])
               if p.info["cmdline"] and any(str(results / out_rel) == a for a in p.info["cmdline"])
               and any(a.endswith(".py") and "stages" in a for a in p.info["cmdline"])]
    assert victims, "training process not found"
    for p in victims:
        os.kill(p.pid, signal.SIGKILL)
    assert snake.wait(timeout=300) != 0
    assert not (results / out_rel).exists()  # the killed job left nothing that looks finished
    proc = run(config(results), tmp_path / "cfg.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (results / "logs" / log_rel).read_text()
    assert "resuming at step" in log and "starting from step 0" not in log
    assert (results / "metrics.tsv").read_text() == uninterrupted
