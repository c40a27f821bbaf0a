"""stages/export_set.py: a translated set exported to the GTA5 layout reads back through our own gta5 reader
and check_data as the same arrays; a pseudo-label set exported as Cityscapes trainId PNGs is the label SSL
trains on; what cannot be exported is refused in one line with nothing written."""

import json

import h5py
import numpy as np
import pytest
from conftest import run_stage
from PIL import Image

from bdl.pseudo import apply_thresholds


def names_of(f):
    return [n.decode() for n in f["names"][:]]


def test_translated_set_round_trips_through_the_gta5_reader(finished_run, tmp_path):
    from bdl.data.readers import DatasetSpec, read_image

    _, results = finished_run
    translated = results / "round1" / "translated.h5"
    run_stage("export_set", translated, "--out", tmp_path / "gta5", "--preview")
    spec = DatasetSpec("gta5", str(tmp_path / "gta5"))
    samples, decode = spec.samples(with_labels=True), spec.label_decoder()
    with h5py.File(translated) as f:
        names, images, labels = names_of(f), f["images"][:], f["labels"][:]
    assert [s.name for s in samples] == names
    for s, image, label in zip(samples, images, labels):
        assert np.array_equal(read_image(s.image), image), s.name
        assert np.array_equal(decode(s.label), label), s.name
        assert Image.open(s.label).mode == "P"  # as GTA5 ships them
    assert len(list((tmp_path / "gta5" / "preview").glob("*.png"))) == len(names)

    check = tmp_path / "check.json"
    run_stage("check_data", "--source-format", "gta5", "--source-root", tmp_path / "gta5", "--target-format",
              "cityscapes", "--target-root", results / "data" / "target", "--out", check)
    source = json.loads(check.read_text())["source"]
    counts = np.bincount(np.minimum(labels.ravel(), 19), minlength=20)
    assert source["count"] == len(names) and source["class_pixels"] == counts[:19].tolist()
    assert source["ignored_pixels"] == counts[19]


def test_translated_set_keeps_ignored_pixels_ignored(finished_run, tmp_path):
    """The demo source has few ignored pixels; a set with 255 in its labels must bring them back as 255."""
    from bdl.data.readers import decode_cityscapes_ids

    _, results = finished_run
    with h5py.File(results / "round1" / "translated.h5") as src, h5py.File(tmp_path / "t.h5", "w") as dst:
        labels = src["labels"][:2]
        labels[:, :4] = 255
        dst["images"], dst["labels"], dst["names"] = src["images"][:2], labels, np.array([b"a", b"b"])
    run_stage("export_set", tmp_path / "t.h5", "--out", tmp_path / "gta5")
    for name, label in zip("ab", labels):
        assert np.array_equal(decode_cityscapes_ids(tmp_path / "gta5" / "labels" / f"{name}.png"), label)


def test_pseudo_label_set_exports_cityscapes_train_ids(finished_run, tmp_path):
    _, results = finished_run
    pseudo = results / "round1" / "ssl1" / "pseudo.h5"
    run_stage("export_set", pseudo, "--out", tmp_path / "cs", "--first", "5")
    with h5py.File(pseudo) as f:
        names, pred, prob = names_of(f), f["pred"][:5], f["prob"][:5]
        # float16, as PseudoLabelSet applies them: the export is the label SSL trained on
        thresholds = np.asarray(f.attrs["thresholds"], dtype=np.float16)
    written = sorted((tmp_path / "cs").rglob("*.png"))
    assert len(written) == 5
    ignored = 0
    for name, p, q in zip(names, pred, prob):
        city = name.rsplit("_", 2)[0]
        path = tmp_path / "cs" / "gtFine" / "train" / city / f"{name}_gtFine_labelTrainIds.png"
        label = np.asarray(Image.open(path))
        assert np.array_equal(label, apply_thresholds(p, q, thresholds)), name
        assert set(np.unique(label)) <= set(range(19)) | {255}
        ignored += int((label == 255).sum())
    assert ignored > 0  # classwise medians ignore about half the pixels: 255 is really there


@pytest.mark.parametrize("case", ["target_cache", "checkpoint", "missing", "unknown_name", "empty_selection",
                                  "empty_pseudo_selection"])
def test_export_refuses_what_it_cannot_export_in_one_line(finished_run, tmp_path, case):
    _, results = finished_run
    translated, pseudo = results / "round1" / "translated.h5", results / "round1" / "ssl1" / "pseudo.h5"
    args, needle = {
        "target_cache": ([results / "cache" / "target.h5"], "not a translated or pseudo-label set (it holds images"),
        "checkpoint": ([results / "m0" / "segmenter.pt"], "segmenter.pt: not an HDF5 set"),
        "missing": ([tmp_path / "nope.h5"], "nope.h5: set not found"),
        "unknown_name": ([translated, "--names", "00001", "nosuch"], "no image named nosuch in this set"),
        "empty_selection": ([translated, "--first", "0"], "translated.h5: the selection is empty"),
        "empty_pseudo_selection": ([pseudo, "--first", "0"], "pseudo.h5: the selection is empty"),
    }[case]
    proc = run_stage("export_set", *args, "--out", tmp_path / "png", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines[-1].startswith("error: ") and needle in lines[-1], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "png").exists()
