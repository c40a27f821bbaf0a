"""config/cpu_real.yaml and the two keys it turns on: pseudo-labels from the mean of the round's models
(pseudo_label.ensemble) and F_k continued from F_{k-1} (translator.init: previous). The loop checks its
README table is judged by are in test_seeds.py."""

import json
import subprocess

import torch
import yaml
from conftest import REPO, SNAKEMAKE, run_stage, source_flags, stage_commands, target_flags

from bdl.pseudo import ProbabilityMean


def dry_run(folder, demo, *configs, **over):
    """``snakemake -n -p`` with config/cpu_real.yaml (and ``configs``) on the tiny demo pair; stage name -> list of
    argument lists."""
    over = {"results": str(folder / "results"), "source": {"root": str(demo / "source"), "size": [64, 32]},
            "target": {"root": str(demo / "target"), "size": [64, 32]}} | over
    (folder / "over.yaml").write_text(yaml.safe_dump(over))
    proc = subprocess.run([*SNAKEMAKE, "-n", "-p", "--cores", "2", "--configfile", *configs, str(folder / "over.yaml")],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return stage_commands(proc.stdout)


def values(words, flag):
    """The arguments after ``flag`` up to the next flag."""
    if flag not in words:
        return []
    rest = words[words.index(flag) + 1:]
    return rest[:next((i for i, w in enumerate(rest) if w.startswith("--")), len(rest))]


def by_out(commands, stage):
    return {words[words.index("--out") + 1].split("/results/")[1]: words for words in commands[stage]}


def test_cpu_real_runs_one_ssl_step_per_round(tmp_path, tiny_demo):
    commands = dry_run(tmp_path, tiny_demo, str(REPO / "config" / "cpu_real.yaml"))
    R = tmp_path / "results"
    assert sorted(by_out(commands, "pseudo_label")) == ["round1/ssl1/pseudo.h5", "round2/ssl1/pseudo.h5"]
    segmenters = by_out(commands, "train_segmenter")
    assert values(segmenters["round2/adv/segmenter.pt"], "--init") == [str(R / "round1/ssl1/segmenter.pt")]
    # the yardstick row, M0 with the target's statistics, is on in the preset
    assert [values(c, "--segmenter") for c in commands["target_bn"]] == [[str(R / "m0/segmenter.pt")]]


def test_cpu_real_labels_each_step_with_the_round_s_models_and_continues_the_translator(tmp_path, tiny_demo):
    # with the paper's N=3 SSL steps (ssl_steps raised over config/cpu_real.yaml's 1)
    commands = dry_run(tmp_path, tiny_demo, str(REPO / "config" / "cpu_real.yaml"), ssl_steps=3)
    R = tmp_path / "results"
    pseudo = by_out(commands, "pseudo_label")
    for k in (1, 2):
        assert values(pseudo[f"round{k}/ssl1/pseudo.h5"], "--segmenter") == [str(R / f"round{k}/adv/segmenter.pt")]
        assert values(pseudo[f"round{k}/ssl3/pseudo.h5"], "--segmenter") == [
            str(R / f"round{k}/{m}/segmenter.pt") for m in ("adv", "ssl1", "ssl2")]
    translators = by_out(commands, "train_translator")
    assert "--init" not in translators["round1/translator.pt"]
    assert values(translators["round2/translator.pt"], "--init") == [str(R / "round1/translator.pt")]
    # the models themselves still chain as the demo's, and the paper's keys stay
    segmenters = by_out(commands, "train_segmenter")
    assert values(segmenters["round2/adv/segmenter.pt"], "--init") == [str(R / "round1/ssl3/segmenter.pt")]


def test_the_defaults_keep_one_labeller_and_a_fresh_translator(tmp_path, tiny_demo):
    commands = dry_run(tmp_path, tiny_demo)
    assert all(len(values(words, "--segmenter")) == 1 for words in commands["pseudo_label"])
    assert not any("--init" in words for words in commands["train_translator"])


def test_domain_bn_reaches_every_translator_and_only_when_set(tmp_path, tiny_demo):
    assert not any("--domain-bn" in words for words in dry_run(tmp_path, tiny_demo)["train_translator"])
    commands = dry_run(tmp_path, tiny_demo, translator={"domain_bn": True})["train_translator"]
    assert len(commands) == 2 and all("--domain-bn" in words for words in commands)


def test_m0_target_bn_is_a_row_after_the_oracle(tmp_path, tiny_demo):
    assert "target_bn" not in dry_run(tmp_path, tiny_demo)  # the defaults leave it off
    commands = dry_run(tmp_path, tiny_demo, m0_target_bn=True)
    R = tmp_path / "results"
    [job] = commands["target_bn"]
    assert values(job, "--segmenter") == [str(R / "m0/segmenter.pt")] and values(job, "--target-split") == ["train"]
    rows = [values(c, "--eval") for c in commands["collect_metrics"]][0]
    assert [r.split("=")[0] for r in rows][-2:] == ["oracle", "m0_target_bn"]
    assert rows[-1] == f"m0_target_bn={R}/m0_target_bn/eval.json"


def test_an_imported_round_leaves_the_next_translator_to_start_afresh(tmp_path, tiny_demo):
    imported = tmp_path / "imported"
    imported.mkdir()
    commands = dry_run(tmp_path, tiny_demo, str(REPO / "config" / "cpu_real.yaml"), import_translated=[str(imported)])
    assert [values(w, "--init") for w in commands["train_translator"]] == [[]]


def test_probability_mean_is_the_mean_of_the_softmaxes():
    torch.manual_seed(0)
    models = [torch.nn.Conv2d(3, 5, 3, padding=1) for _ in range(3)]
    x = torch.rand(2, 3, 8, 6)
    with torch.no_grad():
        assert torch.equal(ProbabilityMean(models[:1])(x), models[0](x))
        mean = torch.stack([m(x).softmax(1) for m in models]).mean(0)
        torch.testing.assert_close(ProbabilityMean(models)(x).softmax(1), mean, rtol=0, atol=1e-6)


def test_pseudo_labels_from_several_models(tmp_path, tiny_demo):
    """The stage takes several checkpoints; one of them twice gives its own labels."""
    flags = ["--iterations", "2", "--width", "4", "--batch-size", "4", "--threads", "1"]
    run_stage("train_segmenter", "--mode", "source", *source_flags(tiny_demo), *flags, "--out", tmp_path / "m.pt")
    import h5py

    sets = {}
    for name, models in {"one": [tmp_path / "m.pt"], "twice": [tmp_path / "m.pt"] * 2}.items():
        run_stage("pseudo_label", "--segmenter", *models, *target_flags(tiny_demo), "--threads", "1",
                  "--out", tmp_path / f"{name}.h5")
        with h5py.File(tmp_path / f"{name}.h5") as f:
            sets[name] = f["label"][()], f.attrs["thresholds"]
            labellers = f.attrs["segmenter"]
        assert labellers == (str(models[0]) if len(models) == 1 else json.dumps([str(m) for m in models]))
    (one, t_one), (twice, t_twice) = sets["one"], sets["twice"]
    # the mean of a model with itself: the same probabilities up to rounding, so the same labels but for a pixel
    # whose probability sits on its class threshold
    assert (one == twice).mean() >= 0.999 and (abs(t_one - t_twice) <= 1e-3).all()


def translator_weights(path):
    state = torch.load(path, map_location="cpu", weights_only=True)
    return torch.cat([v.flatten().float() for v in state["model"].values()])


def test_a_translator_starts_from_init(tmp_path, tiny_demo):
    common = [*source_flags(tiny_demo), *target_flags(tiny_demo), "--iterations", "1", "--batch-size", "2",
              "--ngf", "4", "--n-blocks", "1", "--ndf", "4", "--threads", "1"]
    run_stage("train_translator", *common, "--seed", "7", "--out", tmp_path / "first.pt")
    # at a negligible rate the trained weights are the starting ones: first's, not those of this run's seed
    run_stage("train_translator", *common, "--lr", "1e-12", "--init", tmp_path / "first.pt",
              "--out", tmp_path / "on.pt")
    run_stage("train_translator", *common, "--lr", "1e-12", "--out", tmp_path / "fresh.pt")
    first, on, fresh = (translator_weights(tmp_path / f"{n}.pt") for n in ("first", "on", "fresh"))
    torch.testing.assert_close(on, first, rtol=0, atol=1e-8)
    assert (fresh - first).abs().max() > 1e-3
    bad = run_stage("train_translator", *[w if w != "4" else "6" for w in common[:-2]], "--threads", "1",
                    "--init", tmp_path / "first.pt", "--out", tmp_path / "bad.pt", check=False)
    assert bad.returncode != 0
    last = bad.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "translator.ngf" in last, last
