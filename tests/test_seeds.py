"""Several seeds as one run (config key seeds): one loop per seed under <results>/seed<s>, the data check and
the image caches shared, and the summary over the seeds (stages/seed_summary.py, bdl/seeds.py)."""

import csv
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import yaml
from conftest import REPO, SNAKEMAKE, run_stage, snakemake, stage_commands, tiny_config

from bdl.seeds import change_lines, loop_checks, step_changes

HEAD = "model\tround\tssl_step\tmiou\tmiou16\tmiou13\n"


def dry_run(folder, **over):
    folder.mkdir(exist_ok=True)
    cfg = folder / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(folder / "res", **over)))
    proc = subprocess.run([*SNAKEMAKE, "-n", "-p", "--cores", "2", "--configfile", str(cfg)],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def values(words, flag):
    return words[words.index(flag) + 1]


def test_two_seeds_run_the_loop_per_seed_and_share_data_and_caches(tmp_path):
    out = dry_run(tmp_path, seeds=[0, 1])
    commands = stage_commands(out)
    res = tmp_path / "res"
    # shared: one demo pair, one data check, one cache per domain, all in the results folder itself
    assert len(commands["make_demo_data"]) == len(commands["check_data"]) == 1
    assert sorted(values(c, "--out") for c in commands["cache_images"]) == [f"{res}/cache/{d}.h5"
                                                                           for d in ("source", "target")]
    # per seed: every model, with the seed's own --seed, under seed<s>/
    trainings = {(values(c, "--mode"), values(c, "--seed"), values(c, "--out")) for c in commands["train_segmenter"]}
    assert trainings == {(mode, str(s), f"{res}/seed{s}/{folder}/segmenter.pt") for s in (0, 1)
                         for mode, folder in (("source", "m0"), ("adversarial", "round1/adv"),
                                              ("ssl", "round1/ssl1"), ("oracle", "oracle"))}
    assert sorted(values(c, "--seed") for c in commands["train_translator"]) == ["1000", "1001"]
    for c in commands["train_segmenter"] + commands["train_translator"]:
        for flag in ("--source-cache", "--target-cache"):
            if flag in c:
                assert values(c, flag).startswith(f"{res}/cache/"), c
    # the pseudo-labels of a seed come from that seed's model
    for c in commands["pseudo_label"]:
        seed = values(c, "--out").split("/seed")[1][0]
        assert values(c, "--segmenter") == f"{res}/seed{seed}/round1/adv/segmenter.pt"
    (summary,) = commands["seed_summary"]
    assert summary[summary.index("--metrics") + 1:summary.index("--out")] == [
        f"{s}={res}/seed{s}/metrics.tsv" for s in (0, 1)]
    assert len(commands["viewer"]) == 2 and all(values(c, "--seed-summary") == f"{res}/seed_summary.tsv"
                                                for c in commands["viewer"])


def test_one_seed_keeps_the_single_run_layout_and_commands(tmp_path):
    as_seed = dry_run(tmp_path / "a", seed=3)
    as_seeds = dry_run(tmp_path / "b", seeds=[3])
    a, b = stage_commands(as_seed), stage_commands(as_seeds)
    assert "seed_summary" not in b and "/seed3/" not in as_seeds
    flat = {stage: [[w.replace(str(tmp_path / "b"), str(tmp_path / "a")) for w in c] for c in cmds]
            for stage, cmds in b.items()}
    assert flat == a
    assert values(a["train_segmenter"][0], "--seed") == "3"


def test_seed_key_is_checked_against_the_schema(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(tmp_path / "res", seeds=[0, 0])))
    proc = subprocess.run([*SNAKEMAKE, "-n", "--cores", "1", "--configfile", str(cfg)], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith("error: config key 'seeds'"), proc.stderr[-500:]


def test_the_target_statistics_row_is_a_yardstick_not_a_step(tmp_path):
    """m0_target_bn after the oracle: above the final model, it is neither the best row nor a losing step; the
    final model's change over it comes last among the changes, and the plot draws it as a line."""
    rows = "m0\t0\t0\t10\t1\t1\nround1_adv\t1\t0\t{}\t1\t1\noracle\t\t\t30\t1\t1\nm0_target_bn\t\t\t{}\t1\t1\n"
    (tmp_path / "a.tsv").write_text(HEAD + rows.format(15, 18))
    (tmp_path / "b.tsv").write_text(HEAD + rows.format(19, 19))
    proc = run_stage("seed_summary", "--metrics", f"0={tmp_path / 'a.tsv'}", f"1={tmp_path / 'b.tsv'}",
                     "--out", tmp_path / "s.tsv", "--checks", tmp_path / "s.json", "--plot", tmp_path / "s.png")
    checks = json.loads((tmp_path / "s.json").read_text())
    assert checks["final"] == "round1_adv" and checks["best"] == "round1_adv" and checks["losing_steps"] == []
    assert checks["gap_closed"] == pytest.approx(7 / 20, abs=1e-4)
    last = checks["step_changes"][-1]
    assert (last["before"], last["after"], last["mean"], last["gains_on"]) == ("m0_target_bn", "round1_adv", -1.5, 0)
    assert "  round1_adv - m0_target_bn, final against M0 with the target's statistics: -1.50 ± 2.12" in proc.stdout
    assert "m0_target_bn" not in "".join(checks["losing_steps"])


def test_seed_summary_stage(tmp_path):
    (tmp_path / "a.tsv").write_text(HEAD + "m0\t0\t0\t10\t20\t30\nround1_adv\t1\t0\t15\t20\t30\noracle\t\t\t30\t1\t1\n")
    (tmp_path / "b.tsv").write_text(HEAD + "m0\t0\t0\t14\t20\t30\nround1_adv\t1\t0\t19\t20\t30\noracle\t\t\t30\t1\t1\n")
    proc = run_stage("seed_summary", "--metrics", f"0={tmp_path / 'a.tsv'}", f"1={tmp_path / 'b.tsv'}",
                     "--out", tmp_path / "s.tsv", "--checks", tmp_path / "s.json", "--plot", tmp_path / "s.png")
    assert "| m0 | 12.00 ± 2.83 | 20.00 ± 0.00 | 30.00 ± 0.00 |" in proc.stdout
    assert (tmp_path / "s.tsv").read_text().splitlines()[1].split("\t")[:4] == ["m0", "2", "12.00", "2.83"]
    checks = json.loads((tmp_path / "s.json").read_text())
    assert checks["gap_closed"] == pytest.approx(5 / 18, abs=1e-4) and checks["losing_steps"] == []
    assert checks["seeds"] == ["0", "1"] and (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    assert checks["step_changes"] == [{"before": "m0", "after": "round1_adv", "why": "", "mean": 5.0, "std": 0.0,
                                       "gains_on": 2, "seeds": 2, "interval95": [5.0, 5.0]}]
    assert "  round1_adv - m0: +5.00 ± 0.00 (2 of 2; +5.00 to +5.00)" in proc.stdout
    assert "gap closed by each seed's final model: 25% (seed 0), 31% (seed 1)" in proc.stdout
    (tmp_path / "c.tsv").write_text(HEAD + "oracle\t\t\t1\t1\t1\n")
    bad = run_stage("seed_summary", "--metrics", f"0={tmp_path / 'a.tsv'}", f"1={tmp_path / 'c.tsv'}",
                    "--out", tmp_path / "x.tsv", check=False)
    assert bad.returncode == 2 and "c.tsv: rows ['oracle'] differ" in bad.stderr and not (tmp_path / "x.tsv").exists()
    one = run_stage("seed_summary", "--metrics", f"0={tmp_path / 'a.tsv'}", "--out", tmp_path / "x.tsv", check=False)
    assert one.returncode == 2 and "at least two" in one.stderr


def test_loop_checks_name_every_step_that_loses():
    good = {"m0": 10.0, "round1_adv": 20.0, "round1_ssl1": 21.0, "round1_ssl2": 21.0, "round2_adv": 20.5,
            "round2_ssl1": 21.5, "round2_ssl2": 22.0, "oracle": 30.0}
    assert loop_checks(good) == [
        "gap closed by round2_ssl2: 60% ((final - m0) / (oracle - m0) of the means)",
        "steps that lose on the mean: none"]
    bad = good | {"round1_ssl2": 20.9, "round2_ssl1": 20.0, "round2_ssl2": 20.8}
    losses = loop_checks(bad)[1]
    assert "round1_ssl2 20.90 < round1_ssl1 21.00" in losses
    assert "round2_ssl1 20.00 < round2_adv 20.50" in losses
    assert "round2_ssl2 20.80 < round1_ssl2 20.90 (round 2 below round 1)" in losses
    assert "final round2_ssl2 20.80 < best row round1_ssl1 21.00" in losses
    assert "round2_adv" not in losses.split("round2_ssl1 20.00 < ")[0]  # an adversarial M_2 is judged by its round


def test_loop_checks_show_a_small_loss_apart_and_pass_a_tie():
    mean = {"m0": 10.0, "round1_adv": 20.0, "round1_ssl1": 21.004, "round1_ssl2": 21.0, "oracle": 30.0}
    losses = loop_checks(mean)[1]
    assert "round1_ssl2 21.000 < round1_ssl1 21.004" in losses
    assert "final round1_ssl2 21.000 < best row round1_ssl1 21.004" in losses
    tie = mean | {"round1_ssl2": (21.0 + 21.012 + 21.0) / 3, "round1_ssl1": 21.004}
    assert loop_checks(tie)[1] == "steps that lose on the mean: none"


def test_step_changes_pair_each_seed_with_itself():
    rows = ("m0", "round1_adv", "round1_ssl1", "round2_adv", "round2_ssl1", "oracle")

    def table(*miou):
        return {m: {"miou": str(v)} for m, v in zip(rows, miou)}

    # round 2's SSL step: +1.0 on seed a, -1.3 on seed b, -0.3 on seed c: a loss on the mean of -0.2 that the
    # seeds do not tell apart from none; round 1's SSL step gains on every seed
    tables = [table(10, 20, 21, 21, 22, 30), table(12, 22, 22.5, 22.5, 21.2, 32), table(11, 21, 22, 22, 21.6, 31)]
    changes = {(c["before"], c["after"]): c for c in step_changes(tables)}
    ssl2 = changes[("round2_adv", "round2_ssl1")]
    assert ssl2["mean"] == pytest.approx(-0.2333, abs=1e-4) and ssl2["gains_on"] == 1 and ssl2["seeds"] == 3
    std = float(np.std([1.0, -1.3, -0.4], ddof=1))
    assert ssl2["std"] == pytest.approx(std, abs=1e-4)
    half = 4.303 * std / np.sqrt(3)  # Student's t, 2 degrees of freedom
    assert ssl2["interval95"] == pytest.approx([-0.2333 - half, -0.2333 + half], abs=1e-3)
    assert changes[("round1_adv", "round1_ssl1")]["gains_on"] == 3
    assert changes[("round1_ssl1", "round2_ssl1")]["why"] == "round 2 against round 1"
    # the best row on the mean is round1_ssl1 (21.83 against the final 21.6): judged once, as round 2's
    assert ("round2_adv", "round2_ssl1") in changes and len(changes) == 4
    lines = change_lines(tables, ["a", "b", "c"])
    assert lines[3] == "  round2_ssl1 - round2_adv: -0.23 ± 1.16 (1 of 3; -3.11 to +2.65, not told apart from none)"
    assert lines[2] == "  round1_ssl1 - round1_adv: +0.83 ± 0.29 (3 of 3; +0.12 to +1.55)"
    assert lines[-1] == "gap closed by each seed's final model: 60% (seed a), 46% (seed b), 53% (seed c)"
    no_gap = [tables[0], table(12, 22, 22.5, 22.5, 21.2, 11)]
    assert change_lines(no_gap, ["a", "b"])[-1] == (
        "gap closed by each seed's final model: 60% (seed a), no gap (its oracle not above its M0) (seed b)")
    # gaining or losing on every seed is not enough: a mean change within the interval's reach is noise
    small = [table(10, 20, 21, 21, 20.9, 30), table(12, 22, 22.5, 22.5, 21.6, 32), table(11, 21, 22, 22, 21.5, 31)]
    assert "-0.50 ± 0.40 (0 of 3; -1.49 to +0.49, not told apart from none)" in change_lines(small)[3]
    sure = [table(10, 20, 21, 21, 20, 30), table(12, 22, 22.5, 22.5, 21.4, 32), table(11, 21, 22, 22, 20.9, 31)]
    assert change_lines(sure)[3] == "  round2_ssl1 - round2_adv: -1.07 ± 0.06 (0 of 3; -1.21 to -0.92)"
    # a final model level with an earlier best row is not judged against it (losing_steps' tie)
    tie = [table(10, 22, 21, 21, 22, 30), table(12, 22.5, 21, 21, 22.5, 32)]
    assert all(c["why"] != "final against the best row" for c in step_changes(tie))
    below = [table(10, 22, 21, 21, 21.9, 30), table(12, 22.5, 21, 21, 22.5, 32)]
    assert [c["before"] for c in step_changes(below) if c["why"] == "final against the best row"] == ["round1_adv"]


@pytest.fixture(scope="module")
def two_seed_run(tmp_path_factory):
    """The tiny config run with two seeds (no oracle, no translated sets kept: the loop itself)."""
    base = tmp_path_factory.mktemp("seeds")
    cfg = base / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(base / "res", seeds=[0, 1], keep_translated=False)))
    snakemake(cfg)
    return cfg, base / "res"


