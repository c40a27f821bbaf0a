"""The workflow through `--profile profiles/slurm` on a real SLURM (started by `.ci/slurm-cluster start`):
every job but the local rules goes through sbatch (GPU stages to the gpu partition, the rest to cpu), outputs
equal a local run's, a failing job is reported with its log, and a scancel'd training job is finished by a
plain rerun that resumes from its checkpoint."""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, SNAKEMAKE, run_stage, source_flags, tiny_config
from PIL import Image

PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
GPU_RULES = {"train_m0", "train_oracle", "train_translator", "train_adversarial", "train_ssl",
             "translate", "pseudo_label", "evaluate", "evaluate_report", "target_bn"}
# seconds of work each: they run on the submit host
LOCAL_RULES = {"collect_metrics", "collect_metrics_report", "seed_summary", "seed_summary_report", "diagnostics",
               "gallery_translated", "gallery_pseudo", "viewer", "sample_translated", "final_model"}
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (.+?)\)")
# Stage logs whose job asked for a GPU (resource gpu=1 -> sbatch --gpus=1), by file name.
GPU_LOG = re.compile(r"(train|translate|pseudo|evaluate)\.log$")


def _cluster_state() -> str:
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
        return f"sinfo: {exc}"
    # one line per partition (cpu and gpu share the node): the node's state, once
    return " ".join(sorted(set(proc.stdout.split()))) if proc.returncode == 0 else proc.stderr.strip()


@pytest.fixture(scope="module")
def cluster():
    state = _cluster_state()
    missing = None
    if state not in {"idle", "mixed", "allocated"}:
        missing = f"no SLURM cluster answers ({state!r}); start one with `.ci/slurm-cluster start`"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        missing = missing or "snakemake-executor-plugin-slurm is not installed (pip install -e '.[test]')"
    if missing:
        if os.environ.get("BDL_REQUIRE_SLURM"):
            pytest.fail(missing)
        pytest.skip(missing)


# The keys the one-node test cluster needs changed; everything else of the shipped profile is used as is.
LOCAL_KEYS = {"slurm-status-command", "slurm-init-seconds-before-status-checks", "latency-wait",
              "default-resources", "set-threads", "set-resources"}


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    """profiles/slurm adapted to the test node: no accounting (poll squeue), 2 CPUs, 1 thread per job so the
    numbers equal the local run's, memory capped to the node. GPU requests are kept (the node has fake GPUs)."""
    shipped = yaml.safe_load(PROFILE.read_text())
    local = dict(shipped)
    local["slurm-status-command"] = "squeue"
    local["slurm-init-seconds-before-status-checks"] = 1
    local["latency-wait"] = 5
    local["default-resources"] = {**shipped["default-resources"], "mem_mb": 1000, "runtime": 30}
    local["set-threads"] = {rule: 1 for rule in shipped["set-threads"]}
    local["set-resources"] = {rule: {**res, "mem_mb": min(res["mem_mb"], 2000), "runtime": 30}
                              for rule, res in shipped["set-resources"].items()}
    assert {k for k in local if local[k] != shipped.get(k)} <= LOCAL_KEYS
    folder = tmp_path_factory.mktemp("profile")
    (folder / "config.yaml").write_text(yaml.safe_dump(local))
    return folder


def slurm_run(profile: Path, cfg: dict, path: Path, *extra, wait=True):
    path.write_text(yaml.safe_dump(cfg))
    cmd = [*SNAKEMAKE, "--profile", str(profile), *extra, "--configfile", str(path)]
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)


def test_profile_names_only_real_rules_and_gpu_stages_ask_for_a_gpu():
    shipped = yaml.safe_load(PROFILE.read_text())
    rules = set(subprocess.run([*SNAKEMAKE, "--list-rules"], cwd=REPO, capture_output=True, text=True,
                               check=True).stdout.split())
    assert set(shipped["set-resources"]) | set(shipped["set-threads"]) <= rules
    assert set(shipped["set-resources"]) == rules - {"all"} - LOCAL_RULES
    for rule, res in shipped["set-resources"].items():
        assert (res.get("gpu", 0) == 1) == (rule in GPU_RULES), rule
        # GPU stages go to the GPU partition, everything else to the default (CPU) one
        assert res.get("slurm_partition", shipped["default-resources"]["slurm_partition"]) == \
            ("gpu" if rule in GPU_RULES else "cpu"), rule
    assert shipped["executor"] == "slurm"


