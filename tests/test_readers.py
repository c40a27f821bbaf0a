import shutil

import numpy as np
import pytest
from PIL import Image

from bdl.data.labels import CITYSCAPES_LUT
from bdl.data.readers import (
    DataError,
    DatasetSpec,
    check_samples,
    cityscapes_samples,
    decode_cityscapes_ids,
    decode_synthia,
    gta5_samples,
    list_samples,
    read_image,
    synthia_samples,
)

CITY = "cityscapes_mmseg"
FRAME = "frankfurt_000000_000294"


def test_cityscapes_fixture(fixtures):
    root = fixtures / CITY
    samples = cityscapes_samples(root, "val")
    assert [s.name for s in samples] == [FRAME]
    img = read_image(samples[0].image)
    assert img.dtype == np.uint8 and img.shape == (128, 256, 3)
    raw = np.array(Image.open(samples[0].label))
    assert sorted(np.unique(raw).tolist()) == [1, 2, 3, 4, 7, 8, 11, 13, 17, 20, 21, 23, 24, 26]
    train_ids = decode_cityscapes_ids(samples[0].label)
    shipped = np.array(Image.open(root / "gtFine/val/frankfurt" / f"{FRAME}_gtFine_labelTrainIds.png"))
    agree = (train_ids == shipped).mean()
    assert 0.995 < agree < 1.0  # 99.77%: the shipped file was resized separately (fixture README)
    assert set(np.unique(train_ids).tolist()) <= set(range(19)) | {255}
    report = check_samples(samples, decode_cityscapes_ids)
    assert report["count"] == 1 and report["sizes"] == {"256x128": 1}


def test_palette_image_becomes_rgb(fixtures):
    path = fixtures / CITY / "demo.png"
    assert Image.open(path).mode == "P"
    img = read_image(path)
    assert img.shape == (512, 1024, 3) and img.dtype == np.uint8


def test_synthia_fixture_reads_16bit_channel0(fixtures):
    root = fixtures / "synthia_format_datumaro_fixture"
    samples = synthia_samples(root)
    assert len(samples) == 4
    label = next(s.label for s in samples if s.label.parts[-2:] == ("Omni_F", "000000.png"))
    assert np.asarray(Image.open(label)).max() == 0  # Pillow's view: zeros, the trap the reader avoids
    ids = decode_synthia(label)
    # classes [1, 1, 2, 2, 3] are sky, sky, building, building, road
    assert ids.ravel().tolist() == [10, 10, 2, 2, 0]


def _gta5_root(tmp_path, fixtures, n=2):
    root = tmp_path / "gta5"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    src = fixtures / "fda_gta5_cityscapes_pair" / "gta5_source.png"
    for i in range(1, n + 1):
        shutil.copy(src, root / "images" / f"{i:05d}.png")
        w, h = Image.open(src).size
        ids = np.full((h, w), 7, dtype=np.uint8)  # road
        ids[: h // 2] = 23  # sky
        lab = Image.fromarray(ids, mode="P")
        lab.putpalette([0] * 768)
        lab.save(root / "labels" / f"{i:05d}.png")
    return root


def test_gta5_layout_with_real_frame(tmp_path, fixtures):
    root = _gta5_root(tmp_path, fixtures)
    samples = gta5_samples(root)
    assert [s.name for s in samples] == ["00001", "00002"]
    assert read_image(samples[0].image).shape == (1052, 1914, 3)
    lab = decode_cityscapes_ids(samples[0].label)
    assert set(np.unique(lab).tolist()) == {0, 10}
    (tmp_path / "list.txt").write_text("00002.png\n")
    assert [s.name for s in gta5_samples(root, tmp_path / "list.txt")] == ["00002"]


def test_list_format_and_label_map(tmp_path):
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.array([[7, 26, 0, 5, 5, 5]] * 4, np.uint8)).save(tmp_path / "a_lab.png")
    (tmp_path / "pairs.txt").write_text("a.png a_lab.png\n")
    (tmp_path / "map.tsv").write_text("id\ttrainId\n7\t0\n26\t13\n")
    spec = DatasetSpec("list", str(tmp_path), list_file="pairs.txt", label_map=str(tmp_path / "map.tsv"))
    samples = spec.samples()
    lab = spec.label_decoder()(samples[0].label)
    assert lab[0].tolist() == [0, 13, 255, 255, 255, 255]
    assert list_samples(tmp_path / "pairs.txt", with_labels=False)[0].label is None


def test_demo_pair_goes_through_real_readers(tiny_demo):
    src = gta5_samples(tiny_demo / "source")
    tgt = cityscapes_samples(tiny_demo / "target", "val")
    assert len(src) == 24 and len(tgt) == 8
    for s in (src[0], tgt[0]):
        lab = decode_cityscapes_ids(s.label)
        assert lab.shape == (32, 64) and set(np.unique(lab).tolist()) <= set(range(19))
    assert Image.open(src[0].label).mode == "P"
    assert CITYSCAPES_LUT[np.array(Image.open(tgt[0].label))].max() < 19


def test_target_train_listing_without_labels_names_no_label(tiny_demo):
    assert all(s.label is None for s in cityscapes_samples(tiny_demo / "target", "train", with_labels=False))


# --- bad input: one clear message naming the file ------------------------------------------------

def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="nowhere: GTA5 root not found"):
        gta5_samples(tmp_path / "nowhere")


def test_cityscapes_given_as_gta5(fixtures):
    with pytest.raises(DataError, match="looks like a Cityscapes root"):
        gta5_samples(fixtures / CITY)


def test_gta5_given_as_cityscapes(tmp_path, fixtures):
    root = _gta5_root(tmp_path, fixtures, 1)
    with pytest.raises(DataError, match="looks like a GTA5 root"):
        cityscapes_samples(root, "train")


def test_empty_split(tmp_path):
    (tmp_path / "leftImg8bit" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no"):
        cityscapes_samples(tmp_path, "train")


def test_image_without_label(tmp_path, fixtures):
    root = _gta5_root(tmp_path, fixtures, 2)
    (root / "labels" / "00002.png").unlink()
    with pytest.raises(DataError, match=r"00002.png: label file not found"):
        check_samples(gta5_samples(root), decode_cityscapes_ids)


def test_size_mismatch(tmp_path, fixtures):
    root = _gta5_root(tmp_path, fixtures, 1)
    Image.fromarray(np.zeros((10, 10), np.uint8), mode="L").save(root / "labels" / "00001.png")
    with pytest.raises(DataError, match=r"00001.png: label is 10x10 but image 00001.png is 1914x1052"):
        check_samples(gta5_samples(root), decode_cityscapes_ids)


def test_label_ids_outside_table(tmp_path, fixtures):
    root = _gta5_root(tmp_path, fixtures, 1)
    Image.fromarray(np.full((1052, 1914), 77, np.uint8), mode="L").save(root / "labels" / "00001.png")
    with pytest.raises(DataError, match=r"label ids \[77\] outside the label table"):
        check_samples(gta5_samples(root), decode_cityscapes_ids)


def test_truncated_and_empty_png(tmp_path, fixtures):
    root = _gta5_root(tmp_path, fixtures, 2)
    data = (root / "images" / "00001.png").read_bytes()
    (root / "images" / "00001.png").write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match=r"00001.png: cannot decode image"):
        check_samples(gta5_samples(root), decode_cityscapes_ids)
    (root / "images" / "00001.png").write_bytes(data)
    (root / "labels" / "00002.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"00002.png: empty file"):
        check_samples(gta5_samples(root), decode_cityscapes_ids)