def read_tsv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_summary_is_the_mean_and_std_of_the_seeds_tables(two_seed_run):
    _, res = two_seed_run
    tables = [{r["model"]: r for r in read_tsv(res / f"seed{s}" / "metrics.tsv")} for s in (0, 1)]
    assert tables[0]["m0"]["miou"] != tables[1]["m0"]["miou"]  # the seeds trained different models
    summary = read_tsv(res / "seed_summary.tsv")
    assert [r["model"] for r in summary] == list(tables[0]) == ["m0", "round1_adv", "round1_ssl1", "oracle"]
    for row in summary:
        for col in ("miou", "miou16", "miou13"):
            v = np.array([float(t[row["model"]][col]) for t in tables])
            assert float(row[f"{col}_mean"]) == pytest.approx(v.mean(), abs=0.006), (row["model"], col)
            assert float(row[f"{col}_std"]) == pytest.approx(v.std(ddof=1), abs=0.006), (row["model"], col)
    checks = json.loads((res / "seed_summary.json").read_text())
    mean = {r["model"]: float(r["miou_mean"]) for r in summary}
    assert checks["final"] == "round1_ssl1" and checks["lines"] == loop_checks(
        {m: np.mean([float(t[m]["miou"]) for t in tables]) for m in tables[0]}) + change_lines(tables, ["0", "1"])
    assert [(c["before"], c["after"]) for c in checks["step_changes"]][:2] == [
        ("m0", "round1_adv"), ("round1_adv", "round1_ssl1")]
    assert checks["best"] == max(["m0", "round1_adv", "round1_ssl1"], key=mean.get)
    # shared inputs once in the results folder; nothing seeded outside the seeds' folders
    assert (res / "cache" / "source.h5").is_file() and (res / "data_check.json").is_file()
    assert not (res / "m0").exists() and not (res / "seed0" / "cache").exists()
    for s in (0, 1):
        page = (res / f"seed{s}" / "viewer" / "index.html").read_text()
        assert 'id="seeds"' in page and (res / f"seed{s}" / "viewer" / "seed_summary.png").is_file()
        assert f"<th class=\"name\">round1_ssl1</th><td>{summary[2]['miou_mean']} &plusmn;" in page
        # each step's change nested under the line that heads them
        assert "95% interval):<ul><li>round1_adv - m0: " in page and "</li><li>round1_ssl1 - round1_adv: " in page


