"""The workflow as the Snakemake ecosystem uses it: started from another folder with -s, used as a module from
another project's Snakefile, with the rule env's python under --software-deployment-method conda."""

import os
import subprocess
from pathlib import Path

import yaml
from conftest import REPO, SNAKEMAKE

from bdl.jobs import shell_prefix, uses_conda


def _config_in(folder: Path, finished_cfg: Path) -> Path:
    cfg = yaml.safe_load(finished_cfg.read_text()) | {"results": "res"}  # relative: to the working folder
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run(cwd: Path, *args):
    proc = subprocess.run([*SNAKEMAKE, "--cores", "2", *args], cwd=cwd, capture_output=True, text=True,
                          env=os.environ | {"PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def test_runs_from_an_empty_folder_with_s(finished_run, tmp_path):
    cfg, results = finished_run
    config = _config_in(tmp_path, cfg)
    _run(tmp_path, "-s", str(REPO / "Snakefile"), "--configfile", str(config))
    assert (tmp_path / "res" / "metrics.tsv").read_text() == (results / "metrics.tsv").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".snakemake", "res", "tiny.yaml"]
    # the model rules leave snakemake benchmark records (runtime, memory) for --report
    assert (tmp_path / "res" / "benchmarks" / "m0" / "train.tsv").read_text().startswith("s\th:m:s")


def test_runs_as_a_module_of_another_workflow(finished_run, tmp_path):
    cfg, results = finished_run
    config = _config_in(tmp_path, cfg)
    (tmp_path / "Snakefile").write_text(f'''configfile: "{config.name}"


module bdl:
    snakefile:
        "{REPO / 'Snakefile'}"
    config:
        config


use rule * from bdl as bdl_*


rule all:
    input:
        rules.bdl_all.input,
    default_target: True
''')
    _run(tmp_path)
    assert (tmp_path / "res" / "metrics.tsv").read_text() == (results / "metrics.tsv").read_text()


def test_conda_envs_get_their_own_python():
    from snakemake.settings.types import DeploymentMethod

    assert uses_conda({DeploymentMethod.CONDA}) and not uses_conda(set()) and not uses_conda(None)
    assert not uses_conda({DeploymentMethod.APPTAINER})
    root, python = Path("/opt/my bdl"), "/home/u/venv/bin/python"
    host = shell_prefix(root, python, conda=False)
    assert "export BDL_STAGES='/opt/my bdl/stages'" in host and "export PATH=/home/u/venv/bin:" in host
    # under conda snakemake has activated the rule's env: nothing may put another python before it
    conda = shell_prefix(root, python, conda=True)
    assert "export BDL_STAGES='/opt/my bdl/stages'" in conda and "PATH" not in conda
    # the prefix runs in a real shell: the stage path survives spaces
    out = subprocess.run(["bash", "-c", conda + 'printf %s "$BDL_STAGES"'], capture_output=True, text=True).stdout
    assert out == "/opt/my bdl/stages"


def test_catalog_metadata_and_minimum_version():
    meta = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    assert meta["usage"]["software-stack-deployment"]["conda"] is True and meta["usage"]["report"] is True
    assert 'min_version("9.0")' in (REPO / "Snakefile").read_text()


def test_gpu_jobs_share_a_faked_two_gpu_workstation_one_per_device(finished_run, tmp_path):
    """runtime.gpu: 1 on a machine that shows two GPUs (faked), with more cores than GPUs: the workflow caps
    the gpu resource at 2, every GPU job's log names the device it locked, and no device ever had two jobs."""
    import re

    cfg, results = finished_run
    config = yaml.safe_load(cfg.read_text())
    config["results"] = str(tmp_path / "res")
    config["runtime"] = config["runtime"] | {"gpu": 1}
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump(config))
    fake = {"BDL_FAKE_GPUS": "2", "BDL_GPU_SLOT_DIR": str(tmp_path / "slots")}
    proc = subprocess.run([*SNAKEMAKE, "--cores", "4", "--configfile", str(path)], cwd=REPO, capture_output=True,
                          text=True, env=os.environ | fake)
    assert proc.returncode == 0, proc.stderr[-4000:]
    held = re.compile(r"gpu slot: device (\d) of 2 \(CUDA_VISIBLE_DEVICES=\1\), held from ([0-9.]+)")
    released = re.compile(r"gpu slot: device (\d) released at ([0-9.]+)")
    spans = {}
    logs = [p for p in (tmp_path / "res" / "logs").rglob("*.log")
            if re.search(r"(train|translator_train|translate|pseudo|evaluate)\.log$", p.name)]
    assert len(logs) == 11  # M0, oracle, F_1, translate, M_1 adv, pseudo-labels, M_1 SSL, four evaluations
    for log in logs:
        text = log.read_text()
        (device, start), = held.findall(text)
        (device_end, end), = released.findall(text)
        assert device == device_end
        spans.setdefault(device, []).append((float(start), float(end)))
    assert set(spans) == {"0", "1"}  # jobs ran side by side (M0 and the oracle, at least), one per device
    for intervals in spans.values():
        intervals.sort()
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(intervals, intervals[1:]))
    # the slots change where a job runs, never what it computes
    assert (tmp_path / "res" / "metrics.tsv").read_text() == (results / "metrics.tsv").read_text()
