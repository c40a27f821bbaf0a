"""Several processes per stage (``--procs N``, config ``runtime.gpus_per_job``): one process per device, joined
by ``torch.distributed`` (NCCL on CUDA, gloo on the CPU).

A stage given ``--procs N`` re-runs itself as N worker processes (``launch``, torch.multiprocessing spawn, one
task on one node); a stage started by ``torchrun`` is a worker already (``WORLD_SIZE`` is set) and is not
re-launched. Worker r uses device ``cuda:r`` (of the devices the job was given) or the CPU.

What the workers share, and why the N-process run is the 1-process run of the same global batch:
- training: every rank builds the same seeded order and takes its contiguous slice of each global batch
  (``bdl.data.datasets.EpochSampler``), so together they see the very frames, crops and flips of the
  1-process run; losses are means over equal slices, or sums over the global count of valid pixels
  (``bdl.losses.seg_ce``), so averaging the gradients gives the global-batch gradient.
- inference: each rank takes a contiguous run of whole batches (``shard``), writes its frames into the one
  output file (``SharedRows``), and the per-class histograms and confusion matrices are summed.
- files: rank 0 alone writes checkpoints, logs and final artifacts; every rank reads the checkpoints.

Only this module and the loops know about ranks; with one process every function here is a no-op.
"""

import ctypes
import os
import signal
import socket
import sys
from dataclasses import dataclass

from bdl.errors import BDLError

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def rank() -> int:
    """This process's rank (0 outside a distributed run): the one that writes files and logs."""
    return int(os.environ.get("RANK") or 0)


def is_main() -> bool:
    return rank() == 0


