"""Translated sets and pseudo-labels are written incrementally: peak memory does not grow with the set."""

import sys

import pytest
from conftest import STAGES, run_stage

MEASURE = """
import resource, runpy, sys
script = sys.argv[1]
sys.argv = sys.argv[1:]
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as exc:
    assert not exc.code, exc.code
print("maxrss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def peak_kb(stage, *args):
    import subprocess

    proc = subprocess.run([sys.executable, "-c", MEASURE, str(STAGES / f"{stage}.py"), *map(str, args)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(proc.stderr.strip().splitlines()[-1].split()[1])


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    from bdl.data.demo import generate

    base = tmp_path_factory.mktemp("mem")
    for n in (30, 240):  # 512x256 frames: 240 of them hold ~94 MB of images, ~63 MB of float16 probabilities
        generate(base / f"n{n}", n, n, 2, width=512, height=256, seed=1)
    small = base / "n30"
    run_stage("train_segmenter", "--mode", "source", "--source-format", "gta5", "--source-root", small / "source",
              "--backbone", "resnet_mini", "--width", "8", "--iterations", "1", "--batch-size", "2", "--threads", "2",
              "--out", base / "m.pt")
    run_stage("train_translator", "--source-format", "gta5", "--source-root", small / "source",
              "--target-format", "cityscapes", "--target-root", small / "target", "--ngf", "4", "--n-blocks", "1",
              "--ndf", "4", "--iterations", "1", "--crop", "64", "64", "--batch-size", "1", "--threads", "2",
              "--out", base / "f.pt")
    return base


@pytest.mark.parametrize("stage", ["translate", "pseudo_label"])
def test_peak_memory_flat_in_set_size(sets, stage):
    peaks = {}
    for n in (30, 240):
        root = sets / f"n{n}"
        if stage == "translate":
            args = ["--translator", sets / "f.pt", "--source-format", "gta5", "--source-root", root / "source"]
        else:
            args = ["--segmenter", sets / "m.pt", "--target-format", "cityscapes", "--target-root", root / "target",
                    "--mode", "classwise"]
        peaks[n] = peak_kb(stage, *args, "--batch-size", "8", "--threads", "2", "--out", sets / f"{stage}{n}.h5")
    growth = peaks[240] / peaks[30] - 1
    print(f"{stage}: peak RSS {peaks[30] / 1024:.0f} MiB (30 images) vs {peaks[240] / 1024:.0f} MiB (240 images)")
    assert growth < 0.10, f"peak RSS {peaks[30] / 1024:.0f} MiB -> {peaks[240] / 1024:.0f} MiB (+{100 * growth:.1f}%)"
