#!/usr/bin/env python
"""The GPU proof: every CUDA path of the project in one run inside a time budget, each piece's result (or its
failure) written down, so that a short GPU window gives the whole check. benchmarks/gpu_proof.sh is the one
command on a bare GPU machine (it installs what the machine lacks, then runs this).

  python benchmarks/gpu_proof.py --out DIR                       # on a CUDA machine, 8 minutes at most
  python benchmarks/gpu_proof.py --out DIR --device cpu --tiny   # the same pieces at toy sizes (the tests run this)

Pieces, in priority order; each runs in its own process with the time it may take (its cap, or what is left of
the budget less the summary's reserve) and one that fails, times out or finds no time left is recorded so and
the next one runs:

  env           GPU model, driver, CUDA, cuDNN, torch and the other packages' versions
  cuda_tests    pytest -m cuda tests/test_cuda.py (CUDA against CPU, bf16 against fp32, GPU slot, checkpoints)
  workflow_on   the tiny workflow end to end (snakemake, every rule) with runtime.bf16 and channels_last on
  workflow_off  the same with both off; the mIoU of every model of each
  gpu_check     benchmarks/gpu_check.py at the preset's shapes, fp32 and bf16 + channels_last: s/step, peak memory
  adv_memory    benchmarks/adv_step_memory.py (joint against split backward, peak memory)
  evaluate      stages/evaluate.py with a ResNet-101 on val frames at 2048x1024: s/frame, peak CUDA memory

Written under --out: summary.json (every piece: status, seconds, figures; rewritten after each piece),
summary.tsv (one line per figure), proof.log (this driver's lines) and logs.tar.gz (each piece's log and
files). benchmarks/rehearse.py --gpu-proof DIR reads summary.json.
"""

import argparse
import csv
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

PIECES = ("env", "cuda_tests", "workflow_on", "workflow_off", "gpu_check", "adv_memory", "evaluate")
# seconds a piece may take at most on a GPU (its share of the default 8 minutes; the install comes before)
CAPS = {"env": 60, "cuda_tests": 90, "workflow_on": 120, "workflow_off": 120, "gpu_check": 240, "adv_memory": 90,
        "evaluate": 90}
RESERVE_S = 10  # kept back for the summary and the log archive
PRESET = REPO / "config" / "paper_gta5_resnet101.yaml"


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="folder for the results (made if missing)")
    p.add_argument("--budget", type=float, default=480, help="seconds for the whole proof, summary included")
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="toy sizes, to check the proof itself on a CPU")
    p.add_argument("--steps", type=int, help="gpu_check's timed steps per figure (default 10; 2 with --tiny)")
    p.add_argument("--skip", default="", help="comma-separated pieces to leave out (recorded as skipped)")
    p.add_argument("--cores", type=int, default=min(os.cpu_count() or 2, 8), help="snakemake --cores")
    p.add_argument("--scratch", help="folder for the pieces' working files (default: a new temporary one)")
    p.add_argument("--facts", action="store_true", help=argparse.SUPPRESS)  # the env piece's child process
    p.add_argument("--wheel-requirements", action="store_true",
                   help="print name==version of what the workflow and the tests need beyond torch and the stages' "
                        "packages, as installed here (benchmarks/gpu_proof.sh --fetch-wheels downloads them)")
    return p


# ---------------------------------------------------------------------------------------------------------- env

