"""stages/hold_out.py: a target's val split cut into a tuning and a reporting part, as a root of links."""

import subprocess
import sys

import yaml
from conftest import REALPAIR, REPO, SNAKEMAKE, need_folder, run_stage, stage_commands

from bdl.data.readers import cityscapes_samples, decode_cityscapes_ids


def test_val_cut_into_two_contiguous_parts_of_links(tiny_demo, tmp_path):
    out = tmp_path / "held"
    proc = run_stage("hold_out", "--root", tiny_demo / "target", "--out", out)
    assert "val_tune: 4 frames, val_report: 4 frames" in proc.stderr
    val = [s.name for s in cityscapes_samples(tiny_demo / "target", "val")]
    tune, report = ([s for s in cityscapes_samples(out, split)] for split in ("val_tune", "val_report"))
    assert [s.name for s in tune] == val[:4] and [s.name for s in report] == val[4:]
    assert all(s.image.is_symlink() and s.label.is_symlink() for s in tune + report)
    assert [s.name for s in cityscapes_samples(out, "train")] == [
        s.name for s in cityscapes_samples(tiny_demo / "target", "train")]
    again = run_stage("hold_out", "--root", tiny_demo / "target", "--out", out)  # the same links: kept
    assert again.returncode == 0
    other = run_stage("hold_out", "--root", tiny_demo / "target", "--out", out, "--fraction", "0.25", check=False)
    assert other.returncode == 2 and other.stderr.strip().startswith("error:")
    assert "other files or links" in other.stderr
    bad = run_stage("hold_out", "--root", tiny_demo / "target", "--out", tmp_path / "x", "--names", "val", "b",
                    check=False)
    assert bad.returncode == 2 and "two new split names" in bad.stderr and not (tmp_path / "x").exists()


def test_workflow_scores_on_the_report_part(tiny_demo, tmp_path):
    out = tmp_path / "held"
    run_stage("hold_out", "--root", tiny_demo / "target", "--out", out)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"results": str(tmp_path / "res"), "rounds": 1, "ssl_steps": 1,
                                   "source": {"format": "gta5", "root": str(tiny_demo / "source")},
                                   "target": {"root": str(out), "val_split": "val_report"}}))
    proc = subprocess.run([*SNAKEMAKE, "-n", "-p", "--cores", "1", "--configfile", str(cfg)], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for words in stage_commands(proc.stdout)["evaluate"]:
        assert words[words.index("--split") + 1] == "val_report"


def test_night_to_day_pair_is_links_with_disjoint_drives(tmp_path):
    need_folder(REALPAIR, "BDL_REALPAIR")
    out = tmp_path / "n2d"
    proc = subprocess.run([sys.executable, "benchmarks/night_to_day_pair.py", "--realpair", str(REALPAIR),
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    source = cityscapes_samples(out / "source", "all")
    train, tune, report = (cityscapes_samples(out / "target", s) for s in ("train", "val_tune", "val_report"))
    assert (len(source), len(train), len(tune) + len(report)) == (171, 204, 101)
    # the adapted-to frames, the scored frames and the source are three different drives
    assert {s.image.parent.name for s in train} == {"camvid0016E5"}
    assert {s.image.parent.name for s in tune + report} == {"camvid0006R0"}
    assert {s.image.parent.name for s in source} == {"camvidSeq05VDnight"}
    day = REALPAIR / "source_day_gta5layout"
    first = tune[0]
    assert first.image.resolve() == (day / "images" / first.name.split("_")[-1]).with_suffix(".png").resolve()
    assert first.label.resolve().parent == (day / "labels").resolve()
    train_ids = set(decode_cityscapes_ids(first.label).ravel().tolist())  # palette indices read as labelIds
    assert 0 in train_ids and train_ids <= set(range(19)) | {255}  # road present, nothing outside the table
    again = subprocess.run([sys.executable, "benchmarks/night_to_day_pair.py", "--realpair", str(REALPAIR),
                            "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 2 and again.stderr.strip().startswith("error:") and "exists" in again.stderr
