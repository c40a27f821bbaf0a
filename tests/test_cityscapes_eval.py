"""Our scores against the field's own tool: cityscapesscripts' pixel-level evaluation of predict's labelId
PNGs gives the class IoUs and mIoU of our evaluate on the demo val set.

Once as a user would run it (its command line on ``predict --formats labelIds``), and in-process through its
args object for every model of the tiny run and for the NaN conventions (there only the ``*_labelIds.png``
files of the prediction folder are offered to its file matching: predict's ``_trainIds``/``_color`` PNGs
match its ``<city>_<seq>_<frame>*.png`` pattern too, and it stops on a second match).
"""

import copy
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import run_stage
from PIL import Image

from bdl.data.labels import CITYSCAPES_ID_TO_TRAINID, CLASS_NAMES


@pytest.fixture(scope="module")
def cs_eval():
    return pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling",
                               reason="cityscapesscripts is not installed (it is in the test extras: "
                                      "pip install -e '.[test]')")


def official_scores(cs_eval, predictions, ground_truth: list[str]) -> dict:
    args = copy.copy(cs_eval.args)
    args.evalInstLevelScore, args.JSONOutput, args.quiet = False, False, True
    args.predictionPath = str(predictions)
    args.predictionWalk = [(root, [f for f in files if f.endswith("_labelIds.png")])
                           for root, _, files in os.walk(predictions)]
    found = [cs_eval.getPrediction(args, gt) for gt in ground_truth]
    return cs_eval.evaluateImgLists(found, ground_truth, args)


# every model of the tiny run: after a few iterations m0 predicts one or two classes, the later ones more
@pytest.mark.parametrize("model", ["m0", "round1/adv", "round1/ssl1", "oracle"])
def test_cityscapesscripts_agrees_with_evaluate_on_the_demo_val_set(finished_run, tmp_path, cs_eval, model):
    _, results = finished_run
    target = results / "data" / "target"
    run_stage("predict", "--segmenter", results / model / "segmenter.pt", "--images", target / "leftImg8bit" / "val",
              "--label-ids", "--threads", "1", "--out", tmp_path / "pred")
    ground_truth = sorted(str(p) for p in (target / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))
    assert len(ground_truth) == 6
    theirs = official_scores(cs_eval, tmp_path / "pred", ground_truth)
    ours = json.loads((results / model / "eval.json").read_text())
    for name in CLASS_NAMES:
        score = theirs["classScores"][name]
        if ours["per_class"][name] is None:
            assert np.isnan(score), name
        else:
            assert abs(100 * score - ours["per_class"][name]) < 0.01, name
    assert abs(100 * theirs["averageScoreClasses"] - ours["miou"]) < 0.01


def test_the_official_command_line_on_predict_s_label_ids(finished_run, tmp_path, cs_eval):
    _, results = finished_run
    target = results / "data" / "target"
    dataset = tmp_path / "cityscapes"  # a copy: the script writes its result file into the dataset folder
    shutil.copytree(target / "gtFine" / "val", dataset / "gtFine" / "val")
    run_stage("predict", "--segmenter", results / "oracle" / "segmenter.pt", "--images",
              target / "leftImg8bit" / "val", "--formats", "labelIds", "--threads", "1", "--out", tmp_path / "pred")
    # csEvalPixelLevelSemanticLabeling's own main, as its command runs it, with one thing put back: its
    # instance-level score calls np.in1d, which numpy 2.4 removed (cityscapesscripts 2.3.0 crashes without it)
    command = ("import numpy; numpy.in1d = numpy.in1d if hasattr(numpy, 'in1d') else "
               "lambda a, b, **k: numpy.isin(a, b, **k).ravel(); "
               "from cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling import main; main()")
    proc = subprocess.run([sys.executable, "-c", command], capture_output=True, text=True, cwd=tmp_path,
                          env=os.environ | {"CITYSCAPES_DATASET": str(dataset),
                                            "CITYSCAPES_RESULTS": str(tmp_path / "pred")})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    theirs = json.loads((dataset / "evaluationResults" / "resultPixelLevelSemanticLabeling.json").read_text())
    ours = json.loads((results / "oracle" / "eval.json").read_text())
    assert abs(100 * theirs["averageScoreClasses"] - ours["miou"]) < 0.01
    assert 0 <= theirs["averageScoreInstClasses"] <= 1  # the demo's instanceIds gave it instances to score
    for name in CLASS_NAMES:
        if ours["per_class"][name] is not None:
            assert abs(100 * theirs["classScores"][name] - ours["per_class"][name]) < 0.01, name


