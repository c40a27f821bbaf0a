"""The paper's recipe as keys. The schedules each paper preset runs, read back from the commands the workflow
gives its jobs, against the reference's formulas (liyunsheng13/BDL: poly over --num-steps 250000 stopped at
--num-steps-stop, model/deeplab.py and model/discriminator.py; x0.1 every 50000 steps for FCN-8s, model/fcn8s.py;
the translator's 10 constant + 10 decaying epochs of the paper). And the init policy in the DAG: with
segmenter.init: weights every M is built from the initial weights, with previous each starts from the one before."""

import csv
import importlib.util
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import (
    REPO,
    SNAKEMAKE,
    STAGES,
    run_stage,
    snakemake,
    source_flags,
    stage_commands,
    target_flags,
    tiny_config,
)

from bdl.loops.segmenter import SegmenterSettings
from bdl.loops.translator import TranslatorSettings
from bdl.models.reference_manifest import manifest
from bdl.training import set_lr

PRESETS = ("paper_gta5_resnet101", "paper_synthia_resnet101", "paper_gta5_vgg16", "paper_synthia_vgg16")
MANIFEST = {"resnet101_ref": "deeplab_init", "vgg16_ref": "fcn8s"}
STEPS = (0, 60_000, 120_000)


def reference_poly(base, step, horizon=250_000, power=0.9):
    return base * (1 - step / horizon) ** power


