"""Each stage for a few iterations on the tiny demo pair; artifacts checked for shape, dtype, range, attrs."""

import json

import h5py
import numpy as np
import pytest
import torch
from conftest import NO_BF16_KERNELS, STAGES, run_stage, source_flags, target_flags

TINY_SEG = ["--backbone", "resnet_mini", "--width", "8", "--ndf", "8", "--batch-size", "4", "--threads", "1",
            "--log-every", "1", "--checkpoint-every", "2"]


@pytest.mark.parametrize("script", sorted(p.stem for p in STAGES.glob("*.py")))
def test_help(script):
    proc = run_stage(script, "--help")
    assert "usage:" in proc.stdout


@pytest.fixture(scope="module")
def chain(tiny_demo, tmp_path_factory):
    """M0 -> F1 -> translated set -> M1 adv -> pseudo-labels -> M1 ssl1, each as its stage script."""
    d = tmp_path_factory.mktemp("chain")
    run_stage("train_segmenter", "--mode", "source", *source_flags(tiny_demo), *TINY_SEG, "--iterations", "4",
              "--out", d / "m0.pt", "--losses", d / "m0.tsv", "--curves", d / "m0.png")
    run_stage("train_translator", *source_flags(tiny_demo), *target_flags(tiny_demo), "--segmenter", d / "m0.pt",
              "--ngf", "4", "--n-blocks", "1", "--ndf", "4", "--iterations", "3", "--batch-size", "2",
              "--threads", "1", "--out", d / "f1.pt", "--losses", d / "f1.tsv")
    run_stage("translate", "--translator", d / "f1.pt", *source_flags(tiny_demo), "--batch-size", "5",
              "--threads", "1", "--out", d / "translated.h5")
    run_stage("train_segmenter", "--mode", "adversarial", "--translated", d / "translated.h5",
              *source_flags(tiny_demo), *target_flags(tiny_demo), "--init", d / "m0.pt", *TINY_SEG, "--iterations", "3",
              "--out", d / "adv.pt", "--losses", d / "adv.tsv")
    run_stage("pseudo_label", "--segmenter", d / "adv.pt", *target_flags(tiny_demo), "--mode", "classwise",
              "--threshold", "0.9", "--batch-size", "5", "--threads", "1", "--out", d / "pseudo.h5")
    run_stage("train_segmenter", "--mode", "ssl", "--translated", d / "translated.h5", "--pseudo", d / "pseudo.h5",
              *source_flags(tiny_demo), *target_flags(tiny_demo), "--init", d / "adv.pt", *TINY_SEG,
              "--iterations", "3", "--out", d / "ssl.pt", "--losses", d / "ssl.tsv")
    return d


def test_segmenter_checkpoints(chain):
    for name in ("m0", "adv", "ssl"):
        state = torch.load(chain / f"{name}.pt", weights_only=True)
        assert state["kind"] == "segmenter" and state["arch"]["backbone"] == "resnet_mini"
        assert not (chain / f"{name}.pt.partial.pt").exists()  # in-progress checkpoint removed when done
    assert (chain / "m0.png").stat().st_size > 1000
    header = (chain / "adv.tsv").read_text().splitlines()[0].split("\t")
    assert {"step", "seg", "adv", "D", "lr"} <= set(header)
    assert "seg_target" in (chain / "ssl.tsv").read_text().splitlines()[0]


