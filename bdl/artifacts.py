"""On-disk artifacts: checkpoints, HDF5 sets, JSON records. Everything is written under a temporary
name and renamed when complete, so a killed job never leaves a file that looks finished.

torch is imported inside the checkpoint functions only: the figure and table stages use this module too,
and skip its ~1.3 s import."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import hdf5plugin  # noqa: F401  (registers the zstd filter of the compressed sets with HDF5, for every reader: ~15 ms)
import numpy as np

from bdl.errors import BDLError

if TYPE_CHECKING:
    import torch


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary sibling of ``path``; on success it replaces ``path``, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(o):
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if hasattr(o, "tolist"):  # numpy arrays and torch tensors
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o)}")


def save_checkpoint(path, state: dict) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path, kind: str | None = None) -> dict:
    """Load with ``weights_only=True``: a file carrying code is refused, never executed."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise BDLError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # whatever torch raises (UnpicklingError, KeyError, BadZipFile...), the file is unusable
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BDLError(f"{path}: not a loadable bdl checkpoint ({first[:160]})") from None
    if not isinstance(state, dict) or "model" not in state or "kind" not in state:
        raise BDLError(f"{path}: not a bdl checkpoint (no 'model'/'kind' entries)")
    if kind is not None and state["kind"] != kind:
        raise BDLError(f"{path}: a {state['kind']} checkpoint, expected a {kind}")
    return state


