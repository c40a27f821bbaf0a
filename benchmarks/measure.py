"""Peak memory of a stage as it runs in its own process (used by the benchmark and the memory tests)."""

import subprocess
import sys
from pathlib import Path

_RUN_AND_REPORT = """
import resource, runpy, sys
script = sys.argv[1]
sys.argv = sys.argv[1:]
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as exc:
    if exc.code:
        raise
try:
    # VmHWM belongs to the address space exec made; ru_maxrss (Linux) also counts the parent's resident
    # pages this process had between fork and exec, so a big parent would inflate every figure
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
except (OSError, StopIteration, ValueError):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("maxrss_kb", peak, file=sys.stderr)
"""


def stage_peak_rss_mib(script: Path, *args) -> float:
    """Run ``python script args...`` and return its peak resident memory in MiB (Linux VmHWM; ru_maxrss
    where /proc is missing)."""
    proc = subprocess.run([sys.executable, "-c", _RUN_AND_REPORT, str(script), *map(str, args)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(script).name} failed:\n{proc.stderr[-2000:]}")
    return int(proc.stderr.strip().splitlines()[-1].split()[1]) / 1024
