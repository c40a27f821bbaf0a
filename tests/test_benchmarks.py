"""The benchmark scripts run (figures are printed, never asserted: speed targets are not timed tests)."""

import subprocess
import sys

from conftest import REPO


def test_gpu_check_runs_its_whole_path_at_toy_sizes_on_cpu():
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--tiny", "--steps", "2"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    lines = proc.stdout.splitlines()
    assert sum("steps/s" in line for line in lines) == 6
    assert sum("bf16+channels_last / fp32 speed" in line for line in lines) == 3
    assert "stage chain on cpu (7 stage scripts" in lines[-1] and lines[-1].split(": ")[-1].startswith("ok")
