#!/usr/bin/env python
"""Which float32 bits depend on the CPU's instruction set? Hashes of ops and of short stage runs, per setting.

The demo's tables repeat byte for byte on one machine but not across CPU models. This script runs, in a fresh
child process per setting (and ``--repeats`` times each, so a run-to-run defect would show as well),

* ``ops``: a few forward/backward steps of each op family the stages use (Conv2d, ConvTranspose2d, BatchNorm2d,
  InstanceNorm2d, padding, activations, bilinear upsampling, softmax/cross-entropy, the losses, Adam, SGD) and
  the four models (M, F, the PatchGAN, the output-space D) on fixed-seed inputs, hashing outputs and gradients;
* ``stages``: a few iterations of the real stage scripts on a small generated demo (M0, the translator with M0
  as perceptual judge, translate, the adversarial M), each stage fed the first setting's outputs so that a row
  isolates that stage's own arithmetic, hashing the saved tensors;

and prints a table: rows = ops or stages, columns = settings, cells = the first 8 hex digits of a SHA-256,
``*`` where a cell differs from the first column, ``!`` where one setting's runs differ from each other. A
setting makes this one CPU dispatch as another would: ``ONEDNN_MAX_CPU_ISA`` caps oneDNN's kernels (the
convolutions), ``ATEN_CPU_CAPABILITY`` ATen's vectorised kernels (elementwise ops, norms, reductions, Adam and
SGD, interpolation), ``mkldnn_off`` sends convolutions to ATen's own im2col + BLAS path, ``threads1`` runs one
thread instead of the workflow's two, ``nondet`` (ops only) turns ``torch.use_deterministic_algorithms`` off.
The ops part also lists the oneDNN implementation each op ran (``ONEDNN_VERBOSE``). ``--json`` saves the hashes
with a description of the machine; ``--compare`` reads another machine's file and says which rows match.
``--time`` times the translator at the demo's size per setting (a 1- and an N-iteration run, the difference
per iteration); on a loaded machine OpenMP's spin-waiting makes those figures noisy.

    python investigations/cross_isa.py ops stages --json here.json     # then, on another machine:
    python investigations/cross_isa.py ops stages --settings native cap_avx2 --compare here.json
    python investigations/cross_isa.py --time --settings native cap_avx2
"""

import argparse
import ctypes
import hashlib
import json
import os
import resource
import runpy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = REPO / "stages"

