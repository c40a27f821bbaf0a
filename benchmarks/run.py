#!/usr/bin/env python
"""Throughput and memory figures, one line each, measured side by side in one process so machine noise
cancels. Needs a finished demo run (for its data and checkpoints): `make demo` first.

  python benchmarks/run.py                       # all figures, CPU or CUDA as available
  python benchmarks/run.py --results results/demo --steps 40

Lines read `<figure>: <value> ...`. Ratios compare a stage as it really runs (reading its inputs from disk,
augmenting, logging) with the bare model step on tensors already in memory, same batch and size.
"""

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bdl.cli  # noqa: E402,F401  (sets the OpenMP spin policy before torch loads)


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="results/demo", help="a finished demo run")
    p.add_argument("--steps", type=int, default=40, help="timed iterations per figure")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="interleaved (stage, bare) pairs per figure")
    p.add_argument("--inference-repeats", type=int, default=9,
                   help="pairs for translate/pseudo_label with the demo's models: a pass over the demo's 400 "
                        "frames takes ~0.5 s, short enough for the machine's drift to move one pair by ~10%%")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers of the stage side")
    p.add_argument("--inference-batch", type=int, default=16)
    p.add_argument("--paper-frames", type=int, default=96,
                   help="frames for the translate/pseudo_label figures with the paper's model widths (0: skip)")
    p.add_argument("--skip-training", action="store_true", help="only the inference, memory and no-op figures")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--skip-snakemake", action="store_true")
    return p


class InMemoryLoader:
    """Stands in for a stage's DataLoader: yields one already collated batch again and again, so the
    same training loop runs without reading, decoding or augmenting anything (the 'bare step')."""

    def __init__(self, loader):
        self.batch = next(iter(loader))
        self.sampler, self.batch_size, self.drop_last = loader.sampler, loader.batch_size, loader.drop_last
        self.dataset, self._len = None, len(loader)

    def __iter__(self):
        return (self.batch for _ in range(self._len))

    def __len__(self):
        return self._len


