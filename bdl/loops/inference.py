"""Inference passes over whole sets: translate the source, pseudo-label the target, evaluate on val."""

from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from bdl.artifacts import H5Writer, SharedRows, set_attrs
from bdl.data.labels import IGNORE, NUM_CLASSES
from bdl.data.translated import translated_arrays
from bdl.distributed import World, shard
from bdl.metrics import ConfusionMatrix
from bdl.models.common import strided_logits
from bdl.models.cyclegan import to_gan
from bdl.pseudo import ClasswiseMedian, apply_thresholds, class_thresholds
from bdl.runtime import ComputeFormat
from bdl.training import progress


class _HostWorkQueue:
    """Runs each batch's host-side finishing work (dtype conversions, histograms, HDF5 writes) on one helper
    thread while a GPU computes the next batch; the kernels release the GIL, so that work hides entirely.
    On a CPU the model's threads already fill the cores and there is nothing to hide it behind: the work
    runs in place (measured on the 2-core demo machine, a helper thread only added GIL hand-offs and
    cache contention: median pseudo_label ratio 0.88 with it, 0.89 without, over 24 interleaved rounds).
    At most ``depth`` batches wait (memory stays one batch deep); a failure surfaces at the next submit."""

    def __init__(self, device, depth: int = 2):
        on_gpu = torch.device(device).type == "cuda"
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="bdl-writer") if on_gpu else None
        self.pending, self.depth = deque(), depth

    def submit(self, fn, *args):
        if self.pool is None:
            fn(*args)
            return
        self.pending.append(self.pool.submit(fn, *args))
        while len(self.pending) > self.depth:
            self.pending.popleft().result()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.pool is None:
            return False
        try:
            while self.pending:
                future = self.pending.popleft()
                if exc_type is None:
                    future.result()
                else:
                    future.cancel()
        finally:
            self.pool.shutdown(wait=True)
        return False


