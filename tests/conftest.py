import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
STAGES = REPO / "stages"


def run_stage(name, *args, check=True):
    """Run a stage script the way Snakemake does; returns the CompletedProcess."""
    proc = subprocess.run([sys.executable, str(STAGES / f"{name}.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def fixtures():
    if not FIXTURES.is_dir():
        pytest.fail(f"{FIXTURES} missing: tests need ../shared beside the checkout")
    return FIXTURES


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
