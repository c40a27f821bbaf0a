"""The disk plan printed when a run starts: its figures are the sets' real sizes, a results folder without the
room is refused before any job (unless runtime.disk_check: false), and keep_translated: false leaves a
finished run without translated sets and with nothing to redo."""

import os
import subprocess

import yaml
from conftest import REPO, SNAKEMAKE, snakemake, tiny_config

from bdl.plan import (
    CHUNK_INDEX,
    CHUNKED_ARRAY,
    FILE_OVERHEAD,
    IMAGE_RATIO,
    NAME_BYTES,
    PSEUDO_ATTRS,
    disk_plan,
    peak_bytes,
    stored_ratio,
)


def test_plan_matches_the_sets_on_disk(finished_run):
    """Given what compression left of the translated images (content-dependent: measured here, assumed by the
    plan of a run not yet made), every set's bytes are the plan's."""
    cfg, results = finished_run
    config = yaml.safe_load(cfg.read_text())
    demo = config["demo"]
    full = {"results": str(results), "rounds": 1, "ssl_steps": 1, "keep_translated": True,
            "source": {"cache": True}, "target": {"cache": True}, "pseudo_label": {"mode": "classwise"}}
    ratio = stored_ratio(results / "round1" / "translated.h5")
    assert 0.2 < ratio < 1.0  # compressed, without blowing up
    plan = disk_plan(full, {"source": demo["n_source"], "target_train": demo["n_target_train"]},
                     {d: (demo["width"], demo["height"]) for d in ("source", "target")}, ratio)
    assert len(plan) == 4  # two caches, one translated set, one pseudo-label set
    for planned in plan:
        actual = os.path.getsize(planned.path)
        # on sets of ~100 kB the few kB of headers count: within 2%; the paper's sets are 10^5 times larger
        assert abs(actual - planned.bytes) / actual < 0.02, (planned.path, actual, planned.bytes)
    assert not list(results.rglob("*.part")) and not list(results.rglob(".pseudo*"))  # no scratch left behind


def test_dropped_translated_sets_count_once_at_the_peak():
    cfg = {"results": "r", "rounds": 2, "ssl_steps": 3, "keep_translated": False,
           "source": {"cache": False}, "target": {"cache": True}, "pseudo_label": {"mode": "fixed"}}
    # the paper preset's data: GTA5 at 1280x720, Cityscapes train at 1024x512
    plan = disk_plan(cfg, {"source": 24966, "target_train": 2975}, {"source": (1280, 720), "target": (1024, 512)})
    image = round(1280 * 720 * 3 * IMAGE_RATIO)
    translated = 24966 * (image + CHUNK_INDEX + NAME_BYTES) + FILE_OVERHEAD + CHUNKED_ARRAY
    target = 2975 * (1024 * 512 * 3 + NAME_BYTES) + FILE_OVERHEAD
    pseudo = 2975 * (1024 * 512 + NAME_BYTES) + FILE_OVERHEAD + PSEUDO_ATTRS  # the label alone
    assert sum(p.bytes for p in plan) == 2 * translated + target + 6 * pseudo
    assert peak_bytes(plan) == translated + target + 6 * pseudo


def test_classwise_pseudo_labels_count_their_scratch_once():
    cfg = {"results": "r", "rounds": 2, "ssl_steps": 3, "keep_translated": True,
           "source": {"cache": False}, "target": {"cache": False}, "pseudo_label": {"mode": "classwise"}}
    plan = disk_plan(cfg, {"source": 10, "target_train": 20}, {"source": (64, 32), "target": (64, 32)})
    scratch = 20 * 64 * 32 * 3 + FILE_OVERHEAD  # argmax and float16 probability, until the thresholds are known
    assert peak_bytes(plan) == sum(p.bytes for p in plan) + scratch


def test_paper_preset_fits_the_quota():
    """The GTA5 ResNet-101 preset at the assumed image ratio: at most 100 GB with every set kept, 60 GB without
    the translated sets; the plan command prints the same."""
    import re
    import sys

    def plan_of(extra):
        preset = yaml.safe_load((REPO / "config" / "paper_gta5_resnet101.yaml").read_text()) | extra
        path = REPO / "results" / f".plan_test_{os.getpid()}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(yaml.safe_dump(preset))
        try:
            out = subprocess.run([sys.executable, "-m", "bdl.plan", "--configfile", str(path), "--source-frames",
                                  "24966", "--target-frames", "2975"], cwd=REPO, capture_output=True, text=True,
                                 check=True).stdout
        finally:
            path.unlink()
        last = out.strip().splitlines()[-1]
        total, peak = map(float, re.fullmatch(r"total written: ([\d.]+) GB, peak: ([\d.]+) GB", last).groups())
        assert str(IMAGE_RATIO) in out and "fda_gta5_cityscapes_pair" in out  # the assumption, stated
        return total, peak

    _, kept = plan_of({})
    _, dropped = plan_of({"keep_translated": False})
    assert kept <= 100 and dropped <= 60


def dry_run(cfg_path, free_bytes):
    return subprocess.run([*SNAKEMAKE, "--cores", "1", "-n", "--configfile", str(cfg_path)], cwd=REPO,
                          capture_output=True, text=True, env=os.environ | {"BDL_TEST_FREE_BYTES": str(free_bytes)})


def test_too_little_room_is_refused_before_any_job(tmp_path):
    results = tmp_path / "results"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(results)))
    refused = dry_run(cfg, 1000)
    assert refused.returncode != 0
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "runtime.disk_check: false" in errors[0]
    assert "disk plan for" in refused.stderr and not results.exists()
    assert dry_run(cfg, 10**12).returncode == 0
    cfg.write_text(yaml.safe_dump(tiny_config(results, runtime={"threads": 1, "disk_check": False})))
    passed = dry_run(cfg, 1000)
    assert passed.returncode == 0, passed.stderr[-2000:]
    assert "disk plan for" in passed.stderr


def test_dropped_translated_set_reruns_nothing(tmp_path):
    results = tmp_path / "results"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(results, oracle=False, keep_translated=False)))
    snakemake(cfg)
    assert (results / "metrics.tsv").is_file() and (results / "round1" / "gallery.png").is_file()
    assert not (results / "round1" / "translated.h5").exists()
    again = snakemake(cfg, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
