import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# Real frames in the real formats (Cityscapes, GTA5, SYNTHIA) and a real-photograph domain pair: their terms
# forbid shipping them in the project, so tests that read them skip where they are absent; CI sets
# BDL_REQUIRE_FIXTURES=1, which turns that skip into a failure
FIXTURES = Path(os.environ.get("BDL_FIXTURES") or REPO.parent / "shared" / "fixtures")
REALPAIR = Path(os.environ.get("BDL_REALPAIR") or REPO.parent / "shared" / "realpair_dev")


def need_folder(path: Path, variable: str) -> Path:
    """``path`` if it exists; else skip the test (fail under BDL_REQUIRE_FIXTURES) with a one-line reason."""
    if path.is_dir():
        return path
    reason = f"{path} absent (real data that cannot ship with the project; set {variable} to a copy)"
    if os.environ.get("BDL_REQUIRE_FIXTURES"):
        pytest.fail(f"BDL_REQUIRE_FIXTURES is set but {reason}")
    pytest.skip(reason)
STAGES = REPO / "stages"
BENCHMARKS = REPO / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the benchmark scripts' helpers (measure) are tested too
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# oneDNN's bf16 convolution kernels need AVX512; capped at AVX2 they are never chosen, so tests that force
# bf16 + channels_last on a CPU run that whole code path on every CPU model (see bdl/onednn.py)
NO_BF16_KERNELS = {"ONEDNN_MAX_CPU_ISA": "AVX2"}


def run_stage(name, *args, check=True, env=None, folder=STAGES):
    """Run a stage script (or one from ``folder``) the way Snakemake does (``env``: variables added); returns
    the CompletedProcess."""
    proc = subprocess.run([sys.executable, str(folder / f"{name}.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, env=os.environ | (env or {}))
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def fixtures():
    return need_folder(FIXTURES, "BDL_FIXTURES")


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """A small demo pair in the real layouts: 24 source, 16 target train, 8 target val frames at 64x32."""
    from bdl.data.demo import generate

    out = tmp_path_factory.mktemp("demo")
    generate(out, 24, 16, 8, width=64, height=32, seed=3)
    return out


def source_flags(demo):
    return ["--source-format", "gta5", "--source-root", demo / "source"]


def target_flags(demo):
    return ["--target-format", "cityscapes", "--target-root", demo / "target"]


def tiny_config(results: Path, **over) -> dict:
    cfg = {
        "results": str(results),
        "rounds": 1,
        "ssl_steps": 1,
        "oracle": True,
        "demo": {"n_source": 16, "n_target_train": 12, "n_target_val": 6, "width": 64, "height": 32},
        "segmenter": {"width": 8, "ndf": 8, "batch_size": 4,
                      "iterations": {"source": 4, "adversarial": 3, "ssl": 3, "oracle": 3}},
        "translator": {"ngf": 4, "n_blocks": 1, "ndf": 4, "iterations": 3, "batch_size": 2},
        "runtime": {"threads": 1, "checkpoint_every": 2, "log_every": 1},
    }
    for key, value in over.items():
        cfg[key] = value
    return cfg


def snakemake(cfg_path: Path, *extra, check=True):
    proc = subprocess.run([*SNAKEMAKE, "--cores", "2", *extra, "--configfile", str(cfg_path)],
                          cwd=REPO, capture_output=True, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"})
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-4000:])
    return proc


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """The tiny config run locally once per session: (config path, results folder)."""
    base = tmp_path_factory.mktemp("wf")
    results = base / "res with space"
    cfg = base / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(results)))
    snakemake(cfg)
    return cfg, results


def stage_commands(dry_run_stdout: str) -> dict:
    """The stage commands of ``snakemake -n -p`` output: stage name -> list of argument lists (each up to the
    log redirection)."""
    import shlex

    commands = {}
    for line in dry_run_stdout.splitlines():
        if line.startswith("Shell command:"):
            words = shlex.split(line.removeprefix("Shell command:"))
            at = next((i for i, w in enumerate(words) if w.endswith(".py")), None)
            if at is not None:
                stage = words[at].rsplit("/", 1)[-1].removesuffix(".py")
                commands.setdefault(stage, []).append(words[at + 1:words.index(">")])
    return commands