def read_state_dict(path) -> dict:
    """A weights file: a plain state dict, or a bdl checkpoint's ``model``; never unpickled, mapped lazily."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise BDLError(f"{path}: backbone weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # not a torch file, or one that needs pickle: refused either way
        raise BDLError(f"{path}: not a loadable state dict ({type(exc).__name__}: "
                       f"{str(exc).splitlines()[0][:120]})") from None
    state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise BDLError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state


def load_weights(module: torch.nn.Module, state_dict: dict, path, what: str = "model") -> None:
    try:
        module.load_state_dict(state_dict)
    except RuntimeError as exc:
        detail = str(exc).splitlines()[0]
        raise BDLError(f"{path}: {what} weights do not fit this architecture ({detail[:160]})") from None


# The layout version of the sets the loop writes (attribute ``set_format``): translated sets hold images only
# (their labels are the source's), delta-coded and compressed; pseudo-label sets hold the label alone. A set of
# another version is refused with one line saying to rerun the job that made it.
SET_FORMAT = 2
SET_STAGES = {"translated": "translate (or import_translated)", "pseudo": "pseudo_label"}
SET_NAMES = {"translated": "translated", "pseudo": "pseudo-label"}

# Stored images: each frame one chunk, each pixel's difference from its left neighbour (mod 256) compressed with
# zstd, level 3 (hdf5plugin's filter). Chosen by benchmarks/compression.py on real photographs (docs/benchmarks.md):
# 0.37-0.42 of the raw bytes at 1280x720, near PNG's 0.40 at a fraction of its time, where zstd alone gives 0.57.
IMAGE_CODEC = "delta-zstd"
ZSTD_LEVEL = 3


class H5Writer:
    """Fixed-size HDF5 datasets filled one batch at a time; memory holds one batch, never the set.

    An array given as (shape, dtype) is stored contiguous and uncompressed, so readers can map it straight
    from the file (``frames``): the caches, read by every training step, and the pseudo-label sets. An array
    given as (shape, dtype, IMAGE_CODEC) is stored one chunk per frame, compressed, and read by ``frames`` as
    decoded frames: the translated sets' images, the largest files of a run.
    """

    def __init__(self, path, length: int, arrays: dict, attrs: dict | None = None):
        self.path, self.length = Path(path), length
        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        self.tmp = tmp
        self.file = h5py.File(tmp, "w")
        datasets = {name: _create(self.file, name, length, *spec) for name, spec in arrays.items()}
        self.file.create_dataset("names", (length,), dtype=h5py.string_dtype())
        # one variable-length string write at the end instead of one per batch (each costs ~0.5 ms)
        self._names: list[str] = [""] * length
        for k, v in (attrs or {}).items():
            self.file.attrs[k] = v if isinstance(v, (int, float, str, np.ndarray)) else json.dumps(v)
        self._arrays = datasets

    def write(self, start: int, names, **arrays) -> None:
        end = start + len(names)
        if not 0 <= start <= end <= self.length:
            raise ValueError(f"rows {start}:{end} are outside the {self.length} rows of {self.path}")
        for k, v in arrays.items():
            d = self._arrays[k]
            if tuple(np.shape(v)) != (end - start, *d.shape[1:]):
                raise ValueError(f"rows {start}:{end} of {np.shape(v)} do not fit an array of {d.shape}")
            d[start:end] = encode(d, v)  # h5py casts to the stored dtype
        self._names[start:end] = list(names)

    def set_attr(self, key, value) -> None:
        self.file.attrs[key] = value

    def copy_rows(self, path, runs) -> None:
        """The rows of ``runs`` ((start, count) pairs) of every array from the set at ``path`` (written with the
        same arrays), chunk by chunk as they are stored: nothing is decoded or compressed again."""
        rows = [i for start, count in runs for i in range(start, start + count)]
        with h5py.File(path, "r") as part:
            for key, d in self._arrays.items():
                src = part[key]
                for i in rows:
                    corner = (i,) + (0,) * (d.ndim - 1)
                    mask, chunk = src.id.read_direct_chunk(corner)
                    d.id.write_direct_chunk(corner, chunk, mask)

    def layout(self) -> dict:
        """Where each array's rows lie in the file being written: {name: (file, byte offset, shape, dtype)}, for
        ``SharedRows`` in the other processes of a distributed stage. Its rows are then written there only."""
        self.file.flush()
        return {k: (str(self.tmp), int(d.id.get_offset()), tuple(d.shape), d.dtype.str)
                for k, d in self._arrays.items()}

    def name_rows(self, start: int, names) -> None:
        self._names[start:start + len(names)] = list(names)

    def close(self, ok: bool = True) -> None:
        try:
            if ok:
                self.file["names"][:] = self._names
        except BaseException:
            ok = False
            raise
        finally:
            self.file.close()
            if ok:
                self._ctx.__exit__(None, None, None)
            else:
                self._ctx.__exit__(BDLError, BDLError("aborted"), None)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(ok=exc_type is None)
        return False


class SharedRows:
    """Rows of an ``H5Writer``'s file written through maps of its arrays (``H5Writer.layout``): each process of a
    distributed stage fills its own rows of the one file. The arrays are contiguous and allocated when the file
    is made, and HDF5 never writes their bytes itself (no fill value), so the maps are the only writers.
    The names each process wrote (``names``: (start, names) pairs) go to the writer's process at the end."""

    def __init__(self, layout: dict):
        self.maps = {k: np.memmap(path, dtype=np.dtype(dtype), mode="r+", offset=offset, shape=shape)
                     for k, (path, offset, shape, dtype) in layout.items()}
        self.names: list = []

    def write(self, start: int, names, **arrays) -> None:
        end = start + len(names)
        for k, v in arrays.items():
            m = self.maps[k]
            if tuple(np.shape(v)) != (end - start, *m.shape[1:]):
                raise ValueError(f"rows {start}:{end} of {np.shape(v)} do not fit an array of {m.shape}")
            m[start:end] = v
        self.names.append((start, list(names)))

    def flush(self) -> None:
        for m in self.maps.values():
            m.flush()


