"""stages/predict.py: a trained M on new images (no labels), the same argmax as the evaluation, Cityscapes
labelId output that maps back to the same classes, and bad inputs refused in one line."""

import numpy as np
import pytest
import torch
from conftest import run_stage
from PIL import Image

from bdl.data.labels import CITYSCAPES_LUT, colorize


def test_predict_gives_evaluate_s_argmax_and_label_ids(finished_run, tmp_path):
    from bdl.data.datasets import SegmentationDataset
    from bdl.data.readers import DatasetSpec
    from bdl.loops.inference import evaluate_set
    from bdl.models import load_segmenter

    _, results = finished_run
    model_path = results / "m0" / "segmenter.pt"
    val = results / "data" / "target" / "leftImg8bit" / "val"
    run_stage("predict", "--segmenter", model_path, "--images", val, "--label-ids", "--threads", "1",
              "--out", tmp_path / "pred")
    spec = DatasetSpec("cityscapes", str(results / "data" / "target"), split="val")
    samples = spec.samples(with_labels=True)
    _, kept, _ = evaluate_set(load_segmenter(model_path), SegmentationDataset(samples, None), torch.device("cpu"),
                              keep_predictions=len(samples), decode=spec.label_decoder())
    assert len(kept) == len(samples) == 6
    for (name, expected, _), sample in zip(kept, samples):
        stem = tmp_path / "pred" / sample.image.parent.name / sample.image.stem
        train_ids = np.asarray(Image.open(f"{stem}_trainIds.png"))
        assert np.array_equal(train_ids, expected), name
        assert np.array_equal(CITYSCAPES_LUT[np.asarray(Image.open(f"{stem}_labelIds.png"))], expected)
        assert np.array_equal(np.asarray(Image.open(f"{stem}_color.png").convert("RGB")), colorize(expected))


def test_predict_takes_any_size_and_a_list(finished_run, tmp_path):
    _, results = finished_run
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    for name, (h, w) in {"a": (37, 101), "b": (93, 125)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp_path / "in" / f"{name}.jpg")
    (tmp_path / "list.txt").write_text("in/b.jpg\nin/a.jpg\n")
    run_stage("predict", "--segmenter", results / "m0" / "segmenter.pt", "--images", tmp_path / "list.txt",
              "--size", "64", "32", "--threads", "1", "--out", tmp_path / "pred")
    assert np.asarray(Image.open(tmp_path / "pred" / "a_trainIds.png")).shape == (37, 101)
    assert np.asarray(Image.open(tmp_path / "pred" / "b_trainIds.png")).shape == (93, 125)
    assert not (tmp_path / "pred" / "a_labelIds.png").exists()
    run_stage("predict", "--segmenter", results / "m0" / "segmenter.pt", "--images", tmp_path / "list.txt",
              "--formats", "labelIds", "--threads", "1", "--out", tmp_path / "ids")
    assert sorted(p.name for p in (tmp_path / "ids").iterdir()) == ["a_labelIds.png", "b_labelIds.png"]


@pytest.mark.parametrize("case", ["missing", "empty", "list_names_missing_file"])
def test_predict_refuses_bad_input_in_one_line(finished_run, tmp_path, case):
    _, results = finished_run
    where, needle = tmp_path / "nope", "no such folder or list file"
    if case == "empty":
        where.mkdir()
        needle = "no .png/.jpg/.jpeg images found"
    elif case == "list_names_missing_file":
        where = tmp_path / "list.txt"
        where.write_text("gone.png\n")
        needle = "gone.png, which is not a file"
    proc = run_stage("predict", "--segmenter", results / "m0" / "segmenter.pt", "--images", where,
                     "--out", tmp_path / "pred", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines[-1].startswith("error: ") and needle in lines[-1], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "pred").exists()