# name -> (environment added, torch threads); BDL_XISA_* are read by this script's own child
SETTINGS = {
    "native": ({}, 2),
    "dnnl_avx512": ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, 2),
    "dnnl_avx2": ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, 2),
    "dnnl_sse41": ({"ONEDNN_MAX_CPU_ISA": "SSE41"}, 2),
    "aten_avx2": ({"ATEN_CPU_CAPABILITY": "avx2"}, 2),
    "aten_default": ({"ATEN_CPU_CAPABILITY": "default"}, 2),
    "cap_avx2": ({"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}, 2),
    "mkldnn_off": ({"BDL_XISA_MKLDNN": "0"}, 2),
    "threads1": ({}, 1),
    "nondet": ({"BDL_XISA_DETERMINISTIC": "0"}, 2),  # ops only: the stages always turn the flag on
}
DEFAULT_SETTINGS = ["native", "dnnl_avx512", "dnnl_avx2", "aten_avx2", "aten_default", "cap_avx2", "mkldnn_off",
                    "threads1", "nondet"]
# the demo's frame size and model widths (config/config.yaml), few frames
DEMO = {"n_source": 16, "n_target_train": 12, "n_target_val": 4, "width": 128, "height": 64, "seed": 0}


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", nargs="*", help="what to hash: ops, stages or both (default: ops)")
    p.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, choices=list(SETTINGS),
                   help="columns; the first is the reference the others are compared with")
    p.add_argument("--repeats", type=int, default=2, help="runs of each setting (a defect shows as a difference)")
    p.add_argument("--steps", type=int, default=3, help="forward/backward steps per op")
    p.add_argument("--iterations", type=int, default=3, help="iterations per training stage")
    p.add_argument("--time", action="store_true", help="time the translator under each setting instead")
    p.add_argument("--time-iterations", type=int, default=20)
    p.add_argument("--workdir", help="keep the demo and the stages' outputs here (default: a temporary folder)")
    p.add_argument("--json", help="also write every hash (and this machine's description) to this file")
    p.add_argument("--compare", help="a --json file from another machine: say which rows give the same bits")
    p.add_argument("--child", choices=["ops"], help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    return p


# ---------------------------------------------------------------------------------------------- child side


def configure_torch(threads: int):
    import torch

    torch.set_num_threads(threads)
    if os.environ.get("BDL_XISA_MKLDNN") == "0":
        torch.backends.mkldnn.enabled = False
    return torch


def digest(obj) -> str:
    """SHA-256 over every tensor in ``obj`` (nested dicts/lists/tuples, keys sorted): dtype, shape and bytes."""
    import torch

    h = hashlib.sha256()

    def feed(x, key=""):
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(x, dict):
            for k in sorted(x, key=str):
                feed(x[k], f"{key}/{k}")
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                feed(v, f"{key}/{i}")
        elif isinstance(x, (int, float, str, bool)) or x is None:
            h.update(f"{key}={x!r}|".encode())

    feed(obj)
    return h.hexdigest()


def op_cases():
    """name -> function(torch, steps) returning the tensors to hash. Inputs at the demo's sizes."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def module_case(make, shape, loss=lambda y: (y * y).mean(), target=None):
        def run(steps):
            torch.manual_seed(0)
            m = make()
            out = []
            for s in range(steps):
                g = torch.Generator().manual_seed(100 + s)
                x = torch.randn(shape, generator=g).requires_grad_()
                y = m(x)
                loss(y).backward()
                out += [y, x.grad]
            return out + [p.grad for p in m.parameters()] + list(m.buffers())
        return run

    def optimizer_case(make_opt):
        def run(steps):
            torch.manual_seed(0)
            params = [torch.randn(16, 16, 3, 3).requires_grad_(), torch.randn(19).requires_grad_()]
            opt = make_opt(params)
            for s in range(steps * 3):
                g = torch.Generator().manual_seed(200 + s)
                for p in params:
                    p.grad = torch.randn(p.shape, generator=g) * 0.1
                opt.step()
            return params + [opt.state_dict()["state"]]
        return run

    def functional_case(fn, *shapes, grad=True):
        def run(steps):
            out = []
            for s in range(steps):
                g = torch.Generator().manual_seed(300 + s)
                xs = [torch.randn(sh, generator=g).requires_grad_(grad) for sh in shapes]
                y = fn(*xs)
                if grad:
                    (y * y).mean().backward() if y.dim() else y.backward()
                    out += [x.grad for x in xs]
                out.append(y)
            return out
        return run

    def ce(logits):
        g = torch.Generator().manual_seed(7)
        target = torch.randint(0, 19, (logits.shape[0], *logits.shape[2:]), generator=g)
        target[:, :4] = 255
        return F.cross_entropy(logits, target, ignore_index=255)

    def model_case(build, shape, loss=lambda y: (y * y).mean()):
        def run(steps):
            torch.manual_seed(0)
            m = build().train()
            opt = torch.optim.Adam(m.parameters(), lr=2e-4, betas=(0.5, 0.999))
            out = []
            for s in range(steps):
                g = torch.Generator().manual_seed(400 + s)
                x = torch.rand(shape, generator=g)
                opt.zero_grad()
                y = m(x)
                loss(y).backward()
                out.append(y)
                opt.step()
            return out + list(m.state_dict().values())
        return run

    def generator():
        from bdl.models.cyclegan import ResnetGenerator
        return ResnetGenerator(16, 3)

    def patch_d():
        from bdl.models.cyclegan import PatchDiscriminator
        return PatchDiscriminator(16)

    def output_d():
        from bdl.models.discriminator import OutputDiscriminator
        return OutputDiscriminator(19, 16)

    def segmenter():
        from bdl.models.factory import build_segmenter
        return build_segmenter("resnet_mini", width=16)

    def segmenter_sgd(steps):
        torch.manual_seed(0)
        m = segmenter().train()
        opt = torch.optim.SGD(m.param_groups(0.01), lr=0.01, momentum=0.9, weight_decay=5e-4)
        out = []
        for s in range(steps):
            g = torch.Generator().manual_seed(500 + s)
            x = torch.rand(4, 3, 64, 128, generator=g)
            opt.zero_grad()
            y = m(x)
            ce(y).backward()
            opt.step()
            out.append(y)
        return out + list(m.state_dict().values())

    b, c = 4, 16
    return {
        "conv2d 3x3": module_case(lambda: nn.Conv2d(c, c, 3, 1, 1), (b, c, 32, 64)),
        "conv2d 3x3 s2": module_case(lambda: nn.Conv2d(c, 2 * c, 3, 2, 1), (b, c, 64, 128)),
        "conv2d 7x7 (3 in)": module_case(lambda: nn.Conv2d(3, c, 7), (b, 3, 70, 134)),
        "conv2d 4x4 s2": module_case(lambda: nn.Conv2d(19, c, 4, 2, 1), (b, 19, 64, 128)),
        "conv2d 3x3 dil 6": module_case(lambda: nn.Conv2d(8 * c, 19, 3, 1, 6, 6), (8, 8 * c, 8, 16)),
        "conv_transpose2d": module_case(lambda: nn.ConvTranspose2d(2 * c, c, 3, 2, 1, output_padding=1),
                                        (b, 2 * c, 32, 64)),
        "batchnorm2d train": module_case(lambda: nn.BatchNorm2d(c), (8, c, 32, 64)),
        "instancenorm2d": module_case(lambda: nn.InstanceNorm2d(c), (b, c, 32, 64)),
        "reflectionpad2d": module_case(lambda: nn.ReflectionPad2d(3), (b, c, 32, 64)),
        "relu": module_case(lambda: nn.ReLU(), (b, c, 32, 64)),
        "leakyrelu 0.2": module_case(lambda: nn.LeakyReLU(0.2), (b, c, 32, 64)),
        "tanh": module_case(lambda: nn.Tanh(), (b, 3, 64, 128)),
        "bilinear upsample": functional_case(
            lambda x: F.interpolate(x, size=(64, 128), mode="bilinear", align_corners=True), (8, 19, 9, 17)),
        "softmax": functional_case(lambda x: F.softmax(x, 1), (8, 19, 64, 128)),
        "cross_entropy": functional_case(ce, (8, 19, 64, 128)),
        "bce_with_logits": functional_case(
            lambda x: F.binary_cross_entropy_with_logits(x, torch.zeros_like(x)), (8, 1, 2, 4)),
        "mse / l1": functional_case(lambda a, b: F.mse_loss(a, b) + F.l1_loss(a, b), (b, 3, 64, 128),
                                    (b, 3, 64, 128)),
        "adam step": optimizer_case(lambda ps: torch.optim.Adam(ps, lr=2e-4, betas=(0.5, 0.999))),
        "sgd step": optimizer_case(lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9, weight_decay=5e-4)),
        "M resnet_mini + SGD": segmenter_sgd,
        "F generator + Adam": model_case(generator, (b, 3, 64, 128)),
        "PatchGAN + Adam": model_case(patch_d, (b, 3, 64, 128)),
        "output D + Adam": model_case(output_d, (8, 19, 64, 128)),
    }


def child_ops(args) -> None:
    torch = configure_torch(args.threads)
    if os.environ.get("BDL_XISA_DETERMINISTIC") != "0":
        torch.use_deterministic_algorithms(True, warn_only=True)
    result = {"info": {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
                       "mkldnn": torch.backends.mkldnn.enabled, "threads": torch.get_num_threads()},
              "hashes": {}, "kernels": {}}
    libc = ctypes.CDLL(None)
    for name, run in op_cases().items():
        libc.fflush(None)  # oneDNN's verbose lines (C stdio, buffered into a pipe) before this op's marker
        os.write(1, f"##op {name}\n".encode())
        result["hashes"][name] = digest(run(args.steps))
    libc.fflush(None)
    os.write(1, ("##json " + json.dumps(result) + "\n").encode())


def child_stage(argv: list[str]) -> None:
    """``--stage-child SCRIPT ARGS...``: run a stage script in this process, with mkldnn off when the setting
    asks (the stage sets its own threads from its ``--threads``)."""
    configure_torch(1)
    sys.argv = argv
    sys.path.insert(0, str(REPO))
    runpy.run_path(argv[0], run_name="__main__")


# --------------------------------------------------------------------------------------------- parent side


def env_of(setting: str, extra: dict | None = None) -> tuple[dict, int]:
    added, threads = SETTINGS[setting]
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")}
    return env | added | (extra or {}), threads


def run_ops(setting: str, steps: int) -> tuple[dict, dict]:
    """(op -> hash, op -> oneDNN implementations it ran) in a fresh child with ``setting``."""
    env, threads = env_of(setting, {"ONEDNN_VERBOSE": "1"})
    cmd = [sys.executable, __file__, "--child", "ops", "--threads", str(threads), "--steps", str(steps)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    if proc.returncode:
        raise RuntimeError(f"{setting}: ops child failed:\n{proc.stderr[-3000:]}")
    op, kernels, result = None, {}, None
    for line in proc.stdout.splitlines():
        if line.startswith("##op "):
            op = line[5:]
        elif line.startswith("##json "):
            result = json.loads(line[7:])
        elif line.startswith("onednn_verbose") and ",exec," in line and op:
            # onednn_verbose,[timestamp,]v1,primitive,exec,cpu,<kind>,<impl>,<prop>,...; reorders only copy
            fields = line.split(",")
            at = fields.index("exec")
            if fields[at + 2] != "reorder":
                kernels.setdefault(op, set()).add(f"{fields[at + 2]} {fields[at + 3]} {fields[at + 4]}")
    return result["hashes"], {k: sorted(v) for k, v in kernels.items()}


def stage_commands(work: Path, ref: Path, out: Path, iterations: int) -> dict[str, tuple[list, Path]]:
    """stage -> (script and arguments, output), each stage reading the reference setting's outputs (``ref``)."""
    demo = work / "demo"
    src = ["--source-format", "gta5", "--source-root", str(demo / "source")]
    tgt = ["--target-format", "cityscapes", "--target-root", str(demo / "target")]
    common = ["--seed", "0", "--checkpoint-every", "1000", "--log-every", "1", "--device", "cpu"]
    return {
        "m0 (train_segmenter source)": (
            [STAGES / "train_segmenter.py", "--mode", "source", *src, "--iterations", iterations, *common,
             "--out", out / "m0.pt"], out / "m0.pt"),
        "translator (train_translator)": (
            [STAGES / "train_translator.py", *src, *tgt, "--segmenter", ref / "m0.pt", "--iterations", iterations,
             *common, "--out", out / "translator.pt"], out / "translator.pt"),
        "translate": (
            [STAGES / "translate.py", "--translator", ref / "translator.pt", *src, "--seed", "0", "--device", "cpu",
             "--out", out / "translated.h5"], out / "translated.h5"),
        "adversarial M (train_segmenter)": (
            [STAGES / "train_segmenter.py", "--mode", "adversarial", "--translated", ref / "translated.h5", *src,
             "--init", ref / "m0.pt", *tgt, "--iterations", iterations, *common, "--out", out / "adv.pt"],
            out / "adv.pt"),
    }


def file_digest(path: Path) -> str:
    import torch

    if path.suffix == ".h5":
        import h5py

        with h5py.File(path, "r") as f:
            return digest({k: torch.from_numpy(f[k][()]) for k in ("images", "labels")})
    state = torch.load(path, map_location="cpu", weights_only=True)
    return digest({k: v for k, v in state.items() if k in ("model", "model_inv")})


def run_stage(setting: str, cmd: list, out_file: Path) -> tuple[str, float, float]:
    """(hash of the stage's output, wall seconds, CPU seconds) of one stage run in a fresh child."""
    env, threads = env_of(setting)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, __file__, "--stage-child", *map(str, cmd), "--threads", str(threads)]
    before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=REPO)
    wall, after = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(f"{setting}: {cmd[0]} failed:\n{proc.stderr[-3000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return file_digest(out_file), wall, cpu


def machine() -> dict:
    """What a hash depends on besides the code: CPU model and flags, caches, libraries, threads."""
    import platform

    import numpy
    import torch

    from bdl.onednn import cpu_flags, onednn_version

    model = platform.processor()
    try:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), model)
    except OSError:
        pass
    flags = cpu_flags()
    caches = []
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            caches.append(f"L{(index / 'level').read_text().strip()}{(index / 'type').read_text().strip()[0]} "
                          f"{(index / 'size').read_text().strip()}")
        except OSError:
            pass
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile")
    return {"cpu": model, "cores": os.cpu_count(),
            "flags": " ".join(f for f in wanted if f in flags), "caches": ", ".join(caches),
            "libc": " ".join(platform.libc_ver()), "python": platform.python_version(), "torch": torch.__version__,
            "aten": torch.backends.cpu.get_cpu_capability(), "numpy": numpy.__version__,
            "onednn": onednn_version()}