def test_both_leave_out_only_classes_absent_from_ground_truth_and_prediction(tmp_path, cs_eval):
    """The NaN convention, where the two could differ: a class absent from the ground truth but predicted
    scores 0 in both (the official false positives count only pixels whose ground truth is evaluated), a
    class absent from both is NaN in both and left out of both means."""
    import torch

    from bdl.data.labels import TRAINID_TO_LABELID
    from bdl.metrics import ConfusionMatrix

    gt = np.zeros((8, 8), dtype=np.uint8)  # road
    gt[:, 4:] = 255  # ignored: what is predicted there counts for neither
    pred = np.zeros((8, 8), dtype=np.uint8)
    pred[0, 0] = 13  # car, absent from the ground truth: a false positive
    pred[:, 6] = 11  # person, on ignored pixels only: absent from both as far as either score sees
    (tmp_path / "gt" / "x").mkdir(parents=True)
    (tmp_path / "pred").mkdir()
    Image.fromarray(TRAINID_TO_LABELID[gt]).save(tmp_path / "gt" / "x" / "x_000000_000001_gtFine_labelIds.png")
    Image.fromarray(TRAINID_TO_LABELID[pred]).save(tmp_path / "pred" / "x_000000_000001_labelIds.png")
    theirs = official_scores(cs_eval, tmp_path / "pred", [str(next((tmp_path / "gt").rglob("*.png")))])
    cm = ConfusionMatrix()
    cm.update(torch.from_numpy(gt), torch.from_numpy(pred))
    ours = cm.summary()
    assert TRAINID_TO_LABELID[255] not in CITYSCAPES_ID_TO_TRAINID  # the ignored pixels stay ignored there
    assert theirs["classScores"]["car"] == 0 and ours["per_class"]["car"] == 0
    assert np.isnan(theirs["classScores"]["person"]) and ours["per_class"]["person"] is None
    assert abs(100 * theirs["averageScoreClasses"] - ours["miou"]) < 1e-9


def test_scores_agree_where_every_class_is_partly_right(finished_run, tmp_path, cs_eval):
    """The tiny run's models predict few classes; predictions made from the val labels with a third of the
    pixels replaced by random classes give every class of the ground truth an IoU between 0 and 1."""
    import torch

    from bdl.data.labels import TRAINID_TO_LABELID
    from bdl.data.readers import decode_cityscapes_ids
    from bdl.metrics import ConfusionMatrix

    _, results = finished_run
    rng = np.random.default_rng(0)
    val = results / "data" / "target" / "gtFine" / "val"
    cm, ground_truth = ConfusionMatrix(), sorted(val.rglob("*_gtFine_labelIds.png"))
    for gt_path in ground_truth:
        gt = decode_cityscapes_ids(gt_path)
        pred = np.where(rng.random(gt.shape) < 1 / 3, rng.integers(0, 19, gt.shape), np.minimum(gt, 18))
        cm.update(torch.from_numpy(gt), torch.from_numpy(pred))
        stem = gt_path.name[: -len("_gtFine_labelIds.png")]
        Image.fromarray(TRAINID_TO_LABELID[pred.astype(np.uint8)]).save(tmp_path / f"{stem}_labelIds.png")
    theirs, ours = official_scores(cs_eval, tmp_path, [str(p) for p in ground_truth]), cm.summary()
    assert sum(0 < (v or 0) < 100 for v in ours["per_class"].values()) >= 15
    for name in CLASS_NAMES:
        assert abs(100 * theirs["classScores"][name] - ours["per_class"][name]) < 1e-9, name
    assert abs(100 * theirs["averageScoreClasses"] - ours["miou"]) < 1e-9