def test_translated_set(chain, tiny_demo):
    """The images alone, compressed without loss; the labels the segmenter trains on are the source's."""
    from bdl.artifacts import SET_FORMAT, frames
    from bdl.data.cache import domain_set
    from bdl.data.readers import DatasetSpec, decode_cityscapes_ids
    from bdl.data.translated import TranslatedSet

    with h5py.File(chain / "translated.h5") as f:
        assert sorted(f) == ["images", "names"] and f["images"].dtype == np.uint8
        assert f["images"].shape == (24, 32, 64, 3) and f["images"].chunks == (1, 32, 64, 3)
        assert f.attrs["set_kind"] == "translated" and f.attrs["set_format"] == SET_FORMAT
        assert f["names"][0].decode() == "00001"
        assert f.attrs["translator"].endswith("f1.pt") and "gta5" in f.attrs["source"]
        images = frames(f, "images")[:]
        assert images.std() > 0 and not np.array_equal(images, f["images"][:])  # stored delta-coded
    source = domain_set(DatasetSpec("gta5", str(tiny_demo / "source")), None, None, True)
    ds = TranslatedSet(chain / "translated.h5", source)
    item = ds[0]
    assert np.array_equal(item["image"].permute(1, 2, 0).numpy(), images[0])
    assert np.array_equal(item["label"].numpy(), decode_cityscapes_ids(tiny_demo / "source" / "labels" / "00001.png"))
    batch = ds.__getitems__([3, 4, 5])  # the in-order run of an inference pass: the same frames
    assert np.array_equal(batch["image"].permute(0, 2, 3, 1).numpy(), images[3:6])
    assert np.array_equal(batch["label"][1].numpy(), source[4]["label"].numpy())
    # a source listing of other frames (or another size) is refused before a frame is read
    from bdl import BDLError

    fewer = domain_set(DatasetSpec("gta5", str(tiny_demo / "source")), None, None, True)
    fewer.samples = fewer.samples[1:]
    with pytest.raises(BDLError, match="translates other frames than the 23 the source listing holds"):
        TranslatedSet(chain / "translated.h5", fewer)
    resized = domain_set(DatasetSpec("gta5", str(tiny_demo / "source")), None, (32, 16), True)
    with pytest.raises(BDLError, match="its images are 64x32 but the source's labels 32x16"):
        TranslatedSet(chain / "translated.h5", resized)


def test_pseudo_label_set(chain, tiny_demo):
    """The label alone (uint8, 255 below the class threshold) and the thresholds, the medians of M's own float16
    probabilities; the scratch of the classwise pass is gone."""
    from bdl.artifacts import SET_FORMAT
    from bdl.data.cache import domain_set
    from bdl.data.readers import DatasetSpec
    from bdl.loops.inference import predict
    from bdl.models import load_segmenter
    from bdl.pseudo import PseudoLabelSet

    with h5py.File(chain / "pseudo.h5") as f:
        assert sorted(f) == ["label", "names"] and f.attrs["set_kind"] == "pseudo"
        assert f.attrs["set_format"] == SET_FORMAT
        labels, thresholds, kept = f["label"][:], f.attrs["thresholds"], f.attrs["kept_pixels"]
        assert labels.shape == (16, 32, 64) and labels.dtype == np.uint8
        assert f.attrs["mode"] == "classwise" and len(thresholds) == 19 and (thresholds <= 0.9).all()
    assert not list(chain.glob(".pseudo*"))
    images = domain_set(DatasetSpec("cityscapes", str(tiny_demo / "target")), None, None, False)
    batch = torch.stack([images[i]["image"] for i in range(16)])
    prob, pred = predict(load_segmenter(chain / "adv.pt"), batch, torch.device("cpu"))
    prob, pred = prob.to(torch.float16).numpy(), pred.numpy()
    for c in np.unique(pred):
        assert thresholds[c] == pytest.approx(min(np.median(prob[pred == c].astype(np.float64)), 0.9))
    expected = np.where(prob >= thresholds.astype(np.float16)[pred], pred, 255)
    assert np.array_equal(labels, expected)
    # the counts come from the histograms, the labels from the second pass: both must be the same rule
    assert kept.tolist() == np.bincount(labels[labels != 255], minlength=19).tolist()
    read = np.stack([PseudoLabelSet(chain / "pseudo.h5", images)[i]["label"].numpy() for i in range(16)])
    assert np.array_equal(read, labels)


