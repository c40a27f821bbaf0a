"""Helpers for the stage scripts: shared flags, and turning user errors into one-line messages."""

import argparse
import os
import sys
import traceback

from bdl.defaults import default, switch
from bdl.errors import BDLError


def add_runtime_args(p: argparse.ArgumentParser, out: str | None = None) -> None:
    """The runtime flags every model stage takes; ``out``: the help of its required ``--out``."""
    if out:
        p.add_argument("--out", required=True, help=out)
    g = p.add_argument_group("runtime")
    g.add_argument("--device", default=default("device"), help="'auto' (CUDA when present), 'cpu' or 'cuda[:N]'")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    g.add_argument("--workers", type=int, default=default("runtime.workers"), help="DataLoader worker processes")
    g.add_argument("--seed", type=int, default=default("seed"),
                   help="random seed; the same seed gives the same result on CPU")
    g.add_argument("--bf16", choices=["auto", "on", "off"], default=switch("runtime.bf16"),
                   help="bfloat16 autocast for M, F and D ('auto': on a CUDA GPU that supports it, off on CPU)")
    g.add_argument("--channels-last", choices=["auto", "on", "off"], default=switch("runtime.channels_last"),
                   help="channels_last memory format for models and images ('auto': on CUDA, off on CPU)")


def add_procs_arg(p: argparse.ArgumentParser) -> None:
    """``--procs N``: the stage runs as N processes, one device each (``bdl.distributed``)."""
    p.add_argument("--procs", type=positive_procs, default=default("runtime.gpus_per_job"),
                   help="processes, one GPU each (CPU: gloo); training splits each batch across them, inference "
                        "the frames (config runtime.gpus_per_job). Under torchrun: its world")


