import csv
import json

import numpy as np

from bdl.data import labels


def _tsv(path):
    rows = [r for r in path.read_text().splitlines() if r and not r.startswith("#")]
    return list(csv.DictReader(rows, delimiter="\t"))


def test_cityscapes_table_matches_cityscapes_scripts(fixtures):
    rows = _tsv(fixtures / "label_maps" / "cityscapes_labelId_to_trainId.tsv")
    for r in rows:
        lid, tid = int(r["id"]), int(r["trainId"])
        if lid < 0:
            continue
        expected = tid if tid != 255 else labels.IGNORE
        assert labels.CITYSCAPES_LUT[lid] == expected, r["name"]
        if tid != 255:
            assert labels.CLASS_NAMES[tid] == r["name"]
            assert tuple(labels.PALETTE[tid]) == tuple(int(c) for c in r["color"].strip("()").split(","))
    assert len([r for r in rows if r["trainId"] not in ("255", "-1")]) == labels.NUM_CLASSES


def test_synthia_table_matches_reference(fixtures):
    for r in _tsv(fixtures / "label_maps" / "synthia_id_to_trainId.tsv"):
        assert labels.SYNTHIA_LUT[int(r["synthia_id"])] == int(r["trainId"]), r["synthia_name"]


def test_eval_subsets_match_bdl(fixtures):
    ref = json.loads((fixtures / "label_maps" / "bdl_eval_subsets.json").read_text())
    assert list(labels.SUBSET_16) == ref["synthia_mIoU16_trainIds"]
    assert list(labels.SUBSET_13) == ref["synthia_mIoU13_trainIds"]
    gta = {int(k): v for k, v in ref["gta5_id_to_trainid_BDL"].items()}
    assert gta == labels.CITYSCAPES_ID_TO_TRAINID


def test_colorize_black_for_ignored():
    lab = np.array([[0, 255], [18, 10]], dtype=np.uint8)
    col = labels.colorize(lab)
    assert tuple(col[0, 1]) == (0, 0, 0)
    assert tuple(col[1, 1]) == (70, 130, 180)
