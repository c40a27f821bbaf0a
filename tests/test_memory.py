"""Translated sets and pseudo-labels are written incrementally: peak memory does not grow with the set."""

import pytest
from conftest import STAGES, run_stage


def peak_mib(stage, *args):
    from measure import stage_peak_rss_mib

    return stage_peak_rss_mib(STAGES / f"{stage}.py", *args)


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
        peaks[n] = peak_mib(stage, *args, "--batch-size", "8", "--threads", "2", "--out", sets / f"{stage}{n}.h5")
    growth = peaks[240] / peaks[30] - 1
    print(f"{stage}: peak RSS {peaks[30]:.0f} MiB (30 images) vs {peaks[240]:.0f} MiB (240 images)")
    assert growth < 0.10, f"peak RSS {peaks[30]:.0f} MiB -> {peaks[240]:.0f} MiB (+{100 * growth:.1f}%)"


def test_peak_measure_counts_the_stage_not_its_parent(tmp_path):
    """The figure above means something only if a big parent does not leak into the child's number and a
    child's own allocation shows up in it."""
    import numpy as np
    from measure import stage_peak_rss_mib

    ballast = np.ones(600 * 2**20, np.uint8)  # 600 MiB resident in this (parent) process
    small = tmp_path / "small.py"
    small.write_text("pass\n")
    big = tmp_path / "big.py"
    big.write_text("import numpy as np\nx = np.ones(300 * 2**20, np.uint8)\n")
    lean, heavy = stage_peak_rss_mib(small), stage_peak_rss_mib(big)
    assert ballast.sum() == 600 * 2**20
    assert lean < 150, f"an empty script measured {lean:.0f} MiB: the parent's memory is counted"
    assert heavy - lean > 280, f"a 300 MiB allocation measured {heavy - lean:.0f} MiB"
