#!/usr/bin/env python
"""Is this machine's torch affected by oneDNN's bf16 + channels_last heap corruption? Runs the stand-alone
reproduction (``bdl.onednn``) in a child process and prints one line. Rerun it whenever the pinned torch
changes; ``--strict`` exits 1 when affected (exit 0 otherwise, so CI logs the answer either way)."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bdl.onednn import describe, probe  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--strict", action="store_true", help="exit 1 when bf16 + channels_last training corrupts memory")
    args = p.parse_args()
    safe, detail = probe()
    print(f"oneDNN check: {describe(safe, detail)}")
    if not safe:
        print("  CPU jobs with bf16 forced on run without channels_last (docs/benchmarks.md, GPU and precision)")
    return 1 if args.strict and not safe else 0


if __name__ == "__main__":
    sys.exit(main())
