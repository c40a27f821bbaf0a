"""Frames of any size: every model returns its input's size (or its discriminator minimum is known and refused
at parse time), the whole loop runs at odd sizes, and mixed or too-small frames are refused in one line."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import REALPAIR, REPO, need_folder, snakemake, tiny_config
from PIL import Image

from bdl import sizes
from bdl.models import SEGMENTER_BACKBONES, build_segmenter
from bdl.models.cyclegan import PatchDiscriminator, ResnetGenerator
from bdl.models.discriminator import OutputDiscriminator

# odd, even, prime and mixed sides, source-like and target-like aspect ratios
SIZES = [(93, 125), (91, 121), (90, 120), (37, 67), (41, 43), (53, 29), (64, 128), (33, 97)]


@pytest.mark.parametrize("n_down", [1, 2, 3])
def test_generator_returns_the_input_size(n_down):
    g = ResnetGenerator(4, 1, n_down).eval()
    m = g.min_size
    assert m == 2**n_down + 1
    for h, w in SIZES + [(m, m + 6), (13, m)]:
        x = torch.rand(2, 3, h, w) * 2 - 1
        with torch.no_grad():
            y = g(x)
        assert y.shape == x.shape, (n_down, h, w)
    with pytest.raises(RuntimeError):
        g(torch.rand(1, 3, m - 1, 32))


def test_generator_unchanged_where_no_padding_is_needed():
    g = ResnetGenerator(4, 1).eval()
    x = torch.rand(1, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        assert torch.equal(g(x), g.net(x))


@pytest.mark.parametrize("backbone", SEGMENTER_BACKBONES)
def test_segmenter_logits_have_the_input_size(backbone):
    m = build_segmenter(backbone, width=4).eval()
    shapes = SIZES if backbone in ("resnet_mini", "vgg16", "resnet18") else SIZES[:3]  # the deep ones: a few
    for h, w in shapes:
        with torch.no_grad():
            assert m(torch.rand(1, 3, h, w)).shape == (1, 19, h, w), (backbone, h, w)


@pytest.mark.parametrize("make, minimum", [(lambda: OutputDiscriminator(19, 4), sizes.OUTPUT_D_MIN),
                                           (lambda: PatchDiscriminator(4), sizes.PATCH_D_MIN),
                                           (lambda: PatchDiscriminator(4, n_layers=2), 12)])
def test_discriminators_take_any_size_from_their_minimum(make, minimum):
    d = make().eval()
    assert d.min_size == minimum
    channels = d.net[0].in_channels
    for h, w in SIZES + [(minimum, minimum), (minimum, 3 * minimum + 1)]:
        if min(h, w) >= minimum:
            with torch.no_grad():
                out = d(torch.rand(1, channels, h, w))
            assert out.shape[:2] == (1, 1) and min(out.shape[-2:]) >= 1
    with pytest.raises(RuntimeError):
        d(torch.rand(1, channels, minimum - 1, 2 * minimum))


def test_size_refusal_names_the_key():
    cfg = {"rounds": 1, "segmenter": {"crop": None}, "translator": {"crop": None}}
    ok = {"source": ((125, 93), "a.png"), "target": ((121, 91), None)}
    assert sizes.size_refusal(cfg, ok) is None
    msg = sizes.size_refusal(cfg, {"source": ((125, 93), "a.png"), "target": ((40, 30), None)})
    assert msg.startswith("config key 'target.size': 40x30 is smaller than the output-space discriminator's minimum")
    msg = sizes.size_refusal(cfg, {"source": ((125, 20), "/d/a.png"), "target": ((121, 91), None)})
    assert msg.startswith("source frames are 125x20 (/d/a.png)") and "set source.size" in msg
    # a crop large enough makes any frame usable (crops pad with ignored pixels)
    cropped = {"rounds": 1, "segmenter": {"crop": [32, 32]}, "translator": {"crop": [24, 24]}}
    assert sizes.size_refusal(cropped, {"source": ((20, 10), "a.png"), "target": ((20, 10), None)}) is None
    small = {"rounds": 1, "segmenter": {"crop": [32, 32]}, "translator": {"crop": [23, 40]}}
    assert sizes.size_refusal(small, ok).startswith("config key 'translator.crop': 23x40 is smaller than the PatchGAN")
    assert sizes.size_refusal({**cfg, "rounds": 0}, {"source": ((8, 8), "a"), "target": ((8, 8), None)}) is None


def test_whole_loop_at_odd_sizes(tmp_path):
    """The generated pair at its native odd size 125x93 (source, read as is) and the target resized to 121x91:
    every stage runs, and every set has its domain's size."""
    results = tmp_path / "res"
    cfg = tiny_config(results)
    cfg["demo"].update(width=125, height=93)
    cfg["target"] = {"size": [121, 91]}
    path = tmp_path / "odd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    snakemake(path)
    rows = (results / "metrics.tsv").read_text().splitlines()
    assert [r.split("\t")[0] for r in rows[1:]] == ["m0", "round1_adv", "round1_ssl1", "oracle"]
    import h5py

    with h5py.File(results / "round1" / "translated.h5") as f:
        assert f["images"].shape[1:] == (93, 125, 3) and "labels" not in f  # the labels stay the source's
    with h5py.File(results / "round1" / "ssl1" / "pseudo.h5") as f:
        assert f["label"].shape[1:] == (91, 121)
    assert json.loads((results / "data_check.json").read_text())["source"]["sizes"] == {"125x93": 16}


