"""One GPU job per GPU on a workstation. Snakemake counts the ``gpu`` resource (the workflow sets its limit
to the number of GPUs it sees), but it does not say which GPU a job may use; each GPU job therefore takes
a slot: an exclusive lock on one device's file, held until the process ends (the kernel drops it even
after a crash), and runs with ``CUDA_VISIBLE_DEVICES`` set to that device. Under SLURM, which hands each
job its own GPUs, nothing is done. No torch: this must run before CUDA starts.
"""

import atexit
import fcntl
import os
import sys
import tempfile
import time
from pathlib import Path

_held: list = []  # open lock files: closing them (at exit) frees the slots


def visible_gpus() -> list[str]:
    """The GPU ids this machine offers jobs: ``BDL_FAKE_GPUS=N`` (tests), else ``CUDA_VISIBLE_DEVICES``, else
    the devices of the NVIDIA driver (read from /proc, so CUDA is not started)."""
    if os.environ.get("BDL_FAKE_GPUS"):
        return [str(i) for i in range(int(os.environ["BDL_FAKE_GPUS"]))]
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and not d.strip().startswith("-")]
    driver = Path("/proc/driver/nvidia/gpus")
    return [str(i) for i in range(len(list(driver.iterdir())))] if driver.is_dir() else []


def slot_dir() -> Path:
    """Shared by every job of this machine (``BDL_GPU_SLOT_DIR`` moves it, e.g. per test)."""
    return Path(os.environ.get("BDL_GPU_SLOT_DIR") or Path(tempfile.gettempdir()) / "bdl-gpu-slots")


def acquire(count: int = 1, poll_s: float = 2.0) -> list[str]:
    """Lock ``count`` free GPUs of ``visible_gpus()`` (waiting while all are taken), point
    ``CUDA_VISIBLE_DEVICES`` at them and say so on stderr; they are freed when the process ends."""
    gpus = visible_gpus()
    if count > len(gpus):
        raise RuntimeError(f"this job wants {count} GPUs, the machine shows {len(gpus)}")
    folder = slot_dir()
    folder.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        taken = []
        for gpu in gpus:
            handle = open(folder / f"gpu{gpu}.lock", "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            taken.append((gpu, handle))
            if len(taken) == count:
                break
        if len(taken) == count:
            break
        for _, handle in taken:  # not enough free: give back what was taken, never hold a partial set
            handle.close()
        if not waited:
            print(f"gpu slot: all {len(gpus)} GPUs busy, waiting", file=sys.stderr, flush=True)
            waited = True
        time.sleep(poll_s)
    devices = [gpu for gpu, _ in taken]
    _held.extend(handle for _, handle in taken)
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    print(f"gpu slot: device {','.join(devices)} of {len(gpus)} (CUDA_VISIBLE_DEVICES={','.join(devices)}), "
          f"held from {time.time():.3f}", file=sys.stderr, flush=True)
    atexit.register(lambda: print(f"gpu slot: device {','.join(devices)} released at {time.time():.3f}",
                                  file=sys.stderr, flush=True))
    return devices