def test_ssl_variant_needs_the_translated_sets_the_run_kept(two_seed_run, tmp_path):
    _, res = two_seed_run
    proc = subprocess.run([sys.executable, "investigations/ssl_variant.py", "--results", str(res), "--seeds", "0",
                           "1", "--out", str(tmp_path / "v")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0 and "round1/translated.h5: not kept (keep_translated: false)" in proc.stderr
    assert not (tmp_path / "v" / "seed0").exists()


def test_report_shows_the_summary(two_seed_run, tmp_path):
    cfg, _ = two_seed_run
    report = tmp_path / "report.zip"
    snakemake(cfg, "--report", str(report))
    with zipfile.ZipFile(report) as z:
        names = z.namelist()
        text = "\n".join(z.read(n).decode("utf-8", "replace") for n in names if n.endswith((".html", ".js")))
    assert any(n.endswith("seed_summary.png") for n in names) and any(n.endswith("seed_summary.tsv") for n in names)
    assert len([n for n in names if n.endswith("/index.html")]) == 2  # a viewer per seed
    assert "The loop ran once per seed (0, 1)" in text and "mean and std over seeds" in text


def test_disk_plan_counts_every_seed_s_sets_and_the_shared_caches_once():
    from bdl.plan import disk_plan, peak_bytes

    cfg = {"results": "r", "rounds": 2, "ssl_steps": 1, "keep_translated": False, "seed": 0,
           "source": {"cache": True}, "target": {"cache": True}}
    frames, counts = {"source": (8, 4), "target": (8, 4)}, {"source": 10, "target_train": 5}
    one = disk_plan(cfg, counts, frames)
    three = disk_plan(cfg | {"seeds": [0, 1, 2]}, counts, frames)
    assert [p.path for p in one] == ["r/cache/source.h5", "r/cache/target.h5", "r/round1/translated.h5",
                                     "r/round1/ssl1/pseudo.h5", "r/round2/translated.h5", "r/round2/ssl1/pseudo.h5"]
    assert [p.path for p in three][:2] == ["r/cache/source.h5", "r/cache/target.h5"]
    assert sorted(p.path for p in three[2:]) == sorted(p.path.replace("r/", f"r/seed{s}/") for s in range(3)
                                                       for p in one[2:])
    translated = max(p.bytes for p in one if not p.kept)
    kept = sum(p.bytes for p in one if p.kept)
    caches = sum(p.bytes for p in one[:2])
    scratch = max(p.scratch for p in one)  # the default classwise pass's scratch file beside its set
    assert scratch > 0
    assert peak_bytes(one) == kept + translated + scratch
    # the seeds may run side by side: each its dropped set and its scratch file at once
    assert peak_bytes(three) == caches + 3 * (kept - caches) + 3 * translated + 3 * scratch
