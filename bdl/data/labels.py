"""Label tables: Cityscapes labelId -> trainId, SYNTHIA id -> trainId, class names, palette, subsets.

The numbers are facts of the datasets (cityscapesScripts' labels.py; the SYNTHIA mapping of the BDL
reference code); ``tests/test_labels.py`` checks them against the tables in ``shared/fixtures``.
"""

import numpy as np

IGNORE = 255
NUM_CLASSES = 19

CLASS_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)

PALETTE = np.array([
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
    (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
], dtype=np.uint8)

# Cityscapes labelId -> trainId for the 19 evaluated classes; every other id is ignored.
CITYSCAPES_ID_TO_TRAINID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
    24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
# trainId -> Cityscapes labelId, for writing labels others read (GTA5-layout exports, predictions for the
# Cityscapes scripts); ignored pixels (255) become labelId 0, "unlabeled"
TRAINID_TO_LABELID = np.zeros(256, dtype=np.uint8)
for _label_id, _train_id in CITYSCAPES_ID_TO_TRAINID.items():
    TRAINID_TO_LABELID[_train_id] = _label_id
# trainIds of the classes Cityscapes annotates per instance (person ... bicycle)
INSTANCE_TRAINIDS = tuple(range(11, 19))
# Ids that exist in the Cityscapes label definition (0..33); anything above is not a labelId.
CITYSCAPES_MAX_ID = 33

# SYNTHIA RAND-CITYSCAPES class id -> trainId (ids 16, 18, 20 never occur in SYNTHIA).
SYNTHIA_ID_TO_TRAINID = {
    3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 16: 9, 1: 10,
    10: 11, 17: 12, 8: 13, 18: 14, 19: 15, 20: 16, 12: 17, 11: 18,
}
SYNTHIA_MAX_ID = 22

# BDL's SYNTHIA evaluation subsets: 16 classes drop terrain, truck, train; 13 also drop wall, fence, pole.
SUBSET_16 = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)
SUBSET_13 = (0, 1, 2, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)


def make_lut(mapping: dict[int, int], size: int = 65536) -> np.ndarray:
    """A lookup table of ``size`` entries: mapped ids get their trainId, all others IGNORE."""
    lut = np.full(size, IGNORE, dtype=np.uint8)
    for src, dst in mapping.items():
        lut[src] = dst
    return lut


CITYSCAPES_LUT = make_lut(CITYSCAPES_ID_TO_TRAINID)
SYNTHIA_LUT = make_lut(SYNTHIA_ID_TO_TRAINID)


def colorize(label: np.ndarray) -> np.ndarray:
    """HxW trainIds -> HxWx3 uint8 colours; ignored pixels are black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:NUM_CLASSES] = PALETTE
    return lut[label]