def test_full_workflow_through_sbatch_matches_local_run(cluster, profile, finished_run, tmp_path):
    cfg_local, res_local = finished_run
    results = tmp_path / "slurm results"
    cfg = yaml.safe_load(cfg_local.read_text()) | {"results": str(results)}
    proc = slurm_run(profile, cfg, tmp_path / "tiny.yaml")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    jobs = SUBMITTED.findall(out)
    total = int(re.search(r"^total\s+(\d+)", out, re.M).group(1))
    local = sum(int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", out, re.M) if rule in LOCAL_RULES)
    assert local == 7  # metrics, diagnostics, one gallery of each kind, viewer, its sample, final: K = N = 1
    assert len(jobs) == total - 1 - local and total > 10  # every job but 'all' and the local rules
    for job_id, slurm_log in jobs:  # the plugin deletes a successful job's SLURM log, keeps a failed one's
        assert Path(slurm_log).stem == job_id
    stage_logs = sorted((results / "logs").rglob("*.log"))
    assert len(stage_logs) == total - 1
    ids = {job_id for job_id, _ in jobs}
    local_log = re.compile(r"(gallery|collect_metrics|diagnostics|viewer|viewer_sample|final_model)\.log$")
    local_logs = [log for log in stage_logs if local_log.search(log.name)]
    assert len(local_logs) == local and not any("slurm job" in log.read_text() for log in local_logs)
    for log in set(stage_logs) - set(local_logs):
        head = re.search(r"^slurm job (\d+) on localhost, gpus (\d+), cpus \d+, partition (\w+)", log.read_text(),
                         re.M)
        assert head and head.group(1) in ids, log
        gpu = bool(GPU_LOG.search(log.name))
        assert head.group(2) == ("1" if gpu else "0") and head.group(3) == ("gpu" if gpu else "cpu"), log
    assert (results / "metrics.tsv").read_text() == (res_local / "metrics.tsv").read_text()
    assert (results / "diagnostics.tsv").read_text() == (res_local / "diagnostics.tsv").read_text()


def test_failing_job_is_reported_with_its_log(cluster, profile, finished_run, tmp_path):
    cfg_local, res_local = finished_run
    data = tmp_path / "data"
    shutil.copytree(res_local / "data", data)
    Image.fromarray(np.full((32, 64), 200, np.uint8), mode="L").save(data / "source" / "labels" / "00002.png")
    results = tmp_path / "res"
    cfg = yaml.safe_load(cfg_local.read_text()) | {
        "results": str(results),
        "source": {"format": "gta5", "root": str(data / "source")},
        "target": {"format": "cityscapes", "root": str(data / "target")}}
    proc = slurm_run(profile, cfg, tmp_path / "bad.yaml", "--retries", "0")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(r"Error in rule check_data", out), out[-3000:]
    assert re.search(r"SLURM-job '\d+' failed", out), out[-3000:]
    log = results / "logs" / "check_data.log"
    assert str(log) in out
    [slurm_log] = [Path(p) for _, p in SUBMITTED.findall(out) if Path(p).parent.name == "rule_check_data"]
    assert "Error in rule check_data" in slurm_log.read_text()  # SLURM's log of the failed job is kept
    assert "label ids [200] outside the label table" in out  # show-failed-logs prints the stage's error line
    assert log.read_text().strip().splitlines()[-1].startswith("error:")
    assert not (results / "data_check.json").exists() and not (results / "m0").exists()


def _running_job(rule: str) -> str | None:
    """The id of the running SLURM job of a rule (the plugin puts 'rule_<name>' in the job comment)."""
    proc = subprocess.run(["squeue", "-h", "-t", "R", "-o", "%i %k"], capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        job_id, _, comment = line.partition(" ")
        if f"rule_{rule}" in comment:
            return job_id
    return None


def test_rerun_after_scancel_completes_and_resumes(cluster, profile, tmp_path):
    """Also the run with two processes per model job (runtime.gpus_per_job): sbatch asks for both fake GPUs, each
    stage runs as two gloo ranks on the CPU, and the cancelled 2-process M0 resumes under 2 processes."""
    results = tmp_path / "res"
    cfg = tiny_config(results)
    cfg["oracle"] = False
    cfg["segmenter"]["iterations"]["source"] = 200  # two processes on the node's 2 CPUs: ~9 steps/s, ~20 s to cancel
    cfg["runtime"]["checkpoint_every"] = 5
    cfg["runtime"]["gpus_per_job"] = 2
    path = tmp_path / "cancel.yaml"
    first = slurm_run(profile, cfg, path, "--retries", "0", wait=False)
    partial = results / "m0" / "segmenter.pt.partial.pt"
    deadline = time.monotonic() + 300
    job_id = None
    while time.monotonic() < deadline and not (job_id and partial.exists()):
        job_id = _running_job("train_m0")
        time.sleep(0.5)
    assert job_id and partial.exists(), "train_m0 never ran long enough to checkpoint"
    subprocess.run(["scancel", job_id], check=True)
    out, _ = first.communicate(timeout=300)
    assert first.returncode != 0
    assert re.search(rf"SLURM-job '{job_id}' failed.*CANCELLED", out), out[-3000:]
    assert not (results / "m0" / "segmenter.pt").exists() and partial.exists()

    second = slurm_run(profile, cfg, path)
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    log = (results / "logs" / "m0" / "train.log").read_text()
    step = int(re.search(r"\[resume\] .*: resuming at step (\d+)", log).group(1))
    assert step > 0
    assert (results / "metrics.tsv").exists() and not list(results.rglob("*.partial.pt"))
    for stage_log in [results / "logs" / "m0" / "train.log", *(results / "logs").rglob("*evaluate.log"),
                      *(results / "logs").rglob("translate*.log"), *(results / "logs").rglob("*pseudo.log")]:
        text = stage_log.read_text()
        assert re.search(r"^slurm job \d+ on localhost, gpus 2,", text, re.M), stage_log
        for rank in (0, 1):
            assert f"distributed: rank {rank} of 2, device cpu, backend gloo" in text, stage_log


def m0_steps_per_second(demo, tmp_path) -> float:
    """M0's steps a second at the tiny config's sizes on one thread here: the difference of two runs' wall times."""
    seconds = []
    for steps in (50, 650):
        start = time.monotonic()
        run_stage("train_segmenter", "--mode", "source", "--backbone", "resnet_mini", "--width", "8", "--batch-size",
                  "4", "--threads", "1", "--iterations", steps, *source_flags(demo), "--out", tmp_path / f"{steps}.pt")
        seconds.append(time.monotonic() - start)
    return 600 / (seconds[1] - seconds[0])


def test_time_limit_requeues_until_done_and_matches_local_run(cluster, profile, tiny_demo, tmp_path):
    """M0 needs three or more of its 1-minute limit. 40 s before the limit (runtime.stop_before_limit, 300 s in the
    shipped config) the stage checkpoints and requeues its own job, which SLURM starts again and which resumes,
    until M0 is done: one command, and the results equal an uninterrupted run's."""
    cfg = tiny_config(tmp_path / "local")
    cfg["oracle"], cfg["ssl_steps"] = False, 0
    # A run trains for less than 20 s (it stops 20 s into its minute, after two Snakemake processes and the stage
    # have started): 3.5 times that at this machine's pace, measured alone, needs three runs or more (more when
    # the machine is busier during the runs)
    cfg["segmenter"]["iterations"]["source"] = round(3.5 * 20 * m0_steps_per_second(tiny_demo, tmp_path))
    cfg["runtime"]["checkpoint_every"] = 100_000  # every checkpoint is a stop's
    cfg["runtime"]["stop_before_limit"] = 40
    local_cfg = tmp_path / "local.yaml"
    local_cfg.write_text(yaml.safe_dump(cfg))
    # the uninterrupted run beside the SLURM one (one thread per job either way, so the same arithmetic)
    local = subprocess.Popen([*SNAKEMAKE, "--cores", "1", "--nolock", "--configfile", str(local_cfg)], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    shipped = yaml.safe_load((profile / "config.yaml").read_text())
    shipped["set-resources"]["train_m0"] |= {"runtime": 1}
    short = tmp_path / "profile"
    short.mkdir()
    (short / "config.yaml").write_text(yaml.safe_dump(shipped))
    results = tmp_path / "slurm"
    proc = slurm_run(short, cfg | {"results": str(results)}, tmp_path / "limit.yaml")
    out = proc.stdout + proc.stderr
    local_out, _ = local.communicate(timeout=600)
    assert local.returncode == 0, local_out[-3000:]
    assert proc.returncode == 0, out[-4000:]
    [job_id] = [job for job, log in SUBMITTED.findall(out) if Path(log).parent.name == "rule_train_m0"]
    restarts = int(re.search(r"Restarts=(\d+)",
                             subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True,
                                            check=True).stdout).group(1))
    assert restarts >= 2  # started three times or more; Snakemake submitted it once
    log = (results / "logs" / "m0" / "train.log").read_text()
    assert f"slurm job {job_id} on localhost" in log
    stops = [int(s) for s in re.findall(rf"\[resume\] run \d+ stopped on the job's time limit after step (\d+) "
                                        rf"\([^)]*, slurm job {job_id}\)", log)]
    assert len(stops) == restarts and stops == sorted(stops) and stops[0] > 0
    assert f"run {restarts + 1} resumes at step {stops[-1]}" in log
    lines = (results / "m0" / "losses.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    runs = [int(line.split("\t")[header.index("run")]) for line in lines[1:]]
    assert runs == sorted(runs) and set(runs) == set(range(1, restarts + 2))  # the run that logged each row
    import torch

    straight = torch.load(tmp_path / "local" / "m0" / "segmenter.pt", weights_only=True)
    resumed = torch.load(results / "m0" / "segmenter.pt", weights_only=True)
    for key in straight["model"]:
        assert torch.equal(straight["model"][key], resumed["model"][key]), key
    assert (results / "metrics.tsv").read_text() == (tmp_path / "local" / "metrics.tsv").read_text()
    assert not list(results.rglob("*.partial.pt"))
