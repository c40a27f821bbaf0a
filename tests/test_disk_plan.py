"""The disk plan printed when a run starts: its figures are the sets' real sizes, a results folder without the
room is refused before any job (unless runtime.disk_check: false), and keep_translated: false leaves a
finished run without translated sets and with nothing to redo."""

import os
import subprocess

import yaml
from conftest import REPO, SNAKEMAKE, snakemake, tiny_config

from bdl.plan import FILE_OVERHEAD, disk_plan, peak_bytes


def test_plan_matches_the_sets_on_disk(finished_run):
    cfg, results = finished_run
    config = yaml.safe_load(cfg.read_text())
    demo = config["demo"]
    full = {"results": str(results), "rounds": 1, "ssl_steps": 1, "keep_translated": True,
            "source": {"cache": True}, "target": {"cache": True}}
    plan = disk_plan(full, {"source": demo["n_source"], "target_train": demo["n_target_train"]},
                     {d: (demo["width"], demo["height"]) for d in ("source", "target")})
    assert len(plan) == 4  # two caches, one translated set, one pseudo-label set
    for planned in plan:
        actual = os.path.getsize(planned.path)
        # on sets of ~100 kB the few kB of headers count: within 2%; the paper's sets are 10^5 times larger
        assert abs(actual - planned.bytes) / actual < 0.02, (planned.path, actual, planned.bytes)


def test_dropped_translated_sets_count_once_at_the_peak():
    cfg = {"results": "r", "rounds": 2, "ssl_steps": 3, "keep_translated": False,
           "source": {"cache": False}, "target": {"cache": True}}
    # the paper preset's data: GTA5 at 1280x720, Cityscapes train at 1024x512
    plan = disk_plan(cfg, {"source": 24966, "target_train": 2975}, {"source": (1280, 720), "target": (1024, 512)})
    translated, target = 24966 * 1280 * 720 * 4 + FILE_OVERHEAD, 2975 * 1024 * 512 * 3 + FILE_OVERHEAD
    assert sum(p.bytes for p in plan) == 2 * translated + 7 * target
    assert peak_bytes(plan) == translated + 7 * target


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