def _dry(tmp_path, cfg, env=None):
    import os

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--dry-run", "--configfile", str(path)],
                          cwd=REPO, capture_output=True, text=True, env=os.environ | (env or {}))


def _one_error(proc):
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return errors[0]


def test_too_small_frames_and_crops_are_refused_at_parse_time(tmp_path):
    base = {"results": str(tmp_path / "res")}
    line = _one_error(_dry(tmp_path, base | {"translator": {"crop": [20, 30]}}))
    assert line == "error: config key 'translator.crop': 20x30 is smaller than the PatchGAN discriminator's " \
                   "minimum of 24x24 pixels"
    line = _one_error(_dry(tmp_path, base | {"target": {"size": [31, 40]}}))
    assert line.startswith("error: config key 'target.size': 31x40 is smaller than the output-space discriminator")
    assert not (tmp_path / "res").exists()


def test_real_frames_too_small_are_named(tmp_path, tiny_demo):
    # the tiny demo's frames are 64x32: fine for the translator's D (24), too small for M's D (32) only if
    # a side is below 32; shrink them to 60x30
    root = tmp_path / "data"
    shutil.copytree(tiny_demo, root)
    for png in (root / "source" / "images").glob("*.png"):
        Image.open(png).resize((60, 30)).save(png)
    cfg = {"results": str(tmp_path / "res"), "source": {"format": "gta5", "root": str(root / "source")},
           "target": {"format": "cityscapes", "root": str(root / "target")}}
    line = _one_error(_dry(tmp_path, cfg))
    first = min((root / "source" / "images").glob("*.png"))
    assert line == (f"error: source frames are 60x30 ({first}), smaller than the output-space discriminator's minimum "
                    "of 32x32 pixels; set source.size (resized on load) or segmenter.crop (padded with ignored "
                    "pixels) to at least 32x32")


