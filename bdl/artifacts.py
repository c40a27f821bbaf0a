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


class H5Writer:
    """Fixed-size HDF5 datasets filled one batch at a time; memory holds one batch, never the set.

    Every array is stored contiguous and uncompressed, so readers can map it straight from the file
    (``frames``): a training step then reads an image for the cost of a copy. lzf made the demo's files
    ~25% smaller but cost ~0.1 ms per frame to write and, read one frame at a time through h5py, ~0.3 ms
    per frame to read: as much as decoding the PNG it replaced.
    """

    def __init__(self, path, length: int, arrays: dict, attrs: dict | None = None):
        self.path, self.length = Path(path), length
        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        self.tmp = tmp
        self.file = h5py.File(tmp, "w")
        datasets = {name: self.file.create_dataset(name, (length, *shape), dtype=dtype, dcpl=_early_allocation())
                    for name, (shape, dtype) in arrays.items()}
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
            d[start:end] = v  # h5py casts to the stored dtype
        self._names[start:end] = list(names)

    def set_attr(self, key, value) -> None:
        self.file.attrs[key] = value

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


def _early_allocation():
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    # every frame is written before the file is renamed into place, so writing the fill value first is
    # wasted: 4.3 s and 2 GiB of zeros for a 2,000-frame 1024x512 probability array
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    return dcpl


def frames(f: h5py.File, key: str) -> np.ndarray:
    """A per-image array of an HDF5 set, memory-mapped when it is stored contiguous and uncompressed (as
    ``H5Writer`` writes it); otherwise (an older, compressed file) the h5py dataset, read on indexing."""
    d = f[key]
    offset = d.id.get_offset() if d.chunks is None and d.compression is None else None
    if offset is None or d.size == 0:
        return d
    return np.memmap(f.filename, dtype=d.dtype, mode="r", offset=offset, shape=d.shape)


def names_hash(names) -> str:
    """A short fingerprint of an ordered image list, stored so consumers can check they match."""
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def read_attrs(path) -> dict:
    with h5py.File(path, "r") as f:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