def facts() -> dict:
    """What the machine is: GPU, driver, CUDA and the packages, each as found (None where absent)."""
    from importlib import metadata

    out = {"python": platform.python_version(), "executable": sys.executable, "machine": platform.machine(),
           "cpus": os.cpu_count(), "kernel": platform.release()}
    smi = shutil.which("nvidia-smi")
    if smi:
        proc = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True)
        out["nvidia_smi"] = proc.stdout.strip() or proc.stderr.strip()
    for name in ("torch", "torchvision", "numpy", "h5py", "pillow", "snakemake", "jsonschema", "pytest"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    import torch

    out |= {"torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out |= {"gpu": props.name, "gpu_memory_gib": props.total_memory / 2**30,
                "compute_capability": f"{props.major}.{props.minor}", "multiprocessors": props.multi_processor_count,
                "bf16_supported": torch.cuda.is_bf16_supported(), "gpu_count": torch.cuda.device_count()}
    return out


def wheel_requirements() -> list[str]:
    """name==version of snakemake's, jsonschema's, hdf5plugin's (the translated sets' codec, which a GPU
    machine's python is unlikely to have) and the tests' packages and theirs, as installed here."""
    from importlib import metadata

    def norm(name):
        return re.sub(r"[-_.]+", "-", name).lower()

    seen, todo = {}, ["snakemake", "jsonschema", "hdf5plugin", "pytest", "psutil"]
    while todo:
        name = norm(todo.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[name] = dist.version
        todo += [re.match(r"[A-Za-z0-9_.\-]+", r).group(0) for r in dist.requires or [] if "extra ==" not in r]
    return [f"{n}=={v}" for n, v in sorted(seen.items())]


# ------------------------------------------------------------------------------------------------------ pieces

class Proof:
    def __init__(self, args):
        self.args, self.started = args, time.monotonic()
        self.out = Path(args.out).absolute()
        self.out.mkdir(parents=True, exist_ok=True)
        self.scratch = Path(args.scratch or tempfile.mkdtemp(prefix="bdl-gpu-proof-")).absolute()
        self.logs = self.scratch / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.summary = {"command": " ".join(sys.argv), "device": args.device, "tiny": args.tiny,
                        "budget_s": args.budget, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                        "pieces": {}, "finished": False}
        self.env = os.environ | {"PYTHONUNBUFFERED": "1"}

    def left(self) -> float:
        return self.args.budget - (time.monotonic() - self.started)

    def say(self, line: str):
        stamp = f"[{time.monotonic() - self.started:6.1f} s] {line}"
        print(stamp, flush=True)
        with open(self.out / "proof.log", "a") as log:
            log.write(stamp + "\n")

    def write(self):
        from bdl.artifacts import write_json

        write_json(self.out / "summary.json", self.summary)

    def run(self, name: str, cmd: list, cap: float, cwd=REPO) -> dict:
        """``cmd`` with its output in logs/<name>.log, killed at min(cap, what is left): status ok, failed
        (exit code, last lines) or timeout."""
        limit = min(cap, self.left() - RESERVE_S)
        log_path = self.logs / f"{name}.log"
        start = time.monotonic()
        with open(log_path, "a") as log:
            log.write(f"$ {' '.join(map(str, cmd))}\n")
            log.flush()
            # a new process group, so a timeout also ends what the piece started (snakemake's jobs)
            proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                    env=self.env, start_new_session=True)
            try:
                rc = proc.wait(timeout=max(limit, 1))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
                rc = None
        seconds = time.monotonic() - start
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        if rc is None:
            return {"status": "timeout", "seconds": seconds, "limit_s": limit, "tail": tail}
        return {"status": "ok" if rc == 0 else "failed", "rc": rc, "seconds": seconds} | (
            {} if rc == 0 else {"tail": tail})

    def piece(self, name: str):
        if name in self.args.skip.split(","):
            result = {"status": "skipped", "reason": "--skip"}
        elif self.left() - RESERVE_S < 5:
            result = {"status": "skipped", "reason": f"budget: {max(self.left(), 0):.0f} s left"}
        else:
            self.say(f"{name}: start ({self.left():.0f} s left)")
            try:
                result = getattr(self, f"piece_{name}")()
            except Exception as exc:  # the piece's own reading of its output broke: recorded, the next one runs
                result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        self.summary["pieces"][name] = result
        self.say(f"{name}: {result['status']}" + (f" in {result['seconds']:.0f} s" if "seconds" in result else "")
                 + (f" ({result['reason']})" if "reason" in result else ""))
        self.write()

    def py(self, *argv) -> list:
        return [sys.executable, *argv]

    def piece_env(self):
        result = self.run("env", self.py(__file__, "--facts"), CAPS["env"])
        if result["status"] == "ok":
            text = (self.logs / "env.log").read_text()
            result["facts"] = json.loads(text[text.index("{"):])
        return result

    def piece_cuda_tests(self):
        xml = self.scratch / "cuda_tests.xml"
        # the machine's own pytest plugins stay out: the tests need none, and one may not load with its pytest
        self.env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        result = self.run("cuda_tests", self.py("-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
                                                "tests/test_cuda.py", f"--junitxml={xml}"), CAPS["cuda_tests"])
        if xml.is_file():
            import xml.etree.ElementTree as ET

            suite = ET.parse(xml).getroot()
            suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
            result["tests"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
            result["failed"] = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
                                if c.find("failure") is not None or c.find("error") is not None]
        return result

    def workflow(self, name: str, on: bool):
        cfg = workflow_config(self.scratch / name, self.args.device, on)
        self.env["BDL_GPU_SLOT_DIR"] = str(self.scratch / "gpu_slots")
        note = {}
        if self.args.device.startswith("cuda"):
            from bdl.gpu_slots import visible_gpus

            if not visible_gpus():  # no /proc/driver/nvidia/gpus (a VM, say): the slots count torch's GPUs
                count = self.summary["pieces"].get("env", {}).get("facts", {}).get("gpu_count") or 1
                self.env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, range(count)))
                note = {"note": f"no GPUs under /proc/driver/nvidia: CUDA_VISIBLE_DEVICES set to "
                                f"{self.env['CUDA_VISIBLE_DEVICES']} for the GPU slots"}
        result = self.run(name, self.py("-m", "snakemake", "--cores", self.args.cores, "--configfile", cfg),
                          CAPS[name])
        results = cfg.parent / "results"
        if (results / "logs").is_dir():
            shutil.copytree(results / "logs", self.logs / f"{name}_jobs", dirs_exist_ok=True)
        if (results / "metrics.tsv").is_file():
            result["miou"] = read_metrics(results / "metrics.tsv")
            shutil.copy(results / "metrics.tsv", self.logs / f"{name}_metrics.tsv")
        return result | note | {"bf16": on, "channels_last": on}

    def piece_workflow_on(self):
        return self.workflow("workflow_on", True)

    def piece_workflow_off(self):
        return self.workflow("workflow_off", False)

    def piece_gpu_check(self):
        out = self.scratch / "gpu_check.json"
        steps = self.args.steps or (2 if self.args.tiny else 10)
        result = self.run("gpu_check", self.py("benchmarks/gpu_check.py", "--device", self.args.device,
                                               "--steps", steps, "--skip-stages", "--skip-memory", "--json", out,
                                               *(["--tiny"] if self.args.tiny else [])), CAPS["gpu_check"])
        if out.is_file():  # rewritten after each figure: a run stopped half way keeps the figures it has
            data = json.loads(out.read_text())
            result |= {"figures": data["figures"], "ratios": data["ratios"], "complete": data["finished"],
                       "shapes": data["shapes"], "steps": data["steps"]}
        return result

    def piece_adv_memory(self):
        out = self.scratch / "adv_memory.json"
        result = self.run("adv_memory", self.py("benchmarks/adv_step_memory.py", "--device", self.args.device,
                                                "--json", out, *(["--tiny"] if self.args.tiny else [])),
                          CAPS["adv_memory"])
        if out.is_file():
            result["memory"] = json.loads(out.read_text())
        return result

    def piece_evaluate(self):
        """A ResNet-101 (the preset's, random init, one source step to make a real checkpoint) scoring val frames
        at Cityscapes' 2048x1024 through the stage, at the preset's target size as the workflow runs it."""
        import yaml

        from bdl.data.demo import generate

        folder = self.scratch / "evaluate"
        frames, (w, h) = (2, (64, 32)) if self.args.tiny else (6, (2048, 1024))
        generate(folder / "val", 0, 0, frames, width=w, height=h, seed=5)
        generate(folder / "train", 2, 0, 0, width=64, height=32, seed=6)
        preset = yaml.safe_load(PRESET.read_text())
        backbone = "resnet_mini" if self.args.tiny else preset["segmenter"]["backbone"]
        size = [w // 2, h // 2] if self.args.tiny else preset["target"]["size"]
        device = ["--device", self.args.device, "--threads", str(self.args.cores)]
        checkpoint = folder / "segmenter.pt"
        made = self.run("evaluate", self.py("stages/train_segmenter.py", "--mode", "source", "--source-format", "gta5",
                                            "--source-root", folder / "train" / "source", "--backbone", backbone,
                                            "--width", "8" if self.args.tiny else "64", "--weights", "none",
                                            "--batch-size", "1", "--iterations", "1", *device, "--out", checkpoint),
                        CAPS["evaluate"])
        if made["status"] != "ok":
            return made | {"step": "making the checkpoint"}
        result = self.run("evaluate", self.py("stages/evaluate.py", "--segmenter", checkpoint, "--target-format",
                                              "cityscapes", "--target-root", folder / "val" / "target",
                                              "--split", "val",
                                              "--target-size", *map(str, size), *device,
                                              "--out", folder / "eval.json"), CAPS["evaluate"] - made["seconds"])
        log = (self.logs / "evaluate.log").read_text(errors="replace")
        peak = re.findall(r"peak CUDA memory: allocated ([\d.]+) GiB, reserved ([\d.]+) GiB", log)
        from rehearse import bar_seconds

        per_frame = bar_seconds(self.logs / "evaluate.log")  # its bar counts frames: tqdm's final rate
        result |= {"backbone": backbone, "frames": frames, "frame_size": [w, h], "model_input": size,
                   "seconds_per_frame": per_frame, "stage_seconds": result["seconds"]}
        if peak:
            result["peak_cuda_gib"] = {"allocated": float(peak[-1][0]), "reserved": float(peak[-1][1])}
        if (folder / "eval.json").is_file():
            result["miou"] = json.loads((folder / "eval.json").read_text())["miou"]
        return result

    # ------------------------------------------------------------------------------------------------ summary

    def finish(self):
        self.summary["seconds"] = time.monotonic() - self.started
        self.summary["finished"] = True
        self.write()
        rows = figure_rows(self.summary)
        with open(self.out / "summary.tsv", "w", newline="") as fh:
            writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
            writer.writerow(["piece", "figure", "mode", "value", "unit"])
            writer.writerows(rows)
        # the device machine gives back a few files only: every log in one archive
        with tarfile.open(self.out / "logs.tar.gz", "w:gz") as tar:
            tar.add(self.logs, arcname="logs")
        self.say(f"done in {self.summary['seconds']:.0f} s: " + ", ".join(
            f"{name} {p['status']}" for name, p in self.summary["pieces"].items()))
        for row in rows:
            print("\t".join(map(str, row)))


def workflow_config(folder: Path, device: str, on: bool) -> Path:
    """The tests' tiny workflow (one round, one SSL step) on ``device``, runtime.bf16 and channels_last both
    ``on`` or both off; written to folder/config.yaml, its results in folder/results."""
    import yaml

    cfg = {"results": str(folder / "results"), "rounds": 1, "ssl_steps": 1, "oracle": False, "device": device,
           "demo": {"n_source": 12, "n_target_train": 8, "n_target_val": 6, "width": 64, "height": 32},
           "segmenter": {"width": 8, "ndf": 8, "batch_size": 4,
                         "iterations": {"source": 4, "adversarial": 3, "ssl": 3, "oracle": 3}},
           "translator": {"ngf": 4, "n_blocks": 1, "ndf": 4, "iterations": 3, "batch_size": 2},
           # runtime.gpu 1: each model job takes the GPU's slot (bdl.gpu_slots), as on a workstation
           "runtime": {"threads": 1, "checkpoint_every": 2, "log_every": 1,
                       "gpu": 1 if device.startswith("cuda") else 0, "bf16": on, "channels_last": on}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def read_metrics(path: Path) -> dict:
    """model -> mIoU (19 classes) of a run's metrics.tsv."""
    with open(path) as fh:
        return {row["model"]: float(row["miou"]) for row in csv.DictReader(fh, delimiter="\t")}


def figure_rows(summary: dict) -> list:
    """(piece, figure, mode, value, unit) for every figure of the summary."""
    rows, pieces = [], summary["pieces"]
    for name, p in pieces.items():
        rows.append([name, "status", "", p["status"], ""])
    facts = pieces.get("env", {}).get("facts", {})
    for key in ("gpu", "nvidia_smi", "torch", "torch_cuda", "cudnn"):
        if facts.get(key) is not None:
            rows.append(["env", key, "", facts[key], ""])
    tests = pieces.get("cuda_tests", {}).get("tests")
    if tests:
        rows += [["cuda_tests", k, "", v, "tests"] for k, v in tests.items()]
    for name in ("workflow_on", "workflow_off"):
        for model, miou in pieces.get(name, {}).get("miou", {}).items():
            rows.append([name, f"{model} mIoU", "bf16+channels_last" if name.endswith("on") else "fp32", miou, "%"])
    for f in pieces.get("gpu_check", {}).get("figures", []):
        rows.append(["gpu_check", f["figure"], f["mode"], f"{f['seconds']:.5f}", f"s/{f['unit']}"])
        if f.get("peak_mib") is not None:
            rows.append(["gpu_check", f"{f['figure']} peak", f["mode"], f"{f['peak_mib']:.0f}", "MiB allocated"])
    for way, figures in pieces.get("adv_memory", {}).get("memory", {}).get("ways", {}).items():
        rows += [["adv_memory", f"{way} backward", "fp32", v, k.removesuffix("_gib") + " GiB"]
                 for k, v in figures.items()]
    ev = pieces.get("evaluate", {})
    if ev.get("seconds_per_frame") is not None:
        rows.append(["evaluate", f"{ev['backbone']} at {ev['frame_size'][0]}x{ev['frame_size'][1]}", "auto",
                     f"{ev['seconds_per_frame']:.4f}", "s/val frame"])
    for kind, gib in ev.get("peak_cuda_gib", {}).items():
        rows.append(["evaluate", f"peak CUDA {kind}", "auto", gib, "GiB"])
    return rows


def main(args):
    if args.facts:
        print(json.dumps(facts(), indent=2))
        return
    if args.wheel_requirements:
        print("\n".join(wheel_requirements()))
        return
    if not args.out:
        raise SystemExit("error: --out is required")
    unknown = set(filter(None, args.skip.split(","))) - set(PIECES)
    if unknown:
        raise SystemExit(f"error: --skip names unknown pieces {', '.join(sorted(unknown))} "
                         f"(pieces: {', '.join(PIECES)})")
    proof = Proof(args)
    proof.say(f"GPU proof on {args.device}{' (tiny)' if args.tiny else ''}, budget {args.budget:.0f} s, "
              f"results in {proof.out}, working files in {proof.scratch}")
    for name in PIECES:
        proof.piece(name)
    proof.finish()


if __name__ == "__main__":
    main(get_args_parser().parse_args())