def main(args):
    import torch

    from bdl.artifacts import load_checkpoint
    from bdl.data.cache import cached_set, domain_set, write_cache
    from bdl.data.datasets import make_loader
    from bdl.data.readers import DatasetSpec
    from bdl.data.translated import TranslatedSet
    from bdl.distributed import pick_device
    from bdl.loops.inference import predict, pseudo_label_set, translate_set
    from bdl.loops.segmenter import SegmenterSettings, train_segmenter
    from bdl.loops.translator import TranslatorSettings, train_translator
    from bdl.models import build_translator, segmenter_from_checkpoint
    from bdl.models.cyclegan import to_gan
    from bdl.pseudo import PseudoLabelSet
    from bdl.runtime import ComputeFormat, setup_torch
    from bdl.training import Resumable

    R = Path(args.results)
    if not (R / "metrics.tsv").exists():
        sys.exit(f"error: {R}: no finished demo run here (run `make demo` first)")
    device = pick_device(args.device)
    setup_torch(device, args.threads)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"device: {device} ({name}); {args.steps} timed iterations per training figure; {args.repeats} "
          f"interleaved (stage, bare) pairs per figure ({args.inference_repeats} for the demo-model inference figures)")
    seg_ckpt, f_ckpt = load_checkpoint(R / "m0" / "segmenter.pt"), load_checkpoint(R / "round1" / "translator.pt")
    seg_cfg = argparse.Namespace(**(seg_ckpt["args"] | {"iterations": args.steps, "log_every": 10}))
    f_cfg = argparse.Namespace(**(f_ckpt["args"] | {"iterations": args.steps, "log_every": 10, "decay_start": 0}))
    bs = seg_cfg.batch_size
    adv_lambda = load_checkpoint(R / "round1" / "adv" / "segmenter.pt")["args"]["lambda_adv"]
    tgt = DatasetSpec("cityscapes", str(R / "data" / "target"))
    src = DatasetSpec("gta5", str(R / "data" / "source"))
    tmp = Path(tempfile.mkdtemp(prefix="bdl-bench-"))

    def loader(ds, batch=bs, shuffle=True, drop_last=True):
        return make_loader(ds, batch, shuffle, args.workers, drop_last=drop_last)

    def images(domain, spec, with_labels, flip, crop=None):
        """A domain's images as the workflow's stages read them: from the run's cache where it made one."""
        cache = R / "cache" / f"{domain}.h5"
        return domain_set(spec, cache if cache.exists() else None, None, with_labels, crop, flip)

    def translated():
        """Round 1's translated images with the source's labels, as train_segmenter reads them."""
        return TranslatedSet(R / "round1" / "translated.h5", images("source", src, True, False), flip=True)

    def target_images(flip=True):
        return images("target", tgt, False, flip)

    print("inputs: " + ", ".join(f"{d} {'cache' if (R / 'cache' / f'{d}.h5').exists() else 'image files'}"
                                 for d in ("source", "target")))
    pseudo = R / "round1" / "ssl1" / "pseudo.h5"
    seg_stages = {
        "train_segmenter source-only": (lambda: loader(images("source", src, True, True)), None, 0.0),
        "train_segmenter adversarial": (lambda: loader(translated()), lambda: loader(target_images()), None),
        "train_segmenter ssl": (
            lambda: loader(translated()),
            lambda: loader(PseudoLabelSet(pseudo, target_images(False), flip=True)), None),
    }
    for title, (make_s, make_t, lambda_adv) in ({} if args.skip_training else seg_stages).items():
        cfg = argparse.Namespace(**vars(seg_cfg))
        # M0's record says lambda_adv 0 (source-only); the adapting stages use round 1's value
        cfg.lambda_adv = lambda_adv if lambda_adv is not None else adv_lambda

        def seg_run(bare, make_s=make_s, make_t=make_t, cfg=cfg, title=title):
            s, t = make_s(), (make_t() if make_t else None)
            if bare:
                s, t = InMemoryLoader(s), (InMemoryLoader(t) if t else None)
            model = segmenter_from_checkpoint(seg_ckpt)
            start = time.perf_counter()
            train_segmenter(model, s, t, SegmenterSettings.from_args(cfg), ComputeFormat.of(cfg, device), device,
                            Resumable(tmp / "seg.pt", {}, 0), stage=title)
            return time.perf_counter() - start

        report(title, args.steps * bs, *side_by_side(seg_run, args.repeats), 0.9)

    def f_run(bare):
        s = loader(images("source", src, False, True, f_cfg.crop), f_cfg.batch_size)
        t = loader(images("target", tgt, False, True, f_cfg.crop), f_cfg.batch_size)
        if bare:
            s, t = InMemoryLoader(s), InMemoryLoader(t)
        start = time.perf_counter()
        train_translator(f_ckpt["arch"], s, t, segmenter_from_checkpoint(seg_ckpt), TranslatorSettings.from_args(f_cfg),
                         ComputeFormat.of(f_cfg, device), device,
                         Resumable(tmp / "f.pt", {}, 0))
        return time.perf_counter() - start

    if not args.skip_training:
        report("train_translator", args.steps * f_cfg.batch_size, *side_by_side(f_run, args.repeats), 0.9)

    ib = args.inference_batch

    def inference_figure(title, model, ds, stage_pass, bare_step, repeats):
        """``stage_pass(loader, hw)`` is the stage's whole pass; ``bare_step(batch)`` one forward on a batch, run
        over the same frames' batches read into memory beforehand, as the training figures' bare side is (not
        one batch repeated: its pixels stay in the caches, which no pass over a set of frames gets)."""
        model.to(device).eval()
        hw = tuple(ds[0]["image"].shape[-2:])
        batches = [b["image"] for b in loader(ds, ib, False, False)]

        def run(bare):
            start = time.perf_counter()
            if not bare:
                stage_pass(loader(ds, ib, False, False), hw)
            else:
                with torch.no_grad():
                    for batch in batches:
                        bare_step(batch)
            return time.perf_counter() - start

        report(title, len(ds), *side_by_side(run, repeats), 0.85)

    def translate_figure(title, generator, ds, repeats):
        inference_figure(title, generator, ds,
                         lambda batches, hw: translate_set(generator, batches, tmp / "t.h5", {}, device, hw),
                         lambda batch: generator(to_gan(batch, device)).cpu(), repeats)

    def pseudo_figure(title, model, ds, repeats):
        inference_figure(title, model, ds,
                         lambda batches, hw: pseudo_label_set(model, batches, tmp / "p.h5", "classwise", 0.9, {},
                                                              device, hw),
                         lambda batch: [t.cpu() for t in predict(model, batch, device)], repeats)

    generator, _ = build_translator(f_ckpt["arch"])
    generator.load_state_dict(f_ckpt["model"])
    translate_figure("translate (with reading + HDF5 writing)", generator, images("source", src, True, False),
                     args.inference_repeats)
    m0, frames = segmenter_from_checkpoint(seg_ckpt), target_images(False)
    pseudo_figure("pseudo_label classwise (with reading + HDF5 writing)", m0, frames, args.inference_repeats)
    pseudo_parts(m0, frames, lambda ds: loader(ds, ib, False, False), device, tmp, args.inference_repeats)
    if args.paper_frames:
        # The same stage code on the same demo frames with the paper's model widths (random weights): tells
        # how much of a shortfall above is the stage's fixed per-frame cost (PNG decoding, HDF5) measured
        # against the demo's tiny models, rather than work that grows with the model.
        from bdl.models import build_segmenter

        n = args.paper_frames
        first_src, first_tgt = src.samples()[:n], tgt.samples(False)[:n]
        write_cache(first_src, src.label_decoder(), None, tmp / "src.h5", {})
        write_cache(first_tgt, None, None, tmp / "tgt.h5", {})
        translate_figure(f"translate, paper CycleGAN (ngf 64, 9 blocks, random init), {n} frames",
                         build_translator({"ngf": 64, "n_blocks": 9})[0],
                         cached_set(tmp / "src.h5", first_src, None, True), args.repeats)
        pseudo_figure(f"pseudo_label classwise, paper DeepLab v2 ResNet-101 (random init), {n} frames",
                      build_segmenter("resnet101"), cached_set(tmp / "tgt.h5", first_tgt, None, False), args.repeats)

    if not args.skip_memory:
        memory_figure(R, args.threads)
    if not args.skip_snakemake:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "8"], cwd=REPO, capture_output=True,
                              text=True)
        noop = time.perf_counter() - start
        nothing = "Nothing to be done" in proc.stdout + proc.stderr
        print(f"no-op snakemake --cores 8 after the finished demo: {noop:.2f} s "
              f"({'nothing to be done' if nothing else 'IT RAN JOBS: the demo was not finished'}; target < 5 s)")
        slurm_probe_note()