@torch.no_grad()
def translate_set(generator, loader, out_path, attrs: dict, device, size_hw,
                  compute: ComputeFormat | None = None, world: World | None = None) -> int:
    """F over every source image; writes the images (``IMAGE_CODEC``) and names to one HDF5 file. The labels
    stay the source's (``bdl.data.translated.TranslatedSet`` reads them there). With several processes
    (``world``) each translates its share of the batches (``shard_loader``) into the one file."""
    compute = _compute_format(compute, device)
    compute.model(generator).eval()
    n = len(loader.dataset)
    h, w = size_hw
    loader, start = shard_loader(loader, world)
    with SetWriter(out_path, n, translated_arrays(size_hw), attrs | set_attrs("translated"), world) as out, \
            _HostWorkQueue(device) as queue:
        for batch in progress(loader, total=len(loader), desc="translate"):
            with compute.autocast():  # the generator pads odd sizes itself and returns the input's size
                fake = generator(compute.images(to_gan(batch["image"], device))).float()
            images = ((fake + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
            images = images.to("cpu", non_blocking=True)
            names = [loader.dataset.samples[i].name for i in batch["index"].tolist()]
            queue.submit(_write_translated, out, start, names, images, _ready_event(device))
            start += len(names)
    return n


def _compute_format(compute: ComputeFormat | None, device) -> ComputeFormat:
    # callers outside the stages (tests, benchmarks) get plain fp32, the reproducible default
    return compute if compute is not None else ComputeFormat(device, "off", "off")


def _ready_event(device):
    """An event the helper thread waits on before reading a non-blocking device-to-host copy."""
    if device.type != "cuda":
        return None
    event = torch.cuda.Event()
    event.record()
    return event


def _wait(ready) -> None:
    if ready is not None:
        ready.synchronize()


def _write_translated(out, start, names, images, ready):
    _wait(ready)
    out.write(start, names, images=images.numpy())


@torch.no_grad()
def predict(model, images_uint8: torch.Tensor, device, compute: ComputeFormat | None = None, protocol: str = "bdl"):
    """Softmax max-probability and argmax of M for a uint8 batch, at the batch's size (``protocol``: which
    resolution the softmax is taken at, ``probabilities``)."""
    return probabilities(model, images_uint8, images_uint8.shape[-2:], device, compute, protocol).max(1)


@torch.no_grad()
def predict_full_size(model, image_uint8: torch.Tensor, out_hw, device, compute: ComputeFormat | None = None,
                      protocol: str = "bdl"):
    """(max probability, argmax) of M for one 3xHxW uint8 image at ``out_hw``: the original image's size, or its
    label's (the usual protocol scores at the label's own resolution)."""
    prob, pred = probabilities(model, image_uint8.unsqueeze(0), out_hw, device, compute, protocol).max(1)
    return prob[0].cpu(), pred[0].cpu()


def probabilities(model, images_uint8: torch.Tensor, out_hw, device, compute: ComputeFormat | None = None,
                  protocol: str = "bdl") -> torch.Tensor:
    """M's class probabilities (float32, NxCxHxW) at ``out_hw`` for a uint8 batch (bdl.protocol).
    bdl: the logits M upsamples to its input, upsampled again to ``out_hw`` (align_corners=False, skipped at the
    input's size), then the softmax. reference (its evaluation.py and SSL.py): the softmax of the logits at M's
    output stride, those probabilities upsampled once to ``out_hw`` with align_corners=True. Near a class border
    the second mixes two confident distributions into an unsure one, so its pseudo-labels leave borders out."""
    compute = _compute_format(compute, device)
    x = compute.images(images_uint8.to(device, non_blocking=True).float().div_(255))
    out_hw = tuple(int(v) for v in out_hw)
    if protocol == "reference":
        with compute.autocast():
            logits = strided_logits(model, x)
        probs = F.softmax(logits.float(), 1)
        if tuple(probs.shape[-2:]) == out_hw:  # an FCN-8s's own output is at the input's size already
            return probs
        return F.interpolate(probs, size=out_hw, mode="bilinear", align_corners=True)
    if protocol != "bdl":
        raise ValueError(f"protocol '{protocol}' is not bdl or reference")
    with compute.autocast():
        logits = model(x)
    logits = logits.float()
    if tuple(logits.shape[-2:]) != out_hw:
        logits = F.interpolate(logits, size=out_hw, mode="bilinear", align_corners=False)
    return F.softmax(logits, 1)


@torch.no_grad()
def pseudo_label_set(model, loader, out_path, mode: str, threshold: float, attrs: dict, device, size_hw,
                     compute: ComputeFormat | None = None, world: World | None = None, protocol: str = "bdl"):
    """Write every target train image's pseudo-label (uint8: its prediction, 255 below its class threshold) and
    the class thresholds: what the SSL step reads, no more.

    One pass predicts and fills the per-class histograms of the float16 max probabilities; from them come the
    class-wise medians and, for either mode, the exact count of pixels each threshold keeps. ``fixed``
    thresholds are known before the pass, which writes the labels itself. ``classwise`` ones only after it: the
    pass writes argmax and probability (3 bytes a pixel) to a scratch file beside the set, and a second pass
    over that file writes the labels (1 byte) and deletes it; the plan counts the scratch at the peak only
    (``bdl.plan``). With several processes (``world``) each predicts its share of the batches into the one file,
    and the histograms are summed before the medians are taken: the thresholds are the 1-process ones exactly.
    ``protocol`` (bdl.protocol): where the softmax is taken (``probabilities``) and which median a class gets.
    """
    from pathlib import Path

    world = world or World()
    compute = _compute_format(compute, device)
    compute.model(model).eval()
    n = len(loader.dataset)
    stats = ClasswiseMedian(NUM_CLASSES, cap=threshold)
    loader, first = shard_loader(loader, world)
    fixed = mode == "fixed"
    known = np.full(NUM_CLASSES, threshold, dtype=np.float64) if fixed else None
    out_path, attrs = Path(out_path), attrs | set_attrs("pseudo") | {"mode": mode, "threshold": threshold}
    scratch = out_path.with_name(f".{out_path.name}.scratch")

    def finish(start, names, prob, pred, ready):
        _wait(ready)
        stats.add(pred, prob)
        if fixed:
            out.write(start, names, label=apply_thresholds(pred.numpy(), prob.numpy(), known.astype(np.float16)))
        else:
            out.write(start, names, pred=pred.numpy(), prob=prob.numpy())

    arrays = pseudo_label_arrays(size_hw) if fixed else scratch_arrays(size_hw)
    with SetWriter(out_path if fixed else scratch, n, arrays, attrs if fixed else {}, world) as out:
        with _HostWorkQueue(device) as queue:
            start = first
            for batch in progress(loader, total=len(loader), desc="pseudo-label"):
                prob, pred = predict(model, batch["image"], device, compute, protocol)
                prob = prob.to(torch.float16).to("cpu", non_blocking=True)
                pred = pred.to(torch.uint8).to("cpu", non_blocking=True)
                names = [loader.dataset.samples[i].name for i in batch["index"].tolist()]
                queue.submit(finish, start, names, prob, pred, _ready_event(device))
                start += len(names)
        world.sum_(torch.from_numpy(stats.hist))  # int64 counts: the sum is exact, whatever the order
        thresholds = class_thresholds(mode, threshold, stats, protocol)
        predicted, kept = stats.predicted(), stats.kept(thresholds)
        counts = {"thresholds": thresholds.astype(np.float64), "kept_pixels": kept, "predicted_pixels": predicted,
                  "coverage": float(kept.sum()) / max(float(predicted.sum()), 1.0)}
        for key, value in counts.items() if fixed else ():
            out.set_attr(key, value)
    if not fixed and world.main:
        try:
            labels_from_scratch(scratch, out_path, thresholds, attrs | counts, size_hw)
        finally:
            scratch.unlink(missing_ok=True)
    return thresholds, kept, predicted


def labels_from_scratch(scratch, out_path, thresholds, attrs: dict, size_hw, rows: int = 64) -> None:
    """The pseudo-label set from a classwise pass's scratch file (argmax and float16 probability): each pixel's
    prediction where its probability reaches its class's float16 threshold, else 255, ``rows`` frames at a time."""
    import h5py

    thresholds16 = np.asarray(thresholds).astype(np.float16)
    with h5py.File(scratch, "r") as f:
        # read, not mapped: a map's pages stay resident as they are touched, and the peak would grow with the set
        pred, prob, names = f["pred"], f["prob"], list(f["names"].asstr()[:])
        with H5Writer(out_path, len(names), pseudo_label_arrays(size_hw), attrs) as out:
            for start in range(0, len(names), rows):
                run = slice(start, min(start + rows, len(names)))
                out.write(start, names[run], label=apply_thresholds(pred[run], prob[run], thresholds16))


def pseudo_label_arrays(size_hw) -> dict:
    """The per-image array of a pseudo-label set: the label alone, uint8, stored uncompressed (mapped by the SSL
    step's reader; its bytes are the plan's exactly)."""
    return {"label": (tuple(size_hw), "uint8")}


def scratch_arrays(size_hw) -> dict:
    """The per-image arrays of a classwise pass's scratch file: argmax and its float16 probability."""
    return {"pred": (tuple(size_hw), "uint8"), "prob": (tuple(size_hw), "float16")}


@torch.no_grad()
def evaluate_set(model, dataset, device, keep_predictions: int = 0, decode=None, thresholds=None,
                 compute: ComputeFormat | None = None, world: World | None = None, protocol: str = "bdl"):
    """Confusion matrix of M on labelled target images at the label's own resolution.

    The image may be resized for the model (by ``dataset``); M's output is upsampled back to the original label
    size, the usual protocol (BDL predicts at 1024x512 and scores at 2048x1024), as ``protocol`` does it
    (``probabilities``).
    With ``thresholds`` (those M used for its pseudo-labels) it also measures what pseudo-labels of M
    would be on these labelled images: per predicted class, pixels kept and pixels kept correctly.
    With several processes (``world``) each scores a contiguous share of the frames; the counts are summed and
    the kept predictions gathered in frame order, on every rank.
    """
    world = world or World()
    compute = _compute_format(compute, device)
    compute.model(model).eval()
    cm = ConfusionMatrix()
    kept = []
    pl = {"predicted": np.zeros(NUM_CLASSES, np.int64), "kept": np.zeros(NUM_CLASSES, np.int64),
          "correct": np.zeros(NUM_CLASSES, np.int64)}
    frames = shard(len(dataset), 1, world)
    for i in progress(frames, total=len(frames), desc="evaluate"):
        item = dataset[i]
        full = torch.from_numpy(decode(dataset.samples[i].label).astype(np.int64))
        prob, pred = predict_full_size(model, item["image"], full.shape, device, compute, protocol)
        cm.update(full, pred)
        if thresholds is not None:
            valid = (full != IGNORE).numpy()
            p, g = pred.numpy()[valid], full.numpy()[valid]
            # the rule pseudo_label_set applies, on the same float16 precision it stores
            keep = apply_thresholds(p, prob.numpy()[valid].astype(np.float16), thresholds.astype(np.float16)) != IGNORE
            pl["predicted"] += np.bincount(p, minlength=NUM_CLASSES)[:NUM_CLASSES]
            pl["kept"] += np.bincount(p[keep], minlength=NUM_CLASSES)[:NUM_CLASSES]
            pl["correct"] += np.bincount(p[keep & (p == g)], minlength=NUM_CLASSES)[:NUM_CLASSES]
        if len(kept) < keep_predictions:
            kept.append((dataset.samples[i].name, pred.numpy().astype(np.uint8), full.numpy().astype(np.uint8)))
    if world.distributed:
        world.sum_(cm.mat)
        for counts in pl.values():
            world.sum_(torch.from_numpy(counts))
        kept = [k for part in world.gather_objects(kept) for k in part][:keep_predictions]
    return cm, kept, (pl if thresholds is not None else None)


def shard_loader(loader, world: World | None):
    """(loader, first row): the loader itself, or with several processes one over this rank's contiguous run of
    whole batches (``bdl.distributed.shard``), so each frame meets the model in the batch it would have met."""
    if world is None or not world.distributed:
        return loader, 0
    from torch.utils.data import DataLoader

    rows = shard(len(loader.dataset), loader.batch_size, world)
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=rows, num_workers=loader.num_workers,
                      collate_fn=loader.collate_fn, pin_memory=loader.pin_memory), rows.start


class SetWriter:
    """An HDF5 set written by one process or several: rank 0 holds the ``H5Writer``; with more processes each writes
    its rows through ``SharedRows`` (maps of rank 0's file), and at the end rank 0 takes their names and renames the
    complete file into place. Compressed arrays cannot be written through maps: there every other rank writes its
    rows to a part file beside the set, whose chunks rank 0 copies in as stored (``H5Writer.copy_rows``) and then
    deletes. Attributes are rank 0's; collectives happen only on success (a failing rank's launcher stops the
    others)."""

    def __init__(self, path, length: int, arrays: dict, attrs: dict, world: World | None):
        self.world = world or World()
        self.path = path
        self.out = H5Writer(path, length, arrays, attrs) if self.world.main else None
        self.rows = self.part = None
        self.coded = any(len(spec) > 2 for spec in arrays.values())  # a codec: rows cannot be written through maps
        if self.world.distributed and self.coded:
            if not self.world.main:
                self.part = H5Writer(self.part_path(self.world.rank), length, arrays)
            self.written: list = []
        elif self.world.distributed:
            self.rows = SharedRows(self.world.broadcast_object(self.out.layout() if self.out else None))

    def part_path(self, rank: int):
        from pathlib import Path

        path = Path(self.path)
        return path.with_name(f".{path.name}.rank{rank}.part")

    def write(self, start: int, names, **arrays) -> None:
        if self.part is not None:
            self.part.write(start, names, **arrays)
            self.written.append((start, list(names)))
            return
        (self.rows or self.out).write(start, names, **arrays)

    def set_attr(self, key, value) -> None:
        if self.out is not None:
            self.out.set_attr(key, value)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.part is not None:
            self.part.close(ok=exc_type is None)
        if exc_type is None and self.world.distributed and self.coded:
            parts = self.world.gather_objects(getattr(self, "written", []))  # the barrier: every part is closed
            if self.out is not None:
                for rank, part in enumerate(parts[1:], 1):
                    self.out.copy_rows(self.part_path(rank), [(start, len(names)) for start, names in part])
                    for start, names in part:
                        self.out.name_rows(start, names)
                    self.part_path(rank).unlink(missing_ok=True)
        elif exc_type is None and self.rows is not None:
            self.rows.flush()
            parts = self.world.gather_objects(self.rows.names)  # also the barrier: every rank's rows are on disk
            if self.out is not None:
                for start, names in (item for part in parts for item in part):
                    self.out.name_rows(start, names)
        if self.out is not None:
            self.out.close(ok=exc_type is None)
        return False