@dataclass(frozen=True)
class World:
    """Who this process is among the job's processes; ``World()`` is the single process."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @classmethod
    def from_env(cls) -> "World":
        size = int(os.environ.get("WORLD_SIZE") or 1)
        r = rank()
        return cls(r, size, int(os.environ.get("LOCAL_RANK") or r)) if size > 1 else cls()

    # --- collectives: each is called by every rank in the same order ---

    def sum_(self, tensor):
        """All-reduce ``tensor`` in place by sum (a no-op with one process); returns it."""
        if self.distributed:
            import torch
            import torch.distributed as dist

            if tensor.device.type == "cpu" and dist.get_backend() == "nccl":  # NCCL reduces GPU memory only
                on_gpu = tensor.to(torch.device("cuda", torch.cuda.current_device()))
                dist.all_reduce(on_gpu, op=dist.ReduceOp.SUM)
                tensor.copy_(on_gpu)
            else:
                dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def mean_losses(self, losses: dict) -> dict:
        """The loss terms averaged over the ranks: each rank's term is a mean over its equal slice (or scaled so,
        ``seg_ce``), so the average is the global batch's value, which is what rank 0 logs."""
        if not self.distributed or not losses:
            return losses
        import torch

        keys = list(losses)
        stacked = torch.stack([losses[k].detach().float().reshape(()) for k in keys])
        self.sum_(stacked).div_(self.size)
        return dict(zip(keys, stacked.unbind()))

    def average_gradients(self, parameters) -> None:
        """Average the gradients of ``parameters`` over the ranks, in one flat all-reduce. For the modules that
        run several forwards per backward (CycleGAN's generators, the discriminators), where
        DistributedDataParallel's reducer would need exactly one; the result is the same average."""
        if not self.distributed:
            return
        import torch

        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        self.sum_(flat).div_(self.size)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def gather_batch(self, tensor):
        """The global batch from every rank's slice (rank order, equal slices), on every rank."""
        if not self.distributed:
            return tensor
        import torch
        import torch.distributed as dist

        parts = [torch.empty_like(tensor) for _ in range(self.size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, 0)

    def local_slice(self, tensor):
        """This rank's contiguous slice of a global batch (the inverse of ``gather_batch``)."""
        if not self.distributed:
            return tensor
        b = tensor.shape[0] // self.size
        return tensor[self.rank * b:(self.rank + 1) * b]

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_objects(self, obj) -> list:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()


def split_batch(batch_size: int, world: World, key: str) -> int:
    """Each rank's share of a global batch of ``batch_size``; refused in one line naming ``key`` unless it divides."""
    if batch_size % world.size:
        raise BDLError(f"config key '{key}': {batch_size} does not divide among {world.size} processes "
                       f"(runtime.gpus_per_job), which split each global batch; use a multiple of {world.size}")
    return batch_size // world.size


def shard(n: int, batch_size: int, world: World) -> range:
    """The frames of ``n`` one rank passes over: a contiguous run of whole batches of the 1-process pass, so that
    each frame goes through the model in the very batch it would have (results equal bit for bit)."""
    batches = -(-n // batch_size)
    first, last = (batches * world.rank) // world.size, (batches * (world.rank + 1)) // world.size
    return range(min(first * batch_size, n), min(last * batch_size, n))


def pick_device(name: str = "auto"):
    """The device a ``--device`` value names: ``auto`` is CUDA where there is one, else the CPU."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BDLError(f"device '{name}' requested but CUDA is not available")
    return torch.device(name)


def device_of(name: str, world: World):
    """The device of this rank: ``cuda:<local rank>`` where the job's choice is CUDA, else the CPU."""
    import torch

    device = pick_device(name)
    if device.type == "cuda" and world.distributed:
        if world.local_rank >= torch.cuda.device_count():
            raise BDLError(f"process {world.rank} of {world.size} has no GPU: the job shows "
                           f"{torch.cuda.device_count()} (runtime.gpus_per_job is more than the GPUs it was given)")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    return device


def init(device, world: World) -> None:
    """Join the process group (NCCL on CUDA, gloo on the CPU) and say so: one line per rank in the job's log."""
    if not world.distributed:
        return
    import torch.distributed as dist

    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, rank=world.rank, world_size=world.size, **kwargs)
    # one write per line: the ranks share the log file, and print's separate newline interleaves
    sys.stderr.write(f"distributed: rank {world.rank} of {world.size}, device {device}, backend {backend}\n")
    sys.stderr.flush()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """A worker is killed with its launcher (SIGKILL included): an orphan would go on writing checkpoints
    beside the rerun that resumes from them."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:
            os._exit(1)


def _worker(index: int, guarded, main, args, size: int, port: int) -> None:
    _die_with_parent()
    os.environ.update({"RANK": str(index), "LOCAL_RANK": str(index), "WORLD_SIZE": str(size),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    code = guarded(main, args)
    import torch.distributed as dist

    if dist.is_initialized():
        # gloo's threads torn down by the interpreter's exit instead may abort the process ("terminate called
        # without an active exception") after a stage that succeeded
        dist.destroy_process_group()
    if code:
        sys.exit(code)


def launch(guarded, main, args, procs: int) -> int:
    """Run ``guarded(main, args)`` in ``procs`` processes; the exit code of the first that fails, else 0. When
    one fails the others are stopped (torch.multiprocessing), so none waits forever in a collective."""
    import logging

    import torch.multiprocessing as mp

    # torch logs each worker it stops after a failure; the failing worker's own error line must stay the log's last
    logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)
    context = mp.start_processes(_worker, (guarded, main, args, procs, _free_port()), nprocs=procs, join=False,
                                 start_method="spawn")

    def forward(signum, frame):
        # a signal sent to the stage (the launcher's pid) reaches its workers, which stop together at a step
        # boundary (bdl.stopping); the launcher itself waits for them
        for proc in context.processes:
            if proc.is_alive():
                os.kill(proc.pid, signum)

    from bdl.stopping import SIGNALS

    for sig in SIGNALS:
        signal.signal(sig, forward)
    try:
        while not context.join():
            pass
    except mp.ProcessExitedException as exc:
        return exc.exit_code if exc.exit_code and exc.exit_code > 0 else 1
    except mp.ProcessRaisedException as exc:
        print(f"error: a worker process failed:\n{exc}", file=sys.stderr)
        return 1
    return 0


def worker_count(procs: int) -> int:
    """How many processes this stage runs as: ``torchrun``'s world where it started us, else ``--procs``."""
    env = int(os.environ.get("WORLD_SIZE") or 0)
    if env and procs > 1 and env != procs:
        raise BDLError(f"--procs {procs} but the launcher started {env} processes (WORLD_SIZE)")
    return env or procs
