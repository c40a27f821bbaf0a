"""target.report_split: every model also scored on a second labelled split, apart from the one settings are chosen
on, without retraining anything (a held-out half of the val frames, stages/hold_out.py)."""

import csv
import json

import yaml
from conftest import run_stage, snakemake, stage_commands, tiny_config


def read_rows(path):
    with open(path, newline="") as fh:
        return {r["model"]: r for r in csv.DictReader(fh, delimiter="\t")}


def test_report_split_scores_the_finished_loop_again_and_retrains_nothing(tmp_path):
    data = tmp_path / "data"
    run_stage("make_demo_data", "--n-source", "16", "--n-target-train", "12", "--n-target-val", "8",
              "--width", "64", "--height", "32", "--out", data)
    run_stage("hold_out", "--root", data / "target", "--out", tmp_path / "held")
    res = tmp_path / "res"
    cfg = tiny_config(res, oracle=False, source={"root": str(data / "source")},
                      target={"root": str(tmp_path / "held"), "val_split": "val_tune"})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    snakemake(path)
    tuned = read_rows(res / "metrics.tsv")
    trained = {p: p.stat().st_mtime_ns for p in res.rglob("*.pt")}

    cfg["target"]["report_split"] = "val_report"
    path.write_text(yaml.safe_dump(cfg))
    planned = stage_commands(snakemake(path, "-n", "-p").stdout)
    # only the report split's check, scores and table: the loop's jobs keep their commands and outputs
    assert set(planned) == {"check_data", "evaluate", "collect_metrics"}
    assert [c[c.index("--parts") + 1] for c in planned["check_data"]] == ["target_val"]
    assert all(c[c.index("--split") + 1] == "val_report" and c[c.index("--out") + 1].endswith("eval_report.json")
               for c in planned["evaluate"])
    snakemake(path)
    assert {p: p.stat().st_mtime_ns for p in res.rglob("*.pt")} == trained
    assert read_rows(res / "metrics.tsv") == tuned
    reported = read_rows(res / "metrics_report.tsv")
    assert list(reported) == list(tuned) == ["m0", "round1_adv", "round1_ssl1"]
    check = json.loads((res / "data_check_report.json").read_text())
    assert list(check) == ["target_val"] and check["target_val"]["count"] == 4  # 8 val frames: 4 tune, 4 report
    evals = {m: json.loads((res / f / "eval_report.json").read_text()) for m, f in
             [("m0", "m0"), ("round1_adv", "round1/adv"), ("round1_ssl1", "round1/ssl1")]}
    assert {m: reported[m]["miou"] for m in evals} == {m: f"{e['miou']:.2f}" for m, e in evals.items()}
    # another split of frames: the scores differ from the tuned-on split's
    assert [reported[m]["miou"] for m in reported] != [tuned[m]["miou"] for m in tuned]


def test_report_split_is_checked_before_any_job(tmp_path):
    data = tmp_path / "data"
    run_stage("make_demo_data", "--n-source", "4", "--n-target-train", "4", "--n-target-val", "4",
              "--width", "64", "--height", "32", "--out", data)
    for split, said in (("val", "the split settings are chosen on"), ("nowhere", "target data")):
        path = tmp_path / f"{split}.yaml"
        path.write_text(yaml.safe_dump(tiny_config(tmp_path / "res", source={"root": str(data / "source")},
                                                   target={"root": str(data / "target"), "report_split": split})))
        proc = snakemake(path, "-n", check=False)
        assert proc.returncode != 0
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and said in errors[0], proc.stderr[-2000:]
        assert not (tmp_path / "res").exists()