def make_demo(work: Path) -> None:
    if (work / "demo" / "source").is_dir():
        return
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in DEMO.items()]
    subprocess.run([sys.executable, str(STAGES / "make_demo_data.py"), "--out", str(work / "demo"), *flags],
                   check=True, cwd=REPO, capture_output=True)


def table(rows: dict, columns: list[str]) -> str:
    """Markdown table of short hashes; ``*`` marks a cell that differs from the first column's first run."""
    width = max(map(len, rows)) + 1
    head = f"| {'':{width}}| " + " | ".join(columns) + " |"
    lines = [head, "|" + "-" * (width + 1) + "|" + "|".join("-" * (len(c) + 2) for c in columns) + "|"]
    for name, cells in rows.items():
        ref = cells[columns[0]][0]
        out = []
        for col in columns:
            runs = cells[col]
            short = runs[0][:8] + ("*" if runs[0] != ref else " ")
            if len(set(runs)) > 1:
                short += "!"  # the same setting gave different bits run to run
            out.append(f"{short:{len(col)}}")
        lines.append(f"| {name:{width}}| " + " | ".join(out) + " |")
    return "\n".join(lines)


def compare(here: dict, there: dict) -> None:
    """Which rows and settings give the same bits as another machine's ``--json`` (first run of each)."""
    print(f"\ncompared with {there.get('machine', {}).get('cpu', '?')} ({there.get('machine', {}).get('flags', '')}):")
    if there.get("params") != here["params"]:
        print(f"  (not comparable: --steps/--iterations {there.get('params')} there, {here['params']} here)")
    for what in ("ops", "stages"):
        for name, cells in here.get(what, {}).items():
            other = there.get(what, {}).get(name, {})
            same = [s for s in cells if s in other and cells[s][0] == other[s][0]]
            differ = [s for s in cells if s in other and cells[s][0] != other[s][0]]
            if same or differ:
                print(f"  {name}: same {' '.join(same) or '-'}; differs {' '.join(differ) or '-'}")