def test_a_dry_run_creates_no_results_folder(tmp_path):
    proc = _dry(tmp_path, {"results": str(tmp_path / "a" / "b")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (tmp_path / "a").exists()


def _gta5_copy(tiny_demo, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_demo, root)
    return root


def test_mixed_frame_sizes_are_refused_naming_two_files_and_the_key(tmp_path, tiny_demo):
    root = _gta5_copy(tiny_demo, tmp_path)
    odd = root / "source" / "images" / "00006.png"
    Image.open(odd).resize((70, 40)).save(odd)
    lab = root / "source" / "labels" / "00006.png"
    Image.open(lab).resize((70, 40), Image.NEAREST).save(lab)
    cfg = tiny_config(tmp_path / "res")
    cfg.pop("demo")
    cfg |= {"source": {"format": "gta5", "root": str(root / "source")},
            "target": {"format": "cityscapes", "root": str(root / "target")}}
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = snakemake(path, "--until", "check_data", check=False)
    log = (tmp_path / "res" / "logs" / "check_data.log").read_text().strip().splitlines()[-1]
    assert proc.returncode != 0
    first = min((root / "source" / "images").glob("*.png"))
    assert log == (f"error: frames of different sizes: {first} is 64x32, {odd} is 70x40; batches and on-disk "
                   "sets need one size: set source.size: [W, H] (every frame is resized to it on load)")
    cfg["source"]["size"] = [64, 32]
    path.write_text(yaml.safe_dump(cfg))
    snakemake(path, "--until", "check_data")
    assert json.loads((tmp_path / "res" / "data_check.json").read_text())["source"]["sizes"] == {"64x32": 23,
                                                                                                 "70x40": 1}


@pytest.fixture
def mismatched(tiny_demo, tmp_path):
    """A GTA5-layout source in which one label is not its image's size, as in the real GTA5 release."""
    root = _gta5_copy(tiny_demo, tmp_path)
    bad = root / "source" / "labels" / "00003.png"
    Image.fromarray(np.asarray(Image.open(bad))[:30, :62]).save(bad)  # 62x30 against a 64x32 image
    cfg = tiny_config(tmp_path / "res")
    cfg.pop("demo")
    cfg |= {"source": {"format": "gta5", "root": str(root / "source")},
            "target": {"format": "cityscapes", "root": str(root / "target")}}
    return root, bad, cfg


def test_mismatched_label_error_names_the_file_and_the_key(mismatched, tmp_path):
    root, bad, cfg = mismatched
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = snakemake(path, check=False)
    assert proc.returncode != 0
    log = (tmp_path / "res" / "logs" / "check_data.log").read_text().strip().splitlines()[-1]
    assert log == (f"error: {bad}: label is 62x30 but image 00003.png is 64x32; set source.on_mismatch: skip or "
                   "resize to train without it or with its label resized")
    assert not (tmp_path / "res" / "m0").exists()


@pytest.mark.parametrize("policy", ["skip", "resize"])
def test_mismatched_label_skip_and_resize_complete_and_record_it(mismatched, tmp_path, policy):
    root, bad, cfg = mismatched
    cfg["source"]["on_mismatch"] = policy
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    snakemake(path, *([] if policy == "skip" else ["--until", "train_m0"]))
    res = tmp_path / "res"
    report = json.loads((res / "data_check.json").read_text())["source"]
    action = "skipped" if policy == "skip" else "label resized"
    assert report["mismatched"] == [{"image": str(root / "source" / "images" / "00003.png"), "label": str(bad),
                                     "image_size": "64x32", "label_size": "62x30", "action": action}]
    assert report["count"] == (23 if policy == "skip" else 24)
    assert f"{bad} is 62x30, its image 64x32: {action}" in (res / "logs" / "check_data.log").read_text()
    import h5py

    with h5py.File(res / "cache" / "source.h5") as f:
        names = [n.decode() for n in f["names"][:]]
        assert ("00003" in names) == (policy == "resize") and len(names) == report["count"]
    if policy == "skip":
        with h5py.File(res / "round1" / "translated.h5") as f:
            assert "00003" not in [n.decode() for n in f["names"][:]] and len(f["names"]) == 23
        assert (res / "metrics.tsv").exists()


def test_real_photographs_at_odd_sizes(tmp_path):
    """Real street photographs (240x180 CamVid frames in the GTA5/Cityscapes layouts) resized to odd sizes that
    differ per domain: the loop that died in the translator's cycle loss at 120x90 runs to metrics.tsv."""
    need_folder(REALPAIR, "BDL_REALPAIR")
    names = tmp_path / "first40.txt"
    names.write_text("".join(f"{i:05d}.png\n" for i in range(1, 41)))
    cfg = tiny_config(tmp_path / "res")
    cfg.pop("demo")
    cfg |= {"source": {"format": "gta5", "root": str(REALPAIR / "source_day_gta5layout"), "list_file": str(names),
                       "size": [121, 91]},
            "target": {"format": "cityscapes", "root": str(REALPAIR / "target_lowlight_cityscapeslayout"),
                       "size": [125, 93]}}
    path = tmp_path / "real.yaml"
    path.write_text(yaml.safe_dump(cfg))
    snakemake(path)
    rows = [r.split("\t") for r in (tmp_path / "res" / "metrics.tsv").read_text().splitlines()[1:]]
    assert [r[0] for r in rows] == ["m0", "round1_adv", "round1_ssl1", "oracle"]
    assert all(0 <= float(r[3]) <= 100 for r in rows)