def reference_step(base, step):
    return base * 0.1 ** (step // 50_000)


def paper_translator(step, epoch):
    """2e-4 for 10 epochs, then linearly to zero at the end of the 20th."""
    return 2e-4 * min(1.0, (20 * epoch - step) / (10 * epoch))


def parser(stage):
    spec = importlib.util.spec_from_file_location(f"recipe_{stage}", STAGES / f"{stage}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_args_parser()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A small generated pair in the GTA5 and Cityscapes layouts."""
    from bdl.data.demo import generate

    out = tmp_path_factory.mktemp("pair")
    generate(out, 8, 6, 4, width=64, height=32, seed=5)
    return out


def dry_run(preset, folder, pair, **segmenter):
    """``snakemake -n -p`` on a preset with the roots on ``pair``, its frames' size, and a weights file that fits
    the preset's backbone (the manifest's keys and shapes, one stored zero each); stage name -> list of commands,
    each as the stage's argument list."""
    backbone = yaml.safe_load((REPO / "config" / f"{preset}.yaml").read_text())["segmenter"]["backbone"]
    torch.save({k: torch.zeros(1).expand(shape) for k, shape in manifest(MANIFEST[backbone]).items()},
               folder / "init.pth")
    over = {"results": str(folder / "results"),
            "source": {"format": "gta5", "root": str(pair / "source"), "size": [64, 32]},
            "target": {"root": str(pair / "target"), "size": [64, 32]},
            "segmenter": {"weights": str(folder / "init.pth")} | segmenter}
    (folder / "over.yaml").write_text(yaml.safe_dump(over))
    proc = subprocess.run([*SNAKEMAKE, "-n", "-p", "--cores", "2", "--configfile",
                           str(REPO / "config" / f"{preset}.yaml"), str(folder / "over.yaml")],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return stage_commands(proc.stdout)


@pytest.fixture(scope="module")
def preset_run(tmp_path_factory, pair):
    """The dry run of a preset as it is (its init policy), once per module: preset -> (commands, folder)."""
    done = {}

    def run(preset):
        if preset not in done:
            folder = tmp_path_factory.mktemp(preset)
            done[preset] = dry_run(preset, folder, pair), folder
        return done[preset]

    return run


def by_model(commands):
    """The train_segmenter commands by the model they write, e.g. 'round1/ssl2'."""
    out = {}
    for words in commands["train_segmenter"]:
        path = words[words.index("--out") + 1]
        out[path.split("/results/")[1].removesuffix("/segmenter.pt")] = words
    return out


def test_every_model_of_the_gta5_preset_starts_from_the_initial_weights(preset_run):
    commands, folder = preset_run("paper_gta5_resnet101")
    models = by_model(commands)
    assert sorted(models) == ["m0"] + [f"round{k}/{m}" for k in (1, 2) for m in ("adv", "ssl1", "ssl2", "ssl3")]
    for name, words in models.items():
        assert "--init" not in words, name
        assert words[words.index("--weights") + 1] == str(folder / "init.pth"), name
        assert words[words.index("--backbone") + 1] == "resnet101_ref", name


def test_previous_chains_each_model_to_the_one_before(tmp_path, pair):
    commands = dry_run("paper_gta5_resnet101", tmp_path, pair, init="previous")
    models = by_model(commands)
    before = {"round1/adv": "m0", "round1/ssl1": "round1/adv", "round1/ssl2": "round1/ssl1",
              "round1/ssl3": "round1/ssl2", "round2/adv": "round1/ssl3", "round2/ssl1": "round2/adv"}
    for name, previous in before.items():
        words = models[name]
        assert words[words.index("--init") + 1] == str(tmp_path / "results" / previous / "segmenter.pt"), name
    assert "--init" not in models["m0"]
    # either way the translator of round 2 judges with round 1's last model
    judge = [w[w.index("--segmenter") + 1] for w in commands["train_translator"] if "--segmenter" in w]
    assert str(tmp_path / "results" / "round1" / "ssl3" / "segmenter.pt") in judge


@pytest.mark.parametrize("preset", PRESETS)
def test_the_preset_s_learning_rates_are_the_reference_s(preset_run, preset):
    commands, _ = preset_run(preset)
    seg = parser("train_segmenter")
    vgg = "vgg16" in preset
    for name, words in by_model(commands).items():
        s = SegmenterSettings.from_args(seg.parse_args(words))
        mode = "source" if name == "m0" else name.split("/")[1].rstrip("0123456789")
        assert s.iterations == {"source": 120_000, "adv": 80_000, "ssl": 120_000}[mode], name
        for step in STEPS:
            want = reference_step if vgg else reference_poly
            assert s.lr_at(s.lr, step) == pytest.approx(want(1e-5 if vgg else 2.5e-4, step), rel=1e-12), (name, step)
            assert s.lr_at(s.lr_d, step) == pytest.approx(want(1e-4, step), rel=1e-12), (name, step)
    if not vgg:  # where each stops: the reference's rate at 80k and 120k of its 250k horizon
        assert reference_poly(1.0, 80_000) == pytest.approx(0.7067, abs=1e-4)
        assert reference_poly(1.0, 120_000) == pytest.approx(0.5552, abs=1e-4)

    epoch = 24_966 if "gta5" in preset else 9_400
    (words,) = [w for w in commands["train_translator"] if w[w.index("--out") + 1].endswith("round1/translator.pt")]
    f = TranslatorSettings.from_args(parser("train_translator").parse_args(words))
    assert f.iterations == 20 * epoch
    for step in (*STEPS, 10 * epoch, 15 * epoch, 20 * epoch - 1):
        assert f.lr * f.lr_scale(step) == pytest.approx(paper_translator(step, epoch), rel=1e-9, abs=1e-15), step


@pytest.mark.parametrize("preset", PRESETS)
def test_the_preset_scores_and_pseudo_labels_as_the_reference(preset_run, preset):
    """A paper preset's numbers compare with the paper's only under the reference's protocol: every job that
    scores, pseudo-labels or resizes frames for M gets it."""
    commands, _ = preset_run(preset)
    for stage in ("evaluate", "pseudo_label", "train_segmenter"):
        assert commands[stage], stage
        for words in commands[stage]:
            assert words[words.index("--protocol") + 1] == "reference", (stage, words)


class Groups(torch.nn.Module):
    """A model with the reference's FCN-8s parameter groups: weights at 1x, biases at 2x."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def param_groups(self, lr):
        return [{"params": [self.conv.weight], "lr": lr, "lr_mult": 1.0},
                {"params": [self.conv.bias], "lr": 2 * lr, "lr_mult": 2.0}]


def test_the_vgg_presets_optimiser_is_the_reference_s(preset_run):
    words = by_model(preset_run("paper_gta5_vgg16")[0])["round1/ssl1"]
    s = SegmenterSettings.from_args(parser("train_segmenter").parse_args(words))
    opt = s.optimizer_of(Groups())
    assert isinstance(opt, torch.optim.Adam)
    assert all(g["betas"] == (0.9, 0.99) and g["weight_decay"] == 0 for g in opt.param_groups)
    set_lr(opt, s.lr_at(s.lr, 60_000))
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-6, 2e-6])


def logged_lr(path):
    with open(path, newline="") as fh:
        return [float(row["lr"]) for row in csv.DictReader(fh, delimiter="\t")]


def test_the_stages_train_on_the_chosen_optimiser_and_schedules(tiny_demo, tmp_path):
    """The loops take the keys: Adam on the step schedule for M, a horizon past the stop for F."""
    run_stage("train_segmenter", "--mode", "source", *source_flags(tiny_demo), "--backbone", "resnet_mini", "--width",
              "8", "--batch-size", "4", "--threads", "1", "--log-every", "1", "--iterations", "3", "--lr", "0.001",
              "--optimizer", "adam", "--betas", "0.8", "0.9", "--lr-schedule", "step", "--lr-step", "1", "--lr-gamma",
              "0.5", "--out", tmp_path / "m.pt", "--losses", tmp_path / "m.tsv")
    assert logged_lr(tmp_path / "m.tsv") == pytest.approx([1e-3, 5e-4, 2.5e-4])
    run_stage("train_translator", *source_flags(tiny_demo), *target_flags(tiny_demo), "--ngf", "4", "--n-blocks", "1",
              "--ndf", "4", "--batch-size", "2", "--threads", "1", "--log-every", "1", "--iterations", "4",
              "--decay-start", "1", "--lr-horizon", "5", "--out", tmp_path / "f.pt", "--losses", tmp_path / "f.tsv")
    assert logged_lr(tmp_path / "f.tsv") == pytest.approx([2e-4, 2e-4, 1.5e-4, 1e-4])


def test_the_default_keys_keep_today_s_schedule():
    """No key set: SGD, poly to zero at each stage's last step, the translator's decay over its second half."""
    s = SegmenterSettings.from_args(parser("train_segmenter").parse_args(
        ["--mode", "source", "--iterations", "600", "--out", "x.pt"]))
    assert [s.lr_at(s.lr, step) for step in (0, 300, 599)] == [0.01 * (1 - step / 600) ** 0.9 for step in (0, 300, 599)]
    opt = s.optimizer_of(Groups())
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    f = TranslatorSettings.from_args(parser("train_translator").parse_args(["--iterations", "160", "--out", "x.pt"]))
    assert [f.lr_scale(step) for step in (0, 80, 120, 159)] == pytest.approx([1.0, 1.0, 0.5, 1 / 80], rel=1e-12)


def test_a_horizon_shorter_than_a_stage_is_refused_in_one_line(tmp_path):
    cfg = tiny_config(tmp_path / "res")
    cfg["segmenter"] |= {"lr_horizon": 3}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path / "cfg.yaml", "--dry-run", check=False)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode != 0 and errors == [
        "error: config key 'segmenter.lr_horizon': 3 is shorter than segmenter.iterations.source (4); poly would "
        "pass zero before the stop"], proc.stderr[-2000:]
    stage = subprocess.run([sys.executable, str(STAGES / "train_segmenter.py"), "--mode", "source", "--iterations",
                            "200", "--lr-horizon", "100", "--out", str(tmp_path / "m.pt")],
                           capture_output=True, text=True, cwd=REPO)
    assert stage.returncode == 2 and stage.stderr.strip().splitlines()[-1] == (
        "error: --lr-horizon 100 is shorter than --iterations 200: the rate would pass zero (config "
        "segmenter.lr_horizon)")
