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
