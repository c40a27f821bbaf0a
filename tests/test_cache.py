"""The decoded image cache: the same pixels, crops and flips as the image files, so the same results;
a cache that does not fit the configured data is refused in one line before anything trains."""

import h5py
import numpy as np
import pytest
import torch
from conftest import run_stage, source_flags, target_flags
from PIL import Image

from bdl.data.cache import cached_set, write_cache
from bdl.data.datasets import Collated, SegmentationDataset, make_loader
from bdl.data.readers import DataError, DatasetSpec


def test_cached_items_equal_the_decoded_files(tiny_demo, tmp_path):
    spec = DatasetSpec("gta5", str(tiny_demo / "source"))
    samples = spec.samples(True)
    write_cache(samples, spec.label_decoder(), [48, 24], tmp_path / "s.h5", {})
    cached = cached_set(tmp_path / "s.h5", samples, [48, 24], True, crop=(32, 16), flip=True, seed=5)
    files = SegmentationDataset(samples, spec.label_decoder(), [48, 24], (32, 16), True, 5)
    for epoch in (0, 1):
        cached.epoch = files.epoch = epoch
        for i in range(len(samples)):
            a, b = cached[i], files[i]
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert cached.samples == samples


@pytest.mark.parametrize("labels", [True, False])
def test_loader_batches_from_the_cache_equal_those_from_the_files(tiny_demo, tmp_path, labels):
    # in order and without augmentation a batch is read as one run of frames (Collated); shuffled or
    # augmented batches go item by item: both must equal the decoded files, the short last batch too
    spec = DatasetSpec("gta5", str(tiny_demo / "source"))
    samples = spec.samples(labels)
    decode = spec.label_decoder() if labels else None
    write_cache(samples, decode, None, tmp_path / "s.h5", {})
    for shuffle, flip in ((False, False), (True, False), (False, True)):
        cached = cached_set(tmp_path / "s.h5", samples, None, labels, flip=flip)
        files = SegmentationDataset(samples, decode, None, flip=flip)
        assert isinstance(cached.__getitems__([3, 4, 5]), Collated) == (not flip)
        batches = list(zip(make_loader(cached, 5, shuffle, 0), make_loader(files, 5, shuffle, 0), strict=True))
        assert len(batches) == 5 and len(batches[-1][0]["index"]) == 4
        for a, b in batches:
            assert a.keys() == b.keys() == ({"image", "index"} | ({"label"} if labels else set()))
            assert all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)


def test_a_cache_that_does_not_fit_is_refused(tiny_demo, tmp_path):
    src, tgt = DatasetSpec("gta5", str(tiny_demo / "source")), DatasetSpec("cityscapes", str(tiny_demo / "target"))
    write_cache(tgt.samples(False), None, None, tmp_path / "t.h5", {})
    with pytest.raises(DataError, match="other images than the 24 listed"):
        cached_set(tmp_path / "t.h5", src.samples(True), None, True)
    with pytest.raises(DataError, match=r"made at size null, this stage needs \[32, 16\]"):
        cached_set(tmp_path / "t.h5", tgt.samples(False), [32, 16], False)
    with pytest.raises(DataError, match="holds no labels"):
        cached_set(tmp_path / "t.h5", tgt.samples(False), None, True)
    with h5py.File(tmp_path / "t.h5") as f:
        assert "labels" not in f and f["images"].shape == (16, 32, 64, 3)


def test_images_of_two_sizes_need_a_size(tiny_demo, tmp_path):
    root = tmp_path / "gta"
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    for name, (w, h) in (("00001.png", (64, 32)), ("00002.png", (60, 32))):
        Image.new("RGB", (w, h)).save(root / "images" / name)
        Image.new("L", (w, h)).save(root / "labels" / name)
    spec = DatasetSpec("gta5", str(root))
    with pytest.raises(DataError, match=r"00002.png: 60x32 \(after resizing\) but 00001.png is 64x32"):
        write_cache(spec.samples(True), spec.label_decoder(), None, tmp_path / "c.h5", {})
    assert not (tmp_path / "c.h5").exists()  # nothing half-written is left
    write_cache(spec.samples(True), spec.label_decoder(), [64, 32], tmp_path / "c.h5", {})


def test_stages_give_the_same_results_with_and_without_the_cache(tiny_demo, tmp_path):
    run_stage("cache_images", "--domain", "source", *source_flags(tiny_demo), "--out", tmp_path / "source.h5")
    run_stage("cache_images", "--domain", "target", *target_flags(tiny_demo), "--out", tmp_path / "target.h5")
    seg = ["--mode", "source", *source_flags(tiny_demo), "--backbone", "resnet_mini", "--width", "8",
           "--batch-size", "4", "--iterations", "3", "--threads", "1"]
    run_stage("train_segmenter", *seg, "--out", tmp_path / "files.pt")
    run_stage("train_segmenter", *seg, "--source-cache", tmp_path / "source.h5", "--out", tmp_path / "cached.pt")
    a, b = (torch.load(tmp_path / f"{n}.pt", weights_only=True)["model"] for n in ("files", "cached"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    pl = ["--segmenter", tmp_path / "files.pt", *target_flags(tiny_demo), "--mode", "classwise", "--threads", "1"]
    run_stage("pseudo_label", *pl, "--out", tmp_path / "files.h5")
    run_stage("pseudo_label", *pl, "--target-cache", tmp_path / "target.h5", "--out", tmp_path / "cached.h5")
    with h5py.File(tmp_path / "files.h5") as f, h5py.File(tmp_path / "cached.h5") as g:
        for key in ("label", "names"):
            assert np.array_equal(f[key][:], g[key][:])
        assert np.array_equal(f.attrs["thresholds"], g.attrs["thresholds"])
    # the target's cache given for the source: one line, exit 2, no checkpoint
    proc = run_stage("train_segmenter", *seg, "--source-cache", tmp_path / "target.h5", "--out", tmp_path / "x.pt",
                     check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "other images" in proc.stderr and not (tmp_path / "x.pt").exists()
