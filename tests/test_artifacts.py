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
