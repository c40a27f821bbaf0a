"""stages/hold_out.py: a target's val split cut into a tuning and a reporting part, as a root of links."""

import subprocess

import yaml
from conftest import REPO, SNAKEMAKE, run_stage, stage_commands

from bdl.data.readers import cityscapes_samples


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
