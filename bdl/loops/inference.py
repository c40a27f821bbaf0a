"""Inference passes over whole sets: translate the source, pseudo-label the target, evaluate on val."""

import numpy as np
import torch
import torch.nn.functional as F

from bdl.artifacts import H5Writer
from bdl.data.labels import IGNORE, NUM_CLASSES
from bdl.loops.translator import to_gan
from bdl.metrics import ConfusionMatrix
from bdl.pseudo import ClasswiseMedian, apply_thresholds
from bdl.training import progress


def _pad_to(x: torch.Tensor, multiple: int):
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    return x, h, w


@torch.no_grad()
def translate_set(generator, loader, out_path, attrs: dict, device, size_hw) -> int:
    """F over every source image; writes images, source labels and names to one HDF5 file."""
    generator.to(device).eval()
    n = len(loader.dataset)
    h, w = size_hw
    start = 0
    with H5Writer(out_path, n, {"images": ((h, w, 3), "uint8"), "labels": ((h, w), "uint8")}, attrs) as out:
        for batch in progress(loader, total=len(loader), desc="translate"):
            x, h0, w0 = _pad_to(to_gan(batch["image"], device), 4)  # two stride-2 steps need /4 sizes
            fake = generator(x)[..., :h0, :w0]
            images = ((fake + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            names = [loader.dataset.samples[i].name for i in batch["index"].tolist()]
            out.write(start, names, images=images, labels=batch["label"].numpy().astype(np.uint8))
            start += len(names)
    return n


@torch.no_grad()
def predict(model, images_uint8: torch.Tensor, device):
    """Softmax max-probability and argmax of M for a uint8 batch."""
    logits = model(images_uint8.to(device, non_blocking=True).float().div_(255))
    prob, pred = F.softmax(logits.float(), 1).max(1)
    return prob, pred


@torch.no_grad()
def pseudo_label_set(model, loader, out_path, mode: str, threshold: float, attrs: dict, device, size_hw):
    """Write pred, max prob (float16) and thresholded labels for every target train image.

    Pass 1 predicts and stores; for ``classwise`` a second pass over the stored probabilities (not the
    model) refines the exact medians; the last pass turns pred/prob into labels with 255 ignored.
    """
    model.to(device).eval()
    n = len(loader.dataset)
    h, w = size_hw
    arrays = {"pred": ((h, w), "uint8"), "prob": ((h, w), "float16"), "labels": ((h, w), "uint8")}
    stats = ClasswiseMedian(NUM_CLASSES, cap=threshold)
    kept = np.zeros(NUM_CLASSES, dtype=np.int64)
    predicted = np.zeros(NUM_CLASSES, dtype=np.int64)
    with H5Writer(out_path, n, arrays, attrs) as out:
        start = 0
        for batch in progress(loader, total=len(loader), desc="pseudo-label"):
            prob, pred = predict(model, batch["image"], device)
            prob16 = prob.cpu().numpy().astype(np.float16)
            pred8 = pred.cpu().numpy().astype(np.uint8)
            if mode == "classwise":
                stats.add(pred8, prob16)
            names = [loader.dataset.samples[i].name for i in batch["index"].tolist()]
            out.write(start, names, pred=pred8, prob=prob16)
            start += len(names)
        f = out.file
        chunk = max(1, loader.batch_size)
        if mode == "classwise" and stats.needs_refine():
            for i in range(0, n, chunk):
                stats.refine(f["pred"][i:i + chunk], f["prob"][i:i + chunk])
        thresholds = stats.thresholds() if mode == "classwise" else np.full(NUM_CLASSES, threshold)
        for i in range(0, n, chunk):
            pred8, prob16 = f["pred"][i:i + chunk], f["prob"][i:i + chunk]
            labels = apply_thresholds(pred8, prob16, thresholds.astype(np.float16))
            f["labels"][i:i + chunk] = labels
            predicted += np.bincount(pred8.ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
            kept += np.bincount(labels[labels != IGNORE].ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
        coverage = float(kept.sum()) / max(float(predicted.sum()), 1.0)
        out.set_attr("thresholds", thresholds.astype(np.float64))
        out.set_attr("kept_pixels", kept)
        out.set_attr("predicted_pixels", predicted)
        out.set_attr("coverage", coverage)
    return thresholds, kept, predicted


@torch.no_grad()
def evaluate_set(model, dataset, device, keep_predictions: int = 0, decode=None, thresholds=None):
    """Confusion matrix of M on labelled target images at the label's own resolution.

    The image may be resized for the model; logits are upsampled back to the original label size,
    the usual protocol (BDL predicts at 1024x512 and scores at 2048x1024).
    With ``thresholds`` (those M used for its pseudo-labels) it also measures what pseudo-labels of M
    would be on these labelled images: per predicted class, pixels kept and pixels kept correctly.
    """
    model.to(device).eval()
    cm = ConfusionMatrix()
    kept = []
    pl = {"predicted": np.zeros(NUM_CLASSES, np.int64), "kept": np.zeros(NUM_CLASSES, np.int64),
          "correct": np.zeros(NUM_CLASSES, np.int64)}
    for i in progress(range(len(dataset)), total=len(dataset), desc="evaluate"):
        item = dataset[i]
        full = torch.from_numpy(decode(dataset.samples[i].label).astype(np.int64))
        logits = model(item["image"].unsqueeze(0).to(device).float().div_(255))
        logits = F.interpolate(logits, size=full.shape, mode="bilinear", align_corners=False)
        prob, pred = F.softmax(logits.float(), 1).max(1)
        pred, prob = pred[0].cpu(), prob[0].cpu()
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
    return cm, kept, (pl if thresholds is not None else None)