def main(args):
    if args.child == "ops":
        return child_ops(args)

    args.what = args.what or ["ops"]
    if set(args.what) - {"ops", "stages"}:
        raise SystemExit(f"cross_isa.py: what to hash is ops or stages, not {' '.join(args.what)}")
    settings = args.settings
    report = {"machine": machine(), "params": {"steps": args.steps, "iterations": args.iterations}}
    print("; ".join(f"{k} {v}" for k, v in report["machine"].items()))
    with tempfile.TemporaryDirectory(prefix="cross_isa_") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.time:
            make_demo(work)
            ref = work / settings[0] / "run0"
            # the translator's perceptual judge: a 1-iteration M0 in the first setting
            cmd, out = stage_commands(work, ref, ref, 1)["m0 (train_segmenter source)"]
            run_stage(settings[0], cmd, out)
            n = args.time_iterations
            print(f"translator at {DEMO['width']}x{DEMO['height']} (demo widths, batch 4): a 1- and a {n}-iteration "
                  f"run per setting and repeat, per iteration = the difference / {n - 1}")
            times = {}
            for r in range(args.repeats):
                for s in settings if r % 2 == 0 else settings[::-1]:  # alternate the order against drift
                    runs = []
                    for its in (1, n):
                        cmd, out = stage_commands(work, ref, work / s / f"time{r}_{its}", its)[
                            "translator (train_translator)"]
                        runs.append(run_stage(s, cmd, out))
                    wall, cpu = (runs[1][1] - runs[0][1]) / (n - 1), (runs[1][2] - runs[0][2]) / (n - 1)
                    times.setdefault(s, []).append((wall, cpu))
                    print(f"  {s:14} repeat {r}: {wall:5.2f} s/it wall, {cpu:5.2f} s/it CPU, "
                          f"{n} iterations {runs[1][1]:5.1f} s wall (hash {runs[1][0][:8]})", flush=True)
            base = min(c for _, c in times[settings[0]])
            for s, t in times.items():
                best = min(c for _, c in t)
                print(f"  {s:14} best {best:5.2f} CPU s/it, x{best / base:.2f} of {settings[0]}")
            return 0
        if "ops" in args.what:
            rows, kernels = {}, {}
            for s in settings:
                for r in range(args.repeats):
                    hashes, used = run_ops(s, args.steps)
                    for op, h in hashes.items():
                        rows.setdefault(op, {}).setdefault(s, []).append(h)
                    if r == 0:
                        kernels[s] = used
                print(f"ops: {s} done", file=sys.stderr, flush=True)
            print(table(rows, settings))
            print("\noneDNN implementations per op (ONEDNN_VERBOSE):")
            for op in rows:
                impls = {s: ", ".join(kernels[s].get(op, [])) or "-" for s in settings}
                distinct = {}
                for s, k in impls.items():
                    distinct.setdefault(k, []).append(s)
                if any(k != "-" for k in distinct):
                    print(f"  {op}: " + "; ".join(f"[{'/'.join(ss)}] {k}" for k, ss in distinct.items()))
            report["ops"] = rows
        if "stages" in args.what:
            make_demo(work)
            rows, seconds = {}, {}
            ref = work / settings[0] / "run0"
            for stage in stage_commands(work, ref, ref, args.iterations):
                for s in settings:
                    for r in range(args.repeats):
                        cmd, out = stage_commands(work, ref, work / s / f"run{r}", args.iterations)[stage]
                        h, _, cpu = run_stage(s, cmd, out)
                        rows.setdefault(stage, {}).setdefault(s, []).append(h)
                        seconds[s] = seconds.get(s, 0.0) + cpu
                print(f"stages: {stage} done", file=sys.stderr, flush=True)
            print(table(rows, settings))
            print("CPU seconds per setting, all stages and runs: "
                  + ", ".join(f"{s} {sec:.0f}" for s, sec in seconds.items()))
            report["stages"] = rows
        print("\n* differs from the first column; ! the same setting differed between its runs")
        if args.compare:
            compare(report, json.loads(Path(args.compare).read_text()))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--stage-child"]:
        sys.exit(child_stage(sys.argv[2:]))
    sys.exit(main(get_args_parser().parse_args()))