def test_evaluate_and_collect(chain, tiny_demo):
    run_stage("evaluate", "--segmenter", chain / "ssl.pt", *target_flags(tiny_demo), "--threads", "1",
              "--predictions", chain / "pred", "--num-predictions", "2", "--out", chain / "eval.json")
    res = json.loads((chain / "eval.json").read_text())
    assert 0 <= res["miou"] <= 100 and res["images"] == 8 and len(res["per_class"]) == 19
    pngs = sorted(p.name for p in (chain / "pred").glob("*.png"))
    assert len(pngs) == 4 and sum(name.endswith("_pred.png") for name in pngs) == 2  # composite + label each
    run_stage("collect_metrics", "--eval", f"m0={chain / 'eval.json'}", f"round1_ssl1={chain / 'eval.json'}",
              "--out", chain / "metrics.tsv")
    rows = [r.split("\t") for r in (chain / "metrics.tsv").read_text().splitlines()]
    assert rows[0][:6] == ["model", "round", "ssl_step", "miou", "miou16", "miou13"] and len(rows[0]) == 26
    assert rows[2][:3] == ["round1_ssl1", "1", "1"]
    assert res["protocol"] == "bdl" and rows[0][-1] == "protocol" and rows[2][-1] == "bdl"  # which scored it


def test_evaluate_with_target_statistics(chain, tiny_demo):
    """--target-bn: M0 with the target train frames' BatchNorm statistics scores otherwise than as saved."""
    scores = {}
    for name, extra in (("saved", []), ("target_bn", ["--target-bn"])):
        run_stage("evaluate", "--segmenter", chain / "m0.pt", *target_flags(tiny_demo), "--split", "val",
                  "--threads", "1", *extra, "--out", chain / f"eval_{name}.json")
        scores[name] = json.loads((chain / f"eval_{name}.json").read_text())
    assert "target_bn" not in scores["saved"] and scores["target_bn"]["target_bn"] == "train"
    same = run_stage("evaluate", "--segmenter", chain / "m0.pt", *target_flags(tiny_demo), "--split", "val",
                     "--target-bn", "val", "--out", chain / "never.json", check=False)
    assert same.returncode == 2 and "the statistics would come from the frames scored" in same.stderr
    assert scores["saved"]["pixel_accuracy"] != scores["target_bn"]["pixel_accuracy"]
    # the same model saved by stages/target_bn.py: weights as M0's, statistics as evaluate --target-bn's
    run_stage("target_bn", "--segmenter", chain / "m0.pt", *target_flags(tiny_demo), "--threads", "1",
              "--out", chain / "m0_tbn.pt")
    m0, tbn = (torch.load(chain / n, weights_only=True) for n in ("m0.pt", "m0_tbn.pt"))
    assert tbn["target_bn"]["split"] == "train" and tbn["arch"] == m0["arch"]
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    assert all(torch.equal(v, m0["model"][k]) for k, v in tbn["model"].items() if not k.endswith(statistics))
    assert any(not torch.equal(v, m0["model"][k]) for k, v in tbn["model"].items() if k.endswith("running_mean"))
    run_stage("evaluate", "--segmenter", chain / "m0_tbn.pt", *target_flags(tiny_demo), "--split", "val",
              "--threads", "1", "--out", chain / "eval_tbn_saved.json")
    saved = json.loads((chain / "eval_tbn_saved.json").read_text())
    assert saved["per_class"] == scores["target_bn"]["per_class"]


def test_gallery(chain, tiny_demo):
    from PIL import Image

    run_stage("gallery", "--translated", chain / "translated.h5", *source_flags(tiny_demo), "--count", "3",
              "--scale", "1", "--out", chain / "g.png")
    assert Image.open(chain / "g.png").size == (3 * 64 + 4, 3 * 32 + 4)
    run_stage("gallery", "--pseudo", chain / "pseudo.h5", *target_flags(tiny_demo), "--out", chain / "gp.png")


def test_translator_domain_bn(chain, tiny_demo, tmp_path):
    """--domain-bn: the perceptual loss reads each look through M with that domain's BatchNorm statistics, so its
    first step's value is not the one of M as saved (same seed, same batches)."""
    per = {}
    for name, extra in (("saved", []), ("domain", ["--domain-bn"])):
        proc = run_stage("train_translator", *source_flags(tiny_demo), *target_flags(tiny_demo), "--segmenter",
                         chain / "m0.pt", "--ngf", "4", "--n-blocks", "1", "--ndf", "4", "--iterations", "1",
                         "--batch-size", "2", "--threads", "1", "--log-every", "1", *extra,
                         "--out", tmp_path / f"{name}.pt", "--losses", tmp_path / f"{name}.tsv")
        assert ("re-estimated on the source and on the target frames" in proc.stderr) == bool(extra)
        header, row = (tmp_path / f"{name}.tsv").read_text().splitlines()[:2]
        per[name] = dict(zip(header.split("\t"), row.split("\t")))
    assert per["saved"]["gan"] == per["domain"]["gan"]  # same generator, same batches: only M's statistics differ
    assert per["saved"]["per"] != per["domain"]["per"]


