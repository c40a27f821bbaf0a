"""The whole workflow on a tiny config (K=1, N=1, a few iterations): every output, then caching."""

import csv
from pathlib import Path

import yaml
from conftest import REPO, snakemake


def test_every_expected_output(finished_run):
    _, r = finished_run
    for rel in ["data/source/images/00001.png", "data/target/leftImg8bit/val", "data_check.json",
                "m0/segmenter.pt", "m0/eval.json", "m0/curves.png", "m0/predictions",
                "round1/translator.pt", "round1/translator_curves.png", "round1/translated.h5", "round1/gallery.png",
                "round1/adv/segmenter.pt", "round1/adv/eval.json",
                "round1/ssl1/pseudo.h5", "round1/ssl1/gallery.png", "round1/ssl1/segmenter.pt", "round1/ssl1/eval.json",
                "oracle/segmenter.pt", "oracle/eval.json", "metrics.tsv", "diagnostics.tsv",
                "logs/round1/translate.log"]:
        assert (r / rel).exists(), rel
    rows = list(csv.DictReader((r / "metrics.tsv").open(), delimiter="\t"))
    assert [row["model"] for row in rows] == ["m0", "round1_adv", "round1_ssl1", "oracle"]
    assert all(0 <= float(row["miou"]) <= 100 for row in rows)
    assert list(rows[0])[:6] == ["model", "round", "ssl_step", "miou", "miou16", "miou13"]
    assert not list(r.rglob("*.partial.pt")) and not list(r.rglob(".*.tmp*"))
    import json

    pl = json.loads((r / "round1" / "adv" / "eval.json").read_text())["pseudo_label_on_val"]
    assert 0 <= pl["coverage"] <= 100 and pl["source"].endswith("ssl1/pseudo.h5")
    kinds = [line.split("\t")[:2] for line in (r / "diagnostics.tsv").read_text().splitlines()[1:]]
    assert ["iou_delta", "round1_adv-m0"] in kinds and ["pseudo_coverage", "round1_ssl1"] in kinds
    assert ["pseudo_val_accuracy", "round1_adv"] in kinds


def test_rerun_is_a_no_op(finished_run):
    cfg, _ = finished_run
    proc = snakemake(cfg, "--dry-run")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_threshold_change_reruns_only_pseudo_labels_and_after(finished_run):
    cfg, r = finished_run
    changed = yaml.safe_load(cfg.read_text()) | {"pseudo_label": {"threshold": 0.7}}
    cfg2 = cfg.with_name("tiny_threshold.yaml")
    cfg2.write_text(yaml.safe_dump(changed))
    out = snakemake(cfg2, "--dry-run", "--quiet", "rules").stdout
    planned = {line.split()[0] for line in out.splitlines()[2:] if line.strip() and not line.startswith(("-", "total"))}
    assert {"pseudo_label", "train_ssl", "evaluate", "collect_metrics"} <= planned
    assert not planned & {"train_m0", "train_translator", "translate", "train_adversarial", "make_demo_data"}


def test_deleted_translated_set_regenerates_it_and_dependents(finished_run):
    cfg, r = finished_run
    (r / "round1" / "translated.h5").unlink()
    out = snakemake(cfg, "--dry-run", "--quiet", "rules").stdout
    planned = {line.split()[0] for line in out.splitlines()[2:] if line.strip() and not line.startswith(("-", "total"))}
    assert "translate" in planned and "train_adversarial" in planned
    assert not planned & {"train_m0", "train_translator", "make_demo_data", "train_oracle"}
    snakemake(cfg)
    assert (r / "round1" / "translated.h5").exists()


def test_same_seed_same_metrics_and_shell_metacharacters_execute_nothing(finished_run, tmp_path):
    """A second run reads the first run's generated pair as 'real' data from roots and a results folder
    full of shell metacharacters: nothing is executed, and the metrics are identical (same seed, CPU)."""
    import shutil

    cfg_a, res_a = finished_run
    weird = tmp_path / "d a$(touch PWNED);`touch PWNED2`&'x\""
    shutil.copytree(res_a / "data", weird)
    cfg = yaml.safe_load(cfg_a.read_text())
    cfg["results"] = str(tmp_path / "r $(touch PWNED3); x")
    cfg["source"] = {"format": "gta5", "root": str(weird / "source")}
    cfg["target"] = {"format": "cityscapes", "root": str(weird / "target")}
    path = tmp_path / "weird.yaml"
    path.write_text(yaml.safe_dump(cfg))
    snakemake(path)
    assert (Path(cfg["results"]) / "metrics.tsv").read_text() == (res_a / "metrics.tsv").read_text()
    assert not [p for p in (*tmp_path.rglob("PWNED*"), *REPO.rglob("PWNED*"))]


def test_other_seed_gives_other_weights(finished_run, tmp_path):
    import torch

    cfg_a, res_a = finished_run
    cfg = yaml.safe_load(cfg_a.read_text()) | {"seed": 1, "results": str(tmp_path / "seed1")}
    path = tmp_path / "seed1.yaml"
    path.write_text(yaml.safe_dump(cfg))
    snakemake(path, str(tmp_path / "seed1" / "m0" / "segmenter.pt"))
    a = torch.load(res_a / "m0" / "segmenter.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "seed1" / "m0" / "segmenter.pt", weights_only=True)["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())


def test_ssl_lr_reaches_only_the_ssl_steps(finished_run):
    cfg, _ = finished_run
    changed = yaml.safe_load(cfg.read_text())
    changed["segmenter"] = changed["segmenter"] | {"ssl_lr": 0.0025}
    cfg2 = cfg.with_name("tiny_ssl_lr.yaml")
    cfg2.write_text(yaml.safe_dump(changed))
    out = snakemake(cfg2, "--dry-run", "--printshellcmds", "--forceall").stdout
    commands = [line for line in out.splitlines() if "train_segmenter.py" in line]
    ssl = [c for c in commands if "--mode ssl" in c]
    other = [c for c in commands if "--mode ssl" not in c]
    assert ssl and other
    assert all("--lr 0.0025" in c for c in ssl) and not any("--lr 0.0025" in c for c in other)