def slurm_probe_note():
    """snakemake-executor-plugin-slurm 2.x runs `scontrol show config` when snakemake loads its plugins; where
    SLURM's tools are installed but no controller answers, that alone takes seconds. Say so when it does."""
    import importlib.util
    import shutil

    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None or not shutil.which("scontrol"):
        return
    start = time.perf_counter()
    try:
        ok = subprocess.run(["scontrol", "show", "config"], capture_output=True, timeout=15).returncode == 0
    except subprocess.TimeoutExpired:
        ok = False
    took = time.perf_counter() - start
    if took > 1:
        print(f"  of which ~{took:.1f} s: `scontrol show config` ({'answered' if ok else 'no SLURM controller'}), "
              "run at start by the SLURM executor plugin; `make demo` installs without it")


def side_by_side(run, repeats: int):
    """([stage seconds], [bare seconds]): ``repeats`` pairs run back to back, the side that goes first
    alternating, so warm-up (allocator, kernel selection) and the machine's drift do not land on one side."""
    stage, bare = [], []
    for i in range(repeats):
        if i % 2:
            bare.append(run(True))
            stage.append(run(False))
        else:
            stage.append(run(False))
            bare.append(run(True))
    return stage, bare


def report(title, images, stage, bare, target):
    """The ratio is the median over the pairs of bare/stage time: this machine's speed drifts by 10-20%
    within a minute, so the two runs of a pair share their conditions while the best of each side need
    not come from the same moment. Speeds are each side's best run."""
    pairs = sorted(b / s for s, b in zip(stage, bare, strict=True))
    ratio = statistics.median(pairs)
    flag = "ok" if ratio >= target else "BELOW TARGET"
    spread = f", {pairs[0]:.2f}-{pairs[-1]:.2f}" if len(pairs) > 1 else ""
    print(f"{title}: stage {images / min(stage):.1f} img/s, bare {images / min(bare):.1f} img/s, ratio {ratio:.2f} "
          f"(median of {len(pairs)} pairs{spread}; target >= {target}, {flag})")