def _create(file: h5py.File, name: str, length: int, shape, dtype, codec: str | None = None):
    if codec is None:
        return file.create_dataset(name, (length, *shape), dtype=dtype, dcpl=_early_allocation())
    if codec != IMAGE_CODEC:
        raise ValueError(f"unknown codec {codec!r}")
    d = file.create_dataset(name, (length, *shape), dtype=dtype, chunks=(1, *shape),
                            **hdf5plugin.Zstd(clevel=ZSTD_LEVEL))
    d.attrs["codec"] = codec
    return d


def encode(d, rows: np.ndarray) -> np.ndarray:
    """Rows as ``d`` stores them: under ``IMAGE_CODEC`` each pixel less its left neighbour, mod 256 (HxWxC
    frames: width is the second-last axis)."""
    if d.attrs.get("codec") != IMAGE_CODEC:
        return rows
    rows = np.asarray(rows, dtype=np.uint8)
    return np.diff(rows, axis=-2, prepend=np.zeros_like(rows[..., :1, :]))


def decode(rows: np.ndarray) -> np.ndarray:
    """``encode``'s inverse: running sums along the width, mod 256 (uint8 arithmetic wraps exactly)."""
    return np.cumsum(rows, axis=-2, dtype=np.uint8)


class DecodedFrames:
    """A delta-coded array of a set read as frames: indexing returns decoded numpy arrays."""

    def __init__(self, d):
        self.d, self.shape, self.dtype = d, d.shape, d.dtype

    def __len__(self):
        return len(self.d)

    def __getitem__(self, key):
        return decode(self.d[key])


def _early_allocation():
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    # every frame is written before the file is renamed into place, so writing the fill value first is
    # wasted: 4.3 s and 2 GiB of zeros for a 2,000-frame 1024x512 probability array
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    return dcpl


def frames(f: h5py.File, key: str) -> np.ndarray:
    """A per-image array of an HDF5 set, memory-mapped when it is stored contiguous and uncompressed (as
    ``H5Writer`` writes it without a codec); delta-coded frames as ``DecodedFrames``; otherwise (compressed
    without the delta step) the h5py dataset, read on indexing."""
    d = f[key]
    if d.attrs.get("codec") == IMAGE_CODEC:
        return DecodedFrames(d)
    offset = d.id.get_offset() if d.chunks is None and d.compression is None else None
    if offset is None or d.size == 0:
        return d
    return np.memmap(f.filename, dtype=d.dtype, mode="r", offset=offset, shape=d.shape)


def names_hash(names) -> str:
    """A short fingerprint of an ordered image list, stored so consumers can check they match."""
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def check_set(path, kind: str) -> dict:
    """The attributes of a ``kind`` set ('translated' or 'pseudo') at ``path``, after checking it is one in
    this version's layout (``SET_FORMAT``); an older set is refused, saying which job to rerun."""
    path = Path(path)
    what = SET_NAMES[kind]
    if not path.is_file():
        raise BDLError(f"{path}: {what} set not found")
    try:
        attrs = read_attrs(path)
    except OSError as exc:
        raise BDLError(f"{path}: not an HDF5 set ({exc})") from None
    version, held = attrs.get("set_format"), attrs.get("set_kind")
    if held == kind and version == SET_FORMAT:
        return attrs
    if held not in (None, kind):
        raise BDLError(f"{path}: a {SET_NAMES.get(held, held)} set, not a {what} set")
    age = "an older" if version is None or version < SET_FORMAT else "a newer"
    raise BDLError(f"{path}: a {what} set in {age} layout (set_format {version or 1}; this version reads "
                   f"{SET_FORMAT}); delete it and rerun the job that made it ({SET_STAGES[kind]}), e.g. "
                   f"snakemake --forcerun {kind_rule(kind)}")


def kind_rule(kind: str) -> str:
    return {"translated": "translate", "pseudo": "pseudo_label"}[kind]


def set_attrs(kind: str) -> dict:
    """The attributes that mark a set's kind and layout version (``check_set``)."""
    return {"set_kind": kind, "set_format": SET_FORMAT}


def read_attrs(path) -> dict:
    with h5py.File(path, "r") as f:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
