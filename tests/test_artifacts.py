"""HDF5 sets: written contiguous so readers map them; older compressed files still read the same."""

import h5py
import numpy as np

from bdl.artifacts import H5Writer, frames


def test_sets_are_mapped_and_compressed_files_still_read(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 4, 6, 3), dtype=np.uint8)
    with H5Writer(tmp_path / "a.h5", 5, {"images": ((4, 6, 3), "uint8")}) as out:
        out.write(0, list("abc"), images=images[:3])
        out.write(3, list("de"), images=images[3:])
    with h5py.File(tmp_path / "a.h5", "r") as f:
        mapped = frames(f, "images")
        assert isinstance(mapped, np.memmap) and np.array_equal(mapped[4], images[4])
        assert [n.decode() for n in f["names"][:]] == list("abcde")
    with h5py.File(tmp_path / "old.h5", "w") as f:
        f.create_dataset("images", data=images, chunks=(1, 4, 6, 3), compression="lzf")
    with h5py.File(tmp_path / "old.h5", "r") as f:
        old = frames(f, "images")
        assert not isinstance(old, np.memmap) and np.array_equal(old[2], images[2])


def test_a_new_set_is_not_filled_with_zeros_before_its_frames_arrive(tmp_path):
    # every frame is written before the file is renamed into place; filling 200 MB with zeros first
    # (HDF5's default with early allocation) would double the writes of a real pseudo-label set
    import os

    frame = np.full((1, 1000, 500), 0.5, dtype=np.float16)
    with H5Writer(tmp_path / "big.h5", 200, {"prob": ((1000, 500), "float16")}) as out:
        out.write(199, ["last"], prob=frame)  # only the last frame: the rest must stay unwritten
    st = os.stat(tmp_path / "big.h5")
    assert st.st_size >= 200 * frame.nbytes  # the space is allocated (readers map it)...
    assert st.st_blocks * 512 < 10 * frame.nbytes  # ...but only the written frame took disk
    with h5py.File(tmp_path / "big.h5", "r") as f:
        assert np.array_equal(frames(f, "prob")[199], frame[0])


def test_batches_go_to_their_rows_and_a_batch_that_does_not_fit_is_refused(tmp_path):
    import pytest

    rng = np.random.default_rng(1)
    pred = rng.integers(0, 19, (6, 3, 5), dtype=np.uint8)
    prob = rng.random((6, 3, 5)).astype(np.float16)
    with H5Writer(tmp_path / "p.h5", 6, {"pred": ((3, 5), "uint8"), "prob": ((3, 5), "float16")}) as out:
        out.write(4, ["e", "f"], pred=pred[4:], prob=prob[4:].astype(np.float32))  # cast to the stored dtype
        out.write(0, list("abcd"), pred=pred[:4], prob=prob[:4])
        with pytest.raises(ValueError, match="rows 5:7 are outside"):  # past the end: would overwrite the next array
            out.write(5, ["x", "y"], pred=pred[:2], prob=prob[:2])
        with pytest.raises(ValueError, match="do not fit"):
            out.write(0, ["a"], pred=pred[0, :2][None], prob=prob[:1])
    with h5py.File(tmp_path / "p.h5", "r") as f:
        assert np.array_equal(f["pred"][:], pred) and np.array_equal(f["prob"][:], prob)
        assert [n.decode() for n in f["names"][:]] == list("abcdef")


def test_an_empty_set_is_written(tmp_path):
    with H5Writer(tmp_path / "e.h5", 0, {"pred": ((3, 5), "uint8")}) as out:
        out.write(0, [], pred=np.zeros((0, 3, 5), np.uint8))
    with h5py.File(tmp_path / "e.h5", "r") as f:
        assert f["pred"].shape == (0, 3, 5) and len(f["names"]) == 0


def test_coded_images_read_back_exactly_and_are_smaller(tmp_path):
    """IMAGE_CODEC is lossless on any pixels (the running sums wrap mod 256 as the differences did), one chunk a
    frame; smooth pictures take a fraction of their raw bytes."""
    from bdl.artifacts import IMAGE_CODEC, DecodedFrames, encode

    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)  # every difference wraps somewhere
    ramp = np.broadcast_to(np.arange(64, dtype=np.uint8)[None, None, :, None] * 4, (3, 48, 64, 3)).copy()
    for name, images in (("noise", noise), ("ramp", ramp)):
        shape = images.shape[1:]
        with H5Writer(tmp_path / f"{name}.h5", 3, {"images": (shape, "uint8", IMAGE_CODEC)}) as out:
            out.write(0, ["a"], images=images[:1])
            out.write(1, ["b", "c"], images=images[1:])
        with h5py.File(tmp_path / f"{name}.h5", "r") as f:
            d = frames(f, "images")
            assert isinstance(d, DecodedFrames) and f["images"].chunks == (1, *shape)
            assert np.array_equal(d[1], images[1]) and np.array_equal(d[0:3], images)
            assert np.array_equal(f["images"][:], encode(f["images"], images))  # stored as differences
            stored = f["images"].id.get_storage_size()
        if name == "ramp":
            assert stored < 0.05 * images.nbytes


def test_rows_of_a_part_file_are_copied_as_stored(tmp_path):
    """Several processes: the rows one wrote to its part file go into the set chunk for chunk."""
    from bdl.artifacts import IMAGE_CODEC

    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (6, 4, 5, 3), dtype=np.uint8)
    arrays = {"images": ((4, 5, 3), "uint8", IMAGE_CODEC)}
    with H5Writer(tmp_path / "part.h5", 6, arrays) as part:
        part.write(3, list("def"), images=images[3:])
    with H5Writer(tmp_path / "set.h5", 6, arrays) as out:
        out.write(0, list("abc"), images=images[:3])
        out.copy_rows(tmp_path / "part.h5", [(3, 3)])
        out.name_rows(3, list("def"))
    with h5py.File(tmp_path / "set.h5", "r") as f:
        assert np.array_equal(frames(f, "images")[:], images) and list(f["names"].asstr()[:]) == list("abcdef")


def test_a_set_of_another_layout_is_refused_saying_what_to_rerun(tmp_path):
    import pytest

    from bdl.artifacts import SET_FORMAT, check_set, set_attrs
    from bdl.errors import BDLError

    with H5Writer(tmp_path / "new.h5", 1, {"label": ((2, 2), "uint8")}, set_attrs("pseudo")) as out:
        out.write(0, ["a"], label=np.zeros((1, 2, 2), np.uint8))
    assert check_set(tmp_path / "new.h5", "pseudo")["set_format"] == SET_FORMAT
    with pytest.raises(BDLError, match="a pseudo-label set, not a translated set"):
        check_set(tmp_path / "new.h5", "translated")
    with h5py.File(tmp_path / "old.h5", "w") as f:  # the layout before: images and labels, no version
        f["images"], f["labels"] = np.zeros((1, 2, 2, 3), np.uint8), np.zeros((1, 2, 2), np.uint8)
    with pytest.raises(BDLError) as refused:
        check_set(tmp_path / "old.h5", "translated")
    message = str(refused.value)
    assert "old.h5: a translated set in an older layout" in message and "rerun" in message
    assert "snakemake --forcerun translate" in message and "\n" not in message
    with h5py.File(tmp_path / "newer.h5", "w") as f:
        f.attrs.update(set_attrs("translated") | {"set_format": SET_FORMAT + 1})
    with pytest.raises(BDLError, match="in a newer layout"):
        check_set(tmp_path / "newer.h5", "translated")