def positive_procs(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def add_training_args(p: argparse.ArgumentParser, g) -> None:
    """What every training stage takes besides its model and data: logging, runtime and its outputs."""
    g.add_argument("--checkpoint-every", type=int, default=default("runtime.checkpoint_every"),
                   help="steps between resumable checkpoints")
    g.add_argument("--log-every", type=int, default=default("runtime.log_every"), help="steps between loss-log rows")
    g.add_argument("--stop-before-limit", type=int, default=default("runtime.stop_before_limit"),
                   help="inside a SLURM job: seconds before the job's end at which training checkpoints, requeues "
                        "the job and exits, to resume when SLURM starts it again (0: never)")
    add_runtime_args(p)
    add_procs_arg(p)
    p.add_argument("--out", required=True, help="final checkpoint (.pt)")
    p.add_argument("--losses", help="loss log (TSV), appended to as the run goes")
    p.add_argument("--curves", help="loss curves (PNG), redrawn at every checkpoint")
    p.add_argument("--tensorboard", help="also log to TensorBoard event files in this folder")


def option_args(options: dict, skip=()) -> list[str]:
    """Options as stage arguments: ``--key value`` with ``_`` in keys as ``-``; None and False drop the flag,
    True leaves it bare, a list or tuple gives one argument per item. An argument list, never a shell
    string: the workflow quotes each item (``shlex.join``), subprocess callers pass the list as is."""
    out = []
    for key, value in options.items():
        if key in skip or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif isinstance(value, (list, tuple)):
            out += [flag, *map(str, value)]
        else:
            out += [flag, str(value)]
    return out


def run(main, parser: argparse.ArgumentParser, argv=None) -> int:
    """A stage's entry point: process-wide settings, then parse and run ``main(args)``; a BDLError becomes
    ``error: <message>`` on one line and exit code 2."""
    # Snakemake runs several jobs at once, often more threads than cores. OpenMP's default busy-waiting
    # makes oversubscribed torch jobs crawl (two 2-thread translator jobs on 2 cores: 0.38 it/s each), and
    # passive waiting halves a lone job's speed (1.43 vs 2.73 it/s). A short spin keeps both (2.2 alone,
    # 1.0 each when two share the cores). Set before torch, which stages import inside main, loads OpenMP.
    os.environ.setdefault("GOMP_SPINCOUNT", "2000")
    args = parser.parse_args(argv)
    if os.environ.get("SLURM_JOB_ID"):
        # a stage log then ties back to sacct/squeue and to SLURM's own log of the same job
        env = os.environ
        print(f"slurm job {env['SLURM_JOB_ID']} on {env.get('SLURMD_NODENAME', '?')},"
              f" gpus {env.get('SLURM_GPUS_ON_NODE', 0)}, cpus {env.get('SLURM_CPUS_PER_TASK', '?')},"
              f" partition {env.get('SLURM_JOB_PARTITION', '?')}", file=sys.stderr)
    from bdl.distributed import worker_count

    try:
        procs = worker_count(getattr(args, "procs", 1))
    except BDLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if procs > 1 and not os.environ.get("WORLD_SIZE"):
        from bdl.distributed import launch

        _hold_gpu_slots()
        try:
            return launch(_guarded, main, args, procs)
        except KeyboardInterrupt:  # the workers, in the same process group, got it too and stop
            print("error: interrupted", file=sys.stderr)
            return 130
    return _guarded(main, args)


def _guarded(main, args) -> int:
    """``main(args)`` with a user error as one ``error:`` line (naming the rank in a worker other than rank 0) and
    exit code 2; in every process of a distributed stage."""
    from bdl.distributed import rank
    from bdl.stopping import STOPPED_ON_SIGNAL, StoppedOnSignal, exit_line, requeue

    try:
        main(args)
    except StoppedOnSignal as exc:
        _close_progress_bars()
        if not rank():  # the checkpoint is whole (every rank passed its barrier): the job may go
            print(exit_line(exc), file=sys.stderr)
            requeue(exc, lambda line: print(line, file=sys.stderr, flush=True))
        return STOPPED_ON_SIGNAL
    except BDLError as exc:
        _close_progress_bars()  # else a bar redraws after the message and the error is not the last line
        print(f"error: {f'[rank {rank()}] ' if rank() else ''}{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception:  # an internal bug: keep the traceback, it is what a bug report needs
        traceback.print_exc()
        return 1
    _report_cuda_peak()
    return 0


def _hold_gpu_slots() -> None:
    """The launcher of a distributed stage locks the job's GPU slots (``BDL_GPUS`` of them) for all its workers, which
    inherit ``CUDA_VISIBLE_DEVICES`` and then take one device each (not slots of their own)."""
    wanted = int(os.environ.pop("BDL_GPUS", "") or 0)
    if wanted and not os.environ.get("SLURM_JOB_ID"):
        from bdl.gpu_slots import acquire

        acquire(wanted)


def _report_cuda_peak() -> None:
    """The stage's peak GPU memory, for the log (benchmarks/rehearse.py reads it); nothing on a CPU."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        print(f"peak CUDA memory: allocated {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB, "
              f"reserved {torch.cuda.max_memory_reserved() / 2**30:.2f} GiB", file=sys.stderr)


def recorded_args(args: argparse.Namespace) -> dict:
    """The CLI settings as plain values, stored in checkpoints (loadable with weights_only=True)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()
            if (v is None or isinstance(v, (int, float, str, bool, list, tuple)))
            and not (k == "procs" and v == 1)}  # a 1-process checkpoint is the file it was before --procs


def name_path_pairs(items, flag: str) -> list:
    """``NAME=PATH`` command-line items as (name, Path) pairs, in order."""
    from pathlib import Path

    out = []
    for item in items:
        name, _, path = item.partition("=")
        if not name or not path:
            raise BDLError(f"{flag} {item}: expected NAME=PATH")
        out.append((name, Path(path)))
    return out


def _close_progress_bars() -> None:
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None:
        for bar in list(getattr(tqdm.tqdm, "_instances", [])):
            bar.close()


def positive_int(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def steps(text: str) -> int:
    v = int(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
    return v


def probability(text: str) -> float:
    v = float(text)
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {v}")
    return v


def add_dataset_args(p: argparse.ArgumentParser, prefix: str, what: str) -> None:
    """``--<prefix>-format/-root/-list/-label-map/-size`` describing one domain's data on disk."""
    g = p.add_argument_group(f"{prefix} data ({what})")
    g.add_argument(f"--{prefix}-format", choices=("gta5", "cityscapes", "synthia", "list"), help="on-disk layout")
    g.add_argument(f"--{prefix}-root", help="dataset root folder")
    g.add_argument(f"--{prefix}-list", default=None, help="optional list file of images (gta5, synthia, list)")
    g.add_argument(f"--{prefix}-label-map", default=None, help="'id trainId' table for format 'list'")
    g.add_argument(f"--{prefix}-split", default=default("source.split" if prefix == "source" else "target.train_split"),
                   help="split folder (Cityscapes layout)")
    g.add_argument(f"--{prefix}-size", type=int, nargs=2, metavar=("W", "H"), default=None,
                   help="resize images (bilinear; bicubic under --protocol reference) and labels (nearest) to "
                        "W H on load")
    g.add_argument(f"--{prefix}-on-mismatch", choices=("error", "skip", "resize"),
                   default=default(f"{prefix}.on_mismatch"),
                   help="a label whose size differs from its image's: refuse, leave the pair out, or resize the "
                        "label (nearest) to the image")


def dataset_spec(args, prefix: str, split: str | None = None):
    from bdl.data.readers import DatasetSpec

    fmt, root = getattr(args, f"{prefix}_format"), getattr(args, f"{prefix}_root")
    if not fmt or not root:
        raise BDLError(f"--{prefix}-format and --{prefix}-root are required for this mode")
    return DatasetSpec(fmt, root, split or getattr(args, f"{prefix}_split"), getattr(args, f"{prefix}_list"),
                       getattr(args, f"{prefix}_label_map"), getattr(args, f"{prefix}_on_mismatch"), prefix)


def add_protocol_arg(p: argparse.ArgumentParser, what: str = "how images are resized") -> None:
    """``--protocol bdl|reference`` (config key protocol; bdl/protocol.py); ``what``: what it decides here."""
    from bdl.protocol import PROTOCOLS

    p.add_argument("--protocol", choices=PROTOCOLS, default=default("protocol"),
                   help=f"{what}: this project's ('bdl': images resized bilinear) or the reference code's "
                        "('reference': bicubic, as its data loaders); see bdl/protocol.py")


def add_cache_arg(p: argparse.ArgumentParser, prefix: str) -> None:
    p.add_argument(f"--{prefix}-cache", default=None,
                   help=f"the {prefix} images decoded into HDF5 by cache_images.py, read instead of the image files")


def image_set(args, prefix: str, with_labels: bool, crop=None, flip=False, seed=0, spec=None):
    """The ``prefix`` domain's images (with labels if asked): from ``--<prefix>-cache`` when given, else from
    the files (``bdl.data.cache.domain_set``). ``spec``: the domain's ``dataset_spec``, when already made."""
    from bdl.data.cache import domain_set

    return domain_set(spec or dataset_spec(args, prefix), getattr(args, f"{prefix}_cache", None),
                      getattr(args, f"{prefix}_size"), with_labels, crop, flip, seed, protocol_of(args))


def protocol_of(args) -> str:
    """The stage's ``--protocol`` (the default where a stage has none)."""
    return getattr(args, "protocol", None) or default("protocol")
