#!/usr/bin/env python
"""Lossless storage of uint8 RGB frames in an HDF5 set, candidate by candidate: bytes per frame, write and read
speed, on real photographs. The figures behind the choice of ``bdl.artifacts.IMAGE_CODEC`` and the ratio the
disk plan assumes (``bdl.plan.IMAGE_RATIO``).

  python benchmarks/compression.py                                  # ../shared frames
  python benchmarks/compression.py --translator results/demo/round1/translator.pt   # and F's output of them

Frames: the two photographs of ../shared/fixtures/fda_gta5_cityscapes_pair resized to 1280x720 (the paper's
GTA5 training size; bilinear, as source.size resizes), and the real frames of ../shared/realpair_dev at their
own 240x180. With --translator, each frame also goes through that generator (translated sets hold GAN
outputs, noisier than photographs). Every candidate writes the frames one per chunk (one frame is what a
training step reads), then reads them back one by one and checks the pixels are the same.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import h5py  # noqa: E402
import numpy as np  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", default=str(REPO.parent / "shared"), help="the shared fixtures folder")
    p.add_argument("--realpair-frames", type=int, default=120, help="realpair_dev frames to use (0: all)")
    p.add_argument("--repeats", type=int, default=3, help="writes/reads per candidate; the best is kept")
    p.add_argument("--translator", default=None, help="a translator checkpoint: also measure its output")
    p.add_argument("--threads", type=int, default=2)
    return p


def candidates() -> dict:
    """name -> h5py create_dataset keyword arguments (PNG: variable-length bytes, encoded here)."""
    import hdf5plugin

    return {
        "none (contiguous)": {},
        "gzip 1": {"compression": "gzip", "compression_opts": 1},
        "gzip 4": {"compression": "gzip", "compression_opts": 4},
        "lzf": {"compression": "lzf"},
        "blosc lz4 shuffle": dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE)),
        "blosc zstd 1 bitshuffle": dict(hdf5plugin.Blosc(cname="zstd", clevel=1, shuffle=hdf5plugin.Blosc.BITSHUFFLE)),
        "zstd 3": dict(hdf5plugin.Zstd(clevel=3)),
        "blosc2 zstd 1 shuffle": dict(hdf5plugin.Blosc2(cname="zstd", clevel=1,
                                                              filters=hdf5plugin.Blosc2.SHUFFLE)),
        "delta + zstd 3 (bdl.artifacts.IMAGE_CODEC)": "codec",
        "PNG level 1": "png1",
        "PNG level 6": "png6",
    }


def photographs(shared: Path, realpair_frames: int) -> dict:
    from PIL import Image

    pair = shared / "fixtures" / "fda_gta5_cityscapes_pair"
    big = [np.asarray(Image.open(pair / name).convert("RGB").resize((1280, 720), Image.BILINEAR))
           for name in ("gta5_source.png", "cityscapes_target.png")]
    files = sorted((shared / "realpair_dev" / "source_day_gta5layout" / "images").glob("*.png"))
    files += sorted((shared / "realpair_dev" / "target_lowlight_cityscapeslayout" / "leftImg8bit").rglob("*.png"))
    if realpair_frames:
        files = files[:: max(len(files) // realpair_frames, 1)][:realpair_frames]
    small = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    return {"photographs 1280x720 (2 frames)": np.stack(big),
            f"realpair_dev 240x180 ({len(small)} frames)": np.stack(small)}


def translated(frames: np.ndarray, checkpoint: str) -> np.ndarray:
    import torch

    from bdl.artifacts import load_checkpoint
    from bdl.models import build_translator
    from bdl.models.cyclegan import to_gan

    state = load_checkpoint(checkpoint, kind="translator")
    generator, _ = build_translator(state["arch"])
    generator.load_state_dict(state["model"])
    generator.eval()
    out = []
    with torch.no_grad():
        for frame in frames:
            fake = generator(to_gan(torch.from_numpy(frame).permute(2, 0, 1)[None], torch.device("cpu")))
            out.append(((fake + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy())
    return np.stack(out)


def measure(frames: np.ndarray, how, repeats: int, folder: Path) -> tuple[float, float, float]:
    """(bytes per frame of the file, write ms per frame, read ms per frame), best of ``repeats``."""
    import contextlib
    import io

    from PIL import Image

    from bdl.artifacts import IMAGE_CODEC, H5Writer
    from bdl.artifacts import frames as read_frames

    n, shape = len(frames), frames.shape[1:]
    png = isinstance(how, str) and how.startswith("png")
    path = folder / "c.h5"
    writes, reads = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        if how == "codec":  # the stages' own writer and reader
            with H5Writer(path, n, {"images": (shape, "uint8", IMAGE_CODEC)}) as out:
                for i, frame in enumerate(frames):
                    out.write(i, [str(i)], images=frame[None])
        with contextlib.nullcontext() if how == "codec" else h5py.File(path, "w") as f:
            if how == "codec":
                pass
            elif png:
                d = f.create_dataset("images", (n,), dtype=h5py.vlen_dtype(np.uint8))
                for i, frame in enumerate(frames):
                    buf = io.BytesIO()
                    Image.fromarray(frame).save(buf, format="PNG", compress_level=int(how[-1]))
                    d[i] = np.frombuffer(buf.getvalue(), np.uint8)
            else:
                chunks = {"chunks": (1, *shape)} if how else {}
                d = f.create_dataset("images", (n, *shape), dtype="uint8", **chunks, **how)
                for i, frame in enumerate(frames):
                    d[i] = frame
        writes.append(time.perf_counter() - start)
        start = time.perf_counter()
        with h5py.File(path, "r") as f:
            d = read_frames(f, "images") if how == "codec" else f["images"]
            for i in range(n):
                got = np.asarray(Image.open(io.BytesIO(d[i].tobytes()))) if png else d[i]
                if not np.array_equal(got, frames[i]):
                    raise SystemExit(f"{how}: frame {i} did not read back the same")
        reads.append(time.perf_counter() - start)
    return path.stat().st_size / n, 1000 * min(writes) / n, 1000 * min(reads) / n


def main(args):
    import torch

    torch.set_num_threads(args.threads)
    sets = photographs(Path(args.shared), args.realpair_frames)
    if args.translator:
        sets |= {f"F({name}), {Path(args.translator).parent.name}'s F": translated(frames, args.translator)
                 for name, frames in list(sets.items())}
    with tempfile.TemporaryDirectory() as tmp:
        for name, frames in sets.items():
            raw = frames[0].nbytes
            print(f"\n{name}: {raw / 1e6:.3f} MB a frame uncompressed")
            print("| storage | bytes per frame | of uncompressed | write ms/frame | read ms/frame |")
            print("|---|---|---|---|---|")
            for label, how in candidates().items():
                size, write, read = measure(frames, how, args.repeats, Path(tmp))
                print(f"| {label} | {size / 1e6:.3f} MB | {size / raw:.3f} | {write:.2f} | {read:.2f} |", flush=True)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
