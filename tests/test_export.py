"""stages/export_set.py: a translated set exported to the GTA5 layout reads back through our own gta5 reader
and check_data as the same arrays; a pseudo-label set exported as Cityscapes trainId PNGs is the label SSL
trains on; what cannot be exported is refused in one line with nothing written."""

import json

import h5py
import numpy as np
import pytest
from conftest import run_stage
from PIL import Image


def names_of(f):
    return [n.decode() for n in f["names"][:]]


def test_translated_set_round_trips_through_the_gta5_reader(finished_run, tmp_path):
    """The translated images and, beside them, the source labels the set's frames train with."""
    from bdl.artifacts import frames
    from bdl.data.readers import DatasetSpec, read_image
    from bdl.data.translated import recorded_source

    _, results = finished_run
    translated = results / "round1" / "translated.h5"
    run_stage("export_set", translated, "--out", tmp_path / "gta5", "--preview")
    spec = DatasetSpec("gta5", str(tmp_path / "gta5"))
    samples, decode = spec.samples(with_labels=True), spec.label_decoder()
    source = recorded_source(translated)
    with h5py.File(translated) as f:
        names, images = names_of(f), frames(f, "images")[:]
    labels = np.stack([source.label_at(i) for i in range(len(names))])
    assert [s.name for s in samples] == names
    for s, image, label in zip(samples, images, labels):
        assert np.array_equal(read_image(s.image), image), s.name
        assert np.array_equal(decode(s.label), label), s.name
        assert Image.open(s.label).mode == "P"  # as GTA5 ships them
    assert len(list((tmp_path / "gta5" / "preview").glob("*.png"))) == len(names)

    check = tmp_path / "check.json"
    run_stage("check_data", "--source-format", "gta5", "--source-root", tmp_path / "gta5", "--target-format",
              "cityscapes", "--target-root", results / "data" / "target", "--out", check)
    source_counts = json.loads(check.read_text())["source"]
    counts = np.bincount(np.minimum(labels.ravel(), 19), minlength=20)
    assert source_counts["count"] == len(names) and source_counts["class_pixels"] == counts[:19].tolist()
    assert source_counts["ignored_pixels"] == counts[19]


def test_translated_set_keeps_ignored_pixels_ignored(finished_run, tmp_path):
    """The demo source has few ignored pixels; a source label with ignored pixels must come back as 255, and the
    --source-... flags stand in for a source that has moved."""
    import shutil

    from bdl.data.readers import decode_cityscapes_ids

    _, results = finished_run
    moved = tmp_path / "moved"
    shutil.copytree(results / "data" / "source", moved)
    first = sorted((moved / "labels").glob("*.png"))[0]
    with Image.open(first) as img:
        ids = np.asarray(img).copy()
        palette = img.getpalette()
    ids[:, :4] = 0  # labelId 0, unlabeled: trainId 255
    out = Image.fromarray(ids, mode="P")
    out.putpalette(palette)
    out.save(first)
    translated = results / "round1" / "translated.h5"
    run_stage("export_set", translated, "--out", tmp_path / "gta5", "--first", "1", "--source-format", "gta5",
              "--source-root", moved)
    label = decode_cityscapes_ids(tmp_path / "gta5" / "labels" / f"{first.stem}.png")
    assert (label[:, :4] == 255).all() and np.array_equal(label, decode_cityscapes_ids(first))


def test_pseudo_label_set_exports_cityscapes_train_ids(finished_run, tmp_path):
    _, results = finished_run
    pseudo = results / "round1" / "ssl1" / "pseudo.h5"
    run_stage("export_set", pseudo, "--out", tmp_path / "cs", "--first", "5")
    with h5py.File(pseudo) as f:
        names, labels = names_of(f), f["label"][:5]  # the label SSL trained on
    written = sorted((tmp_path / "cs").rglob("*.png"))
    assert len(written) == 5
    ignored = 0
    for name, expected in zip(names, labels):
        city = name.rsplit("_", 2)[0]
        path = tmp_path / "cs" / "gtFine" / "train" / city / f"{name}_gtFine_labelTrainIds.png"
        label = np.asarray(Image.open(path))
        assert np.array_equal(label, expected), name
        assert set(np.unique(label)) <= set(range(19)) | {255}
        ignored += int((label == 255).sum())
    assert ignored > 0  # classwise medians ignore about half the pixels: 255 is really there


def old_sets(folder):
    """A translated and a pseudo-label set in the layout of before (images and labels; pred and prob)."""
    with h5py.File(folder / "old_translated.h5", "w") as f:
        f["images"], f["labels"] = np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 4, 4), np.uint8)
        f["names"] = np.array([b"a"])
    with h5py.File(folder / "old_pseudo.h5", "w") as f:
        f["pred"], f["prob"] = np.zeros((1, 4, 4), np.uint8), np.ones((1, 4, 4), np.float16)
        f["names"] = np.array([b"a"])
        f.attrs["thresholds"] = np.full(19, 0.9)
    return folder / "old_translated.h5", folder / "old_pseudo.h5"


@pytest.mark.parametrize("case", ["target_cache", "checkpoint", "missing", "unknown_name", "empty_selection",
                                  "empty_pseudo_selection", "old_translated", "old_pseudo"])
def test_export_refuses_what_it_cannot_export_in_one_line(finished_run, tmp_path, case):
    _, results = finished_run
    translated, pseudo = results / "round1" / "translated.h5", results / "round1" / "ssl1" / "pseudo.h5"
    old_translated, old_pseudo = old_sets(tmp_path)
    args, needle = {
        "target_cache": ([results / "cache" / "target.h5"], "not a translated or pseudo-label set (it holds images"),
        "checkpoint": ([results / "m0" / "segmenter.pt"], "segmenter.pt: not an HDF5 set"),
        "missing": ([tmp_path / "nope.h5"], "nope.h5: set not found"),
        "unknown_name": ([translated, "--names", "00001", "nosuch"], "no image named nosuch in this set"),
        "empty_selection": ([translated, "--first", "0"], "translated.h5: the selection is empty"),
        "empty_pseudo_selection": ([pseudo, "--first", "0"], "pseudo.h5: the selection is empty"),
        "old_translated": ([old_translated], "old_translated.h5: a translated set in an older layout"),
        "old_pseudo": ([old_pseudo], "old_pseudo.h5: a pseudo-label set in an older layout"),
    }[case]
    proc = run_stage("export_set", *args, "--out", tmp_path / "png", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines[-1].startswith("error: ") and needle in lines[-1], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "png").exists()
