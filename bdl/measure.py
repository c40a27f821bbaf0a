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
print("maxrss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def stage_peak_rss_mib(script: Path, *args) -> float:
    """Run ``python script args...`` and return its peak resident memory in MiB (Linux ru_maxrss)."""
    proc = subprocess.run([sys.executable, "-c", _RUN_AND_REPORT, str(script), *map(str, args)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(script).name} failed:\n{proc.stderr[-2000:]}")
    return int(proc.stderr.strip().splitlines()[-1].split()[1]) / 1024
