"""The benchmark scripts run (figures are printed, never asserted: speed targets are not timed tests)."""

import csv
import json
import os
import re
import subprocess
import sys
import tarfile

from conftest import NO_BF16_KERNELS, REPO, SNAKEMAKE, stage_commands


def test_gpu_check_runs_its_whole_path_at_toy_sizes_on_cpu():
    # with oneDNN's bf16 kernels kept out, the bf16 + channels_last mode runs as such on every CPU (test_onednn)
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--tiny", "--steps", "2"],
                          cwd=REPO, capture_output=True, text=True, env=os.environ | NO_BF16_KERNELS)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    assert "channels_last turned off" not in proc.stderr
    lines = proc.stdout.splitlines()
    # six figures (three training steps, the translator step, translate and pseudo-label forwards), two modes each
    assert sum("steps/s" in line for line in lines) == 12
    assert sum("bf16+channels_last / fp32 speed" in line for line in lines) == 6
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


def test_ssl_variant_replays_the_step_and_adds_the_given_flags(finished_run, tmp_path):
    import h5py

    _, results = finished_run
    step = results / "round1" / "ssl1"
    adv = json.loads((results / "round1" / "adv" / "eval.json").read_text())["miou"]
    ssl = json.loads((step / "eval.json").read_text())["miou"]

    def variant(out, *flags):
        proc = subprocess.run([sys.executable, "investigations/ssl_variant.py", "--results", str(results),
                               "--round", "1", "--out", str(out), *flags], cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
        rows = [line.split("\t") for line in proc.stdout.splitlines() if line.startswith(("-\t", "mean\t"))]
        assert [r[0] for r in rows] == ["-", "mean"] and all(len(r) == 7 for r in rows)
        return [float(v) for v in rows[0][2:5]]

    # no flags added: the recorded ones alone make the run's own SSL model again (CPU runs are deterministic)
    assert variant(tmp_path / "same") == [round(adv, 2), round(ssl, 2), round(ssl, 2)]
    with h5py.File(tmp_path / "same" / "pseudo.h5", "r") as fh, h5py.File(step / "pseudo.h5", "r") as run:
        assert fh.attrs["mode"] == run.attrs["mode"] and (fh["label"][...] == run["label"][...]).all()
    # flags added after the recorded ones win: another rule, another schedule
    variant(tmp_path / "other", "--pseudo-flags=--mode fixed --threshold 0.2", "--train-flags=--iterations 2")
    with h5py.File(tmp_path / "other" / "pseudo.h5", "r") as fh:
        assert fh.attrs["mode"] == "fixed" and fh.attrs["threshold"] == 0.2
    log = (tmp_path / "other" / "train.log").read_text()
    assert "step 2/2" in log and "step 3/3" not in log and "seg_target" in log
    # a folder of one variant is not taken for another's
    again = subprocess.run([sys.executable, "investigations/ssl_variant.py", "--results", str(results), "--out",
                            str(tmp_path / "same"), "--train-flags=--lr 0.5"], cwd=REPO, capture_output=True, text=True)
    assert again.returncode != 0 and "holds a variant made with other flags" in again.stderr


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


def _proof(out, *flags):
    return subprocess.run([sys.executable, "benchmarks/gpu_proof.py", "--out", str(out), "--device", "cpu", "--tiny",
                           *flags], cwd=REPO, capture_output=True, text=True, env=os.environ | NO_BF16_KERNELS)


def test_gpu_proof_runs_its_pieces_at_toy_sizes_on_cpu(tmp_path):
    # the two tiny workflows take minutes on a CPU (the suite runs that workflow elsewhere): left out here
    out = tmp_path / "proof"
    proc = _proof(out, "--budget", "400", "--steps", "1", "--skip", "workflow_on,workflow_off")
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["logs.tar.gz", "proof.log", "summary.json", "summary.tsv"]
    summary = json.loads((out / "summary.json").read_text())
    pieces = summary["pieces"]
    assert summary["finished"] and summary["seconds"] < 400
    assert {name: p["status"] for name, p in pieces.items()} == {
        "env": "ok", "cuda_tests": "ok", "workflow_on": "skipped", "workflow_off": "skipped", "gpu_check": "ok",
        "adv_memory": "ok", "evaluate": "ok"}
    facts = pieces["env"]["facts"]
    assert facts["cuda_available"] is False and facts["torch"] and facts["python"]
    # no CUDA here: every CUDA test ran into its skip, none failed
    tests = pieces["cuda_tests"]["tests"]
    assert tests["tests"] >= 6 and tests["skipped"] == tests["tests"] and tests["failures"] == tests["errors"] == 0
    figures = pieces["gpu_check"]["figures"]
    assert pieces["gpu_check"]["complete"] and len(figures) == 12
    assert {(f["figure"], f["mode"]) for f in figures} == {
        (k, m) for k in ("source_step", "adversarial_step", "ssl_step", "translator_step", "translate_frame",
                         "pseudo_label_frame") for m in ("fp32", "bf16+channels_last")}
    assert all(f["seconds"] > 0 for f in figures) and len(pieces["gpu_check"]["ratios"]) == 6
    ways = pieces["adv_memory"]["memory"]["ways"]
    assert set(ways) == {"joint", "split"} and all(w["rss_gib"] > 0 for w in ways.values())
    ev = pieces["evaluate"]
    assert ev["seconds_per_frame"] > 0 and 0 <= ev["miou"] <= 100 and ev["frames"] == 2
    with open(out / "summary.tsv") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert {r["piece"] for r in rows} == set(pieces)
    assert sum(r["piece"] == "gpu_check" and r["unit"].startswith("s/") for r in rows) == 12
    with tarfile.open(out / "logs.tar.gz") as tar:
        names = set(tar.getnames())
    assert {f"logs/{n}.log" for n in ("env", "cuda_tests", "gpu_check", "adv_memory", "evaluate")} <= names


def test_gpu_proof_stops_at_its_budget_and_still_writes_its_summary(tmp_path):
    # through the one command a GPU machine gets (benchmarks/gpu_proof.sh), with no wheels to install
    out = tmp_path / "proof"
    env = os.environ | NO_BF16_KERNELS | {"PYTHON": sys.executable, "BUDGET": "25", "WHEELS": str(tmp_path / "none")}
    proc = subprocess.run(["bash", "benchmarks/gpu_proof.sh", str(out), "--device", "cpu", "--tiny"], cwd=REPO,
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    assert "nothing installed" in (out / "install.log").read_text()
    summary = json.loads((out / "summary.json").read_text())
    statuses = [p["status"] for p in summary["pieces"].values()]
    assert summary["finished"] and summary["seconds"] < 25 + 5
    assert len(statuses) == 7 and set(statuses) <= {"ok", "timeout", "skipped"}
    # gpu_check alone takes longer than the whole budget: evaluate, the last piece, found no time left
    assert summary["pieces"]["evaluate"] == {"status": "skipped", "reason": summary["pieces"]["evaluate"]["reason"]}
    assert summary["pieces"]["evaluate"]["reason"].startswith("budget")
    assert (out / "summary.tsv").is_file() and (out / "logs.tar.gz").is_file()


def test_gpu_proof_workflow_config_is_valid_and_its_metrics_are_read(finished_run, tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    from gpu_proof import read_metrics, workflow_config

    for on in (True, False):
        cfg = workflow_config(tmp_path / str(on), "cuda", on)
        dry = subprocess.run([*SNAKEMAKE, "-n", "-p", "--cores", "2", "--configfile", str(cfg)], cwd=REPO,
                             capture_output=True, text=True)
        assert dry.returncode == 0, dry.stderr[-2000:]
        flag = "on" if on else "off"
        commands = stage_commands(dry.stdout)
        for stage in ("train_segmenter", "train_translator", "translate", "pseudo_label", "evaluate"):
            for argv in commands[stage]:
                assert argv[argv.index("--device") + 1] == "cuda", (stage, argv)
                assert argv[argv.index("--bf16") + 1] == argv[argv.index("--channels-last") + 1] == flag
        # each model job takes the one GPU's slot
        shells = [line for line in dry.stdout.splitlines() if "train_segmenter.py" in line]
        assert shells and all("BDL_GPUS=1 " in line for line in shells)
    _, results = finished_run
    miou = read_metrics(results / "metrics.tsv")
    assert {"m0", "round1_adv", "round1_ssl1"} <= set(miou) and all(0 <= v <= 100 for v in miou.values())