def pseudo_parts(model, ds, make_loader, device, tmp, repeats):
    """The pseudo-label stage's pieces timed one after another (best of ``repeats``), in ms per frame: where
    the time between the bare forward and the stage goes."""
    import torch

    from bdl.artifacts import H5Writer
    from bdl.data.labels import NUM_CLASSES
    from bdl.loops.inference import labels_from_scratch, predict, scratch_arrays
    from bdl.pseudo import ClasswiseMedian

    hw = ds[0]["image"].shape[-2:]
    arrays = scratch_arrays(hw)
    best = {}

    @contextlib.contextmanager
    def timed(key):
        start = time.perf_counter()
        yield
        best[key] = min(best.get(key, float("inf")), time.perf_counter() - start)

    for _ in range(repeats):
        with timed("read + collate"):
            batches = list(make_loader(ds))
        with timed("model + softmax"):
            outs = [predict(model, b["image"], device) for b in batches]
        outs = [(p.to(torch.float16).cpu().numpy(), q.to(torch.uint8).cpu().numpy()) for p, q in outs]
        stats = ClasswiseMedian(NUM_CLASSES, cap=0.9)
        with timed("median histogram"):
            for prob, pred in outs:
                stats.add(pred, prob)
        with H5Writer(tmp / "parts.h5", len(ds), arrays) as out:
            with timed("HDF5 write scratch pred/prob"):
                start = 0
                for prob, pred in outs:
                    out.write(start, [str(start + i) for i in range(len(prob))], pred=pred, prob=prob)
                    start += len(prob)
        with timed("labels from the scratch"):  # classwise: the second pass, once the thresholds are known
            labels_from_scratch(tmp / "parts.h5", tmp / "labels.h5", stats.thresholds(), {}, hw)
    per = {k: 1000 * v / len(ds) for k, v in best.items()}
    extra = sum(v for k, v in per.items() if k != "model + softmax")
    print("pseudo_label parts, ms per frame, run one after another: "
          + ", ".join(f"{k} {v:.2f}" for k, v in per.items())
          + f"; all but the model {extra:.2f} ({100 * extra / per['model + softmax']:.0f}% of the model)")


def memory_figure(R: Path, threads: int):
    from measure import stage_peak_rss_mib

    from bdl.data.demo import generate

    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (100, 1000):
            generate(Path(tmp) / f"n{n}", 1, n, 1, seed=7)
            peaks[n] = stage_peak_rss_mib(
                REPO / "stages" / "pseudo_label.py", "--segmenter", R / "m0" / "segmenter.pt",
                "--target-format", "cityscapes", "--target-root", Path(tmp) / f"n{n}" / "target",
                "--mode", "classwise", "--threads", threads, "--out", Path(tmp) / f"p{n}.h5")
    print(f"pseudo_label peak RSS: {peaks[100]:.0f} MiB (100 images), {peaks[1000]:.0f} MiB (1000 images), "
          f"growth {100 * (peaks[1000] / peaks[100] - 1):.1f}% (target < 10%)")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
