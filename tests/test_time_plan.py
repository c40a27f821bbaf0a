"""The time plan: each training stage's hours at a rehearsal's rates and the submissions its time limit makes it
need (each stopping runtime.stop_before_limit before the limit), from `python -m bdl.plan --rates --profile` and,
with runtime.rates, where a run starts (with the limits Snakemake resolved from the profile)."""

import json
import re
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, SNAKEMAKE, tiny_config

from bdl.plan import JOB_START_S, profile_limits, read_rates, time_lines

SECONDS = {"train_m0": 0.5, "train_translator": 0.6, "train_adversarial": 0.9, "train_ssl": 0.8}
RATES = {"device": "one test GPU", "config": "x",
         "stages": {**{stage: {"seconds": s, "unit": "step"} for stage, s in SECONDS.items()},
                    "translate": {"seconds": 0.1, "unit": "source frame"}}}


def test_submissions_follow_from_hours_limit_and_lead(tmp_path):
    cfg = {"rounds": 2, "ssl_steps": 3, "oracle": False, "translator": {"iterations": 499_320},
           "segmenter": {"iterations": {"source": 120_000, "adversarial": 80_000, "ssl": 120_000, "oracle": 1}},
           "runtime": {"stop_before_limit": 300}}
    rates = read_rates(_write(tmp_path, RATES))
    usable = 48 * 3600 - 300 - JOB_START_S
    lines = time_lines(cfg, rates, {stage: 2880 for stage in RATES["stages"]})
    translator = next(line for line in lines if "train_translator" in line)
    # 499,320 steps at 0.6 s: 83.2 h, two 48-hour jobs
    assert "2 x 499,320 steps" in translator and "83.2 h a job" in translator
    assert -(-499_320 * 0.6 // usable) == 2
    assert "2 submissions a job" in translator and "limit 48 h, stop 300 s before it" in translator
    assert "1 submission a job" in next(line for line in lines if "train_m0" in line)
    assert "6 x 120,000 steps" in next(line for line in lines if "train_ssl" in line)
    # a limit the lead and the start use up trains nothing: said, not divided by
    short = time_lines(cfg, rates, {"train_m0": 2})
    assert "no step after the job's start and the stop's lead" in next(line for line in short if "train_m0" in line)
    # without the stop, a job longer than its limit is killed there
    never = time_lines(cfg | {"runtime": {"stop_before_limit": 0}}, rates, {"train_m0": 60})
    assert "killed at its limit" in next(line for line in never if "train_m0" in line)
    with pytest.raises(ValueError, match="not a rehearsal's rates.json"):
        read_rates(_write(tmp_path, {"stages": {}}))


def test_shipped_profile_limits_and_the_plan_command(tmp_path):
    limits = profile_limits(REPO / "profiles" / "slurm")
    assert {limits[s] for s in ("train_m0", "train_translator", "train_adversarial", "train_ssl")} == {2880}
    out = subprocess.run([sys.executable, "-m", "bdl.plan", "--configfile", "config/paper_gta5_resnet101.yaml",
                          "--source-frames", "24966", "--target-frames", "2975", "--rates", _write(tmp_path, RATES),
                          "--profile", "profiles/slurm"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert re.search(r"^total written: [\d.]+ GB, peak: [\d.]+ GB$", out, re.M)  # the disk plan, as before
    assert re.search(r"train_translator: 2 x 499,320 steps .* limit 48 h, stop 300 s before it: 2 submissions a job",
                     out)


def test_run_start_prints_the_time_plan_with_the_profiles_limits(tmp_path):
    cfg = tiny_config(tmp_path / "res") | {"oracle": False}
    cfg["runtime"]["rates"] = _write(tmp_path, RATES)
    cfg["segmenter"]["iterations"]["source"] = 1000  # 500 s at 0.5 s a step
    cfg["runtime"]["stop_before_limit"] = 60
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    profile = tmp_path / "profile"
    profile.mkdir()
    # a 5-minute limit, stopping 60 s before it: 300 - 60 - JOB_START_S s of training a submission
    (profile / "config.yaml").write_text(yaml.safe_dump({"set-resources": {"train_m0": {"runtime": 5}}}))
    proc = subprocess.run([*SNAKEMAKE, "-n", "--cores", "1", "--profile", str(profile), "--configfile", str(path)],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stderr.splitlines() if line.strip().startswith("train_m0:"))
    need = -(-1000 * 0.5 // (300 - 60 - JOB_START_S))
    assert f"limit 5 min, stop 60 s before it: {need:.0f} submissions a job" in line
    assert "one test GPU" in proc.stderr


def _write(folder, data) -> str:
    path = folder / f"rates{len(list(folder.glob('rates*.json')))}.json"
    path.write_text(json.dumps(data))
    return str(path)