def test_training_never_opens_target_train_labels(tiny_demo, tmp_path, monkeypatch, chain):
    """Adaptation stages run in-process with every label read recorded."""
    import importlib.util

    from bdl.data import readers

    opened = []
    for name in ("decode_cityscapes_ids", "_read_index_png"):
        original = getattr(readers, name)
        monkeypatch.setattr(readers, name, lambda p, _o=original: (opened.append(str(p)), _o(p))[1])
    spec = importlib.util.spec_from_file_location("ts", STAGES / "train_segmenter.py")
    ts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ts)
    for mode, extra in (("adversarial", []), ("ssl", ["--pseudo", chain / "pseudo.h5"])):
        args = ts.get_args_parser().parse_args([str(a) for a in [
            "--mode", mode, "--translated", chain / "translated.h5", *source_flags(tiny_demo),
            *target_flags(tiny_demo), "--init", chain / "m0.pt", *TINY_SEG, "--iterations", "2",
            "--out", tmp_path / f"{mode}.pt", *extra]])
        ts.main(args)
    assert not [p for p in opened if "gtFine" in p], opened


def test_bf16_and_channels_last_path_runs_and_stays_close(chain, tiny_demo, tmp_path):
    """The GPU defaults forced on the CPU: the same code path (autocast, channels_last models and inputs,
    float32 losses) trains, translates and pseudo-labels with finite losses; bf16 predictions stay close.
    oneDNN's bf16 kernels are kept out (test_onednn), so no CPU model turns channels_last off here."""
    fast = ["--bf16", "on", "--channels-last", "on"]
    stages = [run_stage("train_segmenter", "--mode", "adversarial", "--translated", chain / "translated.h5",
              *source_flags(tiny_demo), *target_flags(tiny_demo), "--init", chain / "m0.pt", *TINY_SEG, "--iterations",
              "3", *fast,
              "--out", tmp_path / "adv.pt", "--losses", tmp_path / "adv.tsv", env=NO_BF16_KERNELS)]
    rows = [line.split("\t") for line in (tmp_path / "adv.tsv").read_text().splitlines()[1:]]
    assert rows and all(np.isfinite(float(v)) for row in rows for v in row[1:] if v)
    stages.append(run_stage("train_translator", *source_flags(tiny_demo), *target_flags(tiny_demo), "--segmenter",
                            chain / "m0.pt", "--ngf", "4", "--n-blocks", "1", "--ndf", "4", "--iterations", "2",
                            "--batch-size", "2", "--threads", "1", *fast, "--out", tmp_path / "f.pt",
                            "--losses", tmp_path / "f.tsv", env=NO_BF16_KERNELS))
    stages.append(run_stage("translate", "--translator", tmp_path / "f.pt", *source_flags(tiny_demo), "--batch-size",
                            "5", "--threads", "1", *fast, "--out", tmp_path / "t.h5", env=NO_BF16_KERNELS))
    stages.append(run_stage("pseudo_label", "--segmenter", chain / "adv.pt", *target_flags(tiny_demo), "--mode",
                            "classwise", "--threshold", "0.9", "--batch-size", "5", "--threads", "1", *fast,
                            "--out", tmp_path / "p.h5", env=NO_BF16_KERNELS))
    assert not any("channels_last turned off" in proc.stderr for proc in stages)
    with h5py.File(tmp_path / "p.h5") as fast_file, h5py.File(chain / "pseudo.h5") as ref:
        # the labels: the argmax where kept, so a flip of either the class or the threshold test counts
        agree = (fast_file["label"][:] == ref["label"][:]).mean()
        gap = abs(float(fast_file.attrs["coverage"]) - float(ref.attrs["coverage"]))
    assert agree > 0.85 and gap < 0.05
    with h5py.File(tmp_path / "t.h5") as f:
        assert f["images"].dtype == np.uint8 and f["images"].shape[0] == 24
