"""The benchmark scripts run (figures are printed, never asserted: speed targets are not timed tests)."""

import os
import re
import subprocess
import sys

from conftest import NO_BF16_KERNELS, REPO


def test_gpu_check_runs_its_whole_path_at_toy_sizes_on_cpu():
    # with oneDNN's bf16 kernels kept out, the bf16 + channels_last mode runs as such on every CPU (test_onednn)
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--tiny", "--steps", "2"],
                          cwd=REPO, capture_output=True, text=True, env=os.environ | NO_BF16_KERNELS)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    assert "channels_last turned off" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert sum("steps/s" in line for line in lines) == 6
    assert sum("bf16+channels_last / fp32 speed" in line for line in lines) == 3
    assert sum(line.strip().startswith(("joint backward: peak", "split backward: peak")) for line in lines) == 2
    assert "stage chain on cpu (7 stage scripts" in lines[-1] and lines[-1].split(": ")[-1].startswith("ok")


def test_ssl_control_repeats_the_ssl_training_without_pseudo_labels(finished_run, tmp_path):
    _, results = finished_run
    out = tmp_path / "control"
    proc = subprocess.run([sys.executable, "investigations/ssl_control.py", "--results", str(results), "--round", "1",
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    row = [line.split("\t") for line in proc.stdout.splitlines() if line.startswith("ssl1\t")]
    assert len(row) == 1 and len(row[0]) == 4
    ssl, ctrl, diff = (float(v) for v in row[0][1:])
    assert abs((ssl - ctrl) - diff) < 0.011
    # the control trained the same iterations, adversarially, with no pseudo-label term
    control_log = (out / "ssl1" / "train.log").read_text()
    assert "seg_target" not in control_log and "adv" in control_log
    assert "seg_target" in (results / "logs" / "round1" / "ssl1_train.log").read_text()


def test_recorded_arguments_turn_back_into_the_same_flags(finished_run):
    sys.path.insert(0, str(REPO / "investigations"))
    sys.path.insert(0, str(REPO / "stages"))
    from ssl_control import _OWN
    from train_segmenter import get_args_parser

    from bdl.artifacts import load_checkpoint
    from bdl.cli import option_args

    _, results = finished_run
    rec = load_checkpoint(results / "round1" / "ssl1" / "segmenter.pt")["args"]
    parsed = vars(get_args_parser().parse_args(["--mode", "ssl", "--out", "x", *option_args(rec, _OWN)]))
    # a 1-process run records no procs (its checkpoint is the file it was before --procs); parsed, it is 1
    assert parsed["procs"] == 1 and "procs" not in rec
    assert {k: v for k, v in parsed.items() if k not in (*_OWN, "procs")} == {
        k: v for k, v in rec.items() if k not in _OWN}


def test_throughput_benchmark_prints_every_figure(finished_run):
    # the figures themselves are machine-dependent; this checks the script runs on a finished run and
    # reports each stage's ratio, so it does not rot between the sessions that read its numbers
    _, results = finished_run
    proc = subprocess.run([sys.executable, "benchmarks/run.py", "--results", str(results), "--steps", "2",
                           "--repeats", "1", "--inference-repeats", "1", "--inference-batch", "4",
                           "--paper-frames", "0", "--skip-memory", "--skip-snakemake", "--threads", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ratios = dict(re.findall(r"^(.+?): stage .* ratio ([0-9.]+) \(median of 1 pairs; target", proc.stdout, re.M))
    assert set(ratios) == {"train_segmenter source-only", "train_segmenter adversarial", "train_segmenter ssl",
                           "train_translator", "translate (with reading + HDF5 writing)",
                           "pseudo_label classwise (with reading + HDF5 writing)"}
    assert all(float(r) > 0 for r in ratios.values())
    assert "inputs: source cache, target cache" in proc.stdout
    assert re.search(r"pseudo_label parts, ms per frame.*model \+ softmax [0-9.]+", proc.stdout)
