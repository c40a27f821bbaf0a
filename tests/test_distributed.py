"""Several processes per stage (``--procs``, ``bdl.distributed``) on the CPU with gloo, against one process on the
same global batch: one step's gradients, a 20-step adversarial training, the translated and pseudo-label sets,
the evaluation, a run killed and resumed under two processes, and the refusal of a batch that does not split.

BatchNorm: torch's SyncBatchNorm runs on CUDA only, so these tests train M with BatchNorm frozen (--freeze-bn);
with BatchNorm trained on a CPU each process normalises its own slice (docs/multi_gpu.md)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, STAGES, run_stage, source_flags, target_flags

from bdl.artifacts import save_checkpoint
from bdl.data.datasets import EpochSampler
from bdl.data.labels import IGNORE, NUM_CLASSES
from bdl.distributed import World, init, shard
from bdl.loops.segmenter import SOURCE, TARGET, distributed_segmenter, segmenter_backward
from bdl.losses import bce_adv, seg_ce
from bdl.models import build_segmenter, build_translator
from bdl.models.discriminator import OutputDiscriminator
from bdl.runtime import ComputeFormat

CPU = torch.device("cpu")
RUNTIME = ["--device", "cpu", "--threads", "1"]
# M0-sized adversarial training: frozen BatchNorm (see the module's docstring), a global batch of 4
TRAIN = ["--mode", "adversarial", "--backbone", "resnet_mini", "--width", "8", "--weights", "none", "--freeze-bn",
         "--ndf", "8", "--batch-size", "4", "--iterations", "20", "--checkpoint-every", "2", "--log-every", "5"]


# --- the sampler: the ranks' slices are the 1-process batches ---

def test_rank_slices_of_each_global_batch_are_the_one_process_batches_also_after_resume():
    one = EpochSampler(10, True, 5, World(), 4)
    ranks = [EpochSampler(10, True, 5, World(r, 2), 4) for r in range(2)]
    for sampler in (one, *ranks):
        sampler.epoch, sampler.offset = 1, 4  # the second epoch, resumed after its first batch
    whole = list(one)[:4]  # one full batch is left of this epoch's 10 frames (8 fill two batches)
    parts = [list(s) for s in ranks]
    assert parts[0] + parts[1] == whole and [len(s) for s in ranks] == [2, 2]
    assert shard(10, 3, World(0, 2)) == range(0, 6) and shard(10, 3, World(1, 2)) == range(6, 10)


# --- one step's gradients ---

def _global_batch():
    """Four frames whose halves have very different counts of labelled pixels, so that averaging two per-rank means
    would not give the global mean (``test_the_batch_would_catch_per_rank_means`` checks it would not)."""
    gen = torch.Generator().manual_seed(11)
    images = torch.randint(0, 256, (4, 3, 32, 64), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, NUM_CLASSES, (4, 32, 64), generator=gen)
    ignored = torch.rand((4, 32, 64), generator=gen) < torch.tensor([0.95, 0.9, 0.1, 0.0])[:, None, None]
    timages = torch.randint(0, 256, (4, 3, 32, 64), dtype=torch.uint8, generator=gen)
    pseudo = torch.randint(0, NUM_CLASSES, (4, 32, 64), generator=gen)
    pseudo[torch.rand((4, 32, 64), generator=gen) < torch.tensor([0.2, 0.3, 0.97, 0.99])[:, None, None]] = IGNORE
    return {"image": images, "label": labels.masked_fill(ignored, IGNORE)}, {"image": timages, "label": pseudo}


def _step(world: World) -> dict:
    """One SSL step of M (source CE, pseudo-label CE, adversarial term) and of D, on this rank's slice; the
    gradients of M and D and the losses as rank 0 would log them."""
    torch.manual_seed(0)  # the same initial M and D on every rank
    model = build_segmenter("resnet_mini", width=8, freeze_bn=True).train()
    disc = OutputDiscriminator(NUM_CLASSES, 8)
    batch, tbatch = _global_batch()
    net = distributed_segmenter(model, CPU, world)
    mine = ({k: world.local_slice(v) for k, v in b.items()} for b in (batch, tbatch))
    losses, pred_s, pred_t = segmenter_backward(net, disc, *mine, 0.01, ComputeFormat(CPU, "off", "off"), CPU,
                                                world=world)
    for p in disc.parameters():
        p.requires_grad_(True)
    d_loss = 0.5 * (bce_adv(disc(F.softmax(pred_s, 1)), SOURCE) + bce_adv(disc(F.softmax(pred_t, 1)), TARGET))
    d_loss.backward()
    world.average_gradients(disc.parameters())
    grads = {f"M.{n}": p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    grads |= {f"D.{n}": p.grad.clone() for n, p in disc.named_parameters()}
    logged = world.mean_losses(losses | {"D": d_loss})
    return {"grads": grads, "losses": {k: float(v.detach()) for k, v in logged.items()}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _step_worker(rank: int, size: int, port: int, out: str) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(size), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    world = World.from_env()
    init(CPU, world)
    result = _step(world)
    if world.main:
        torch.save(result, out)
    torch.distributed.destroy_process_group()


def test_one_step_gradients_of_two_processes_equal_one_process_on_the_same_global_batch(tmp_path):
    out = tmp_path / "two.pt"
    torch.multiprocessing.start_processes(_step_worker, (2, _free_port(), str(out)), nprocs=2, start_method="spawn")
    two, one = torch.load(out), _step(World())
    assert set(two["grads"]) == set(one["grads"]) and any(k.startswith("D.") for k in one["grads"])
    for name, g in one["grads"].items():
        torch.testing.assert_close(two["grads"][name], g, atol=1e-5, rtol=1e-5, msg=name)
    assert set(one["losses"]) == {"seg", "seg_target", "adv", "D"}
    for name, value in one["losses"].items():
        assert two["losses"][name] == pytest.approx(value, rel=1e-5), name


def test_the_batch_would_catch_per_rank_means():
    """Without the global count of labelled pixels (the mean of the two slices' means) the gradient is off by far
    more than the tolerance above: the equality test can fail."""
    batch, _ = _global_batch()

    def grad(*slices):
        torch.manual_seed(0)
        model = build_segmenter("resnet_mini", width=8, freeze_bn=True).train()
        for images, labels in slices:
            (seg_ce(model(images.float() / 255), labels) / len(slices)).backward()
        return torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])

    whole = grad((batch["image"], batch["label"]))
    halves = grad((batch["image"][:2], batch["label"][:2]), (batch["image"][2:], batch["label"][2:]))
    assert float((whole - halves).abs().max()) > 1e-3


# --- the stages, 1 process against 2 ---

@pytest.fixture(scope="module")
def translated(tiny_demo, tmp_path_factory):
    """A random translator (seeded) through translate.py, as 1 and as 2 processes; 24 frames in batches of 5, so
    the second rank's share is the shorter one."""
    folder = tmp_path_factory.mktemp("translate")
    torch.manual_seed(0)
    arch = {"ngf": 4, "n_blocks": 1}
    F_ab, F_ba = build_translator(arch)
    save_checkpoint(folder / "F.pt", {"kind": "translator", "model": F_ab.state_dict(),
                                      "model_inv": F_ba.state_dict(), "arch": arch})
    out = {}
    for procs in (1, 2):
        out[procs] = folder / f"translated{procs}.h5"
        run_stage("translate", "--translator", folder / "F.pt", *source_flags(tiny_demo), "--batch-size", 5,
                  *RUNTIME, "--procs", procs, "--out", out[procs])
    return out


def _same_set(a, b) -> None:
    with h5py.File(a) as f, h5py.File(b) as g:
        assert sorted(f) == sorted(g) and sorted(f.attrs) == sorted(g.attrs)
        for key in f:
            assert np.array_equal(f[key][:], g[key][:]), key
        for key in f.attrs:
            assert np.array_equal(np.asarray(f.attrs[key]), np.asarray(g.attrs[key])), key


def test_translated_set_of_two_processes_equals_one_process(translated):
    _same_set(translated[1], translated[2])
    with h5py.File(translated[2]) as f:
        assert len(f["names"]) == 24 and len(set(f["names"][:])) == 24  # every frame once


def train(demo, translated_set, out, procs, *extra, wait=True):
    args = [sys.executable, str(STAGES / "train_segmenter.py"), *TRAIN, *source_flags(demo), *target_flags(demo),
            "--translated", translated_set, *RUNTIME, "--procs", procs, "--out", out,
            "--losses", out.with_suffix(".tsv"), *extra]
    if not wait:  # its own session: the test kills the launcher and its workers at once
        return subprocess.Popen(list(map(str, args)), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True, text=True)
    proc = subprocess.run(list(map(str, args)), cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


@pytest.fixture(scope="module")
def trained(tiny_demo, translated, tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    logs = {procs: train(tiny_demo, translated[1], folder / f"M{procs}.pt", procs) for procs in (1, 2)}
    return {procs: folder / f"M{procs}.pt" for procs in (1, 2)}, logs


def _weights(path) -> dict:
    return torch.load(path, weights_only=True)["model"]


def test_twenty_adversarial_steps_of_two_processes_give_the_one_process_weights(trained):
    models, logs = trained
    one, two = _weights(models[1]), _weights(models[2])
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], atol=1e-4, rtol=1e-4, msg=name)
    assert all(f"distributed: rank {r} of 2, device cpu, backend gloo" in logs[2] for r in (0, 1))
    assert "distributed:" not in logs[1]
    # rank 0 alone writes the log: the same rows, the losses the global batch's
    rows = [models[p].with_suffix(".tsv").read_text().splitlines() for p in (1, 2)]
    assert rows[0][0] == rows[1][0] and len(rows[0]) == len(rows[1]) == 5
    for a, b in zip(rows[0][1:], rows[1][1:]):
        assert np.allclose([float(x) for x in a.split("\t")], [float(x) for x in b.split("\t")], rtol=1e-4)


@pytest.fixture(scope="module")
def pseudo(tiny_demo, trained, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pseudo")
    out = {}
    for procs in (1, 2):
        out[procs] = folder / f"pseudo{procs}.h5"
        run_stage("pseudo_label", "--segmenter", trained[0][1], *target_flags(tiny_demo), "--mode", "classwise",
                  "--threshold", 0.9, "--batch-size", 3, *RUNTIME, "--procs", procs, "--out", out[procs])
    return out


def test_pseudo_label_set_and_classwise_thresholds_of_two_processes_equal_one_process(pseudo):
    _same_set(pseudo[1], pseudo[2])
    with h5py.File(pseudo[2]) as f:
        thresholds = np.asarray(f.attrs["thresholds"])
        assert len(f["names"]) == 16 and len(set(f["names"][:])) == 16
    assert (thresholds < 0.9).any()  # medians, not only the cap


def test_evaluation_of_two_processes_equals_one_process(tiny_demo, trained, pseudo, tmp_path):
    for procs in (1, 2):
        run_stage("evaluate", "--segmenter", trained[0][1], *target_flags(tiny_demo), "--pseudo", pseudo[1],
                  "--predictions", tmp_path / f"pred{procs}", "--num-predictions", 6, *RUNTIME, "--procs", procs,
                  "--out", tmp_path / f"eval{procs}.json")
    one, two = (json.loads((tmp_path / f"eval{p}.json").read_text()) for p in (1, 2))
    assert one == two and one["images"] == 8 and "pseudo_label_on_val" in one
    # 8 frames on 2 ranks: the 6 saved predictions span both ranks' shares
    pictures = [sorted(p.name for p in (tmp_path / f"pred{procs}").iterdir()) for procs in (1, 2)]
    assert pictures[0] == pictures[1] and len(pictures[0]) == 12
    for name in pictures[0]:
        assert (tmp_path / "pred1" / name).read_bytes() == (tmp_path / "pred2" / name).read_bytes()


# --- a killed 2-process run resumes under 2 processes to the uninterrupted run's weights ---

def test_two_process_run_killed_midway_resumes_to_the_uninterrupted_weights(tiny_demo, translated, trained, tmp_path):
    out = tmp_path / "M.pt"
    partial = out.with_name(out.name + ".partial.pt")
    proc = train(tiny_demo, translated[1], out, 2, wait=False)
    deadline = time.monotonic() + 120
    while not partial.exists():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers, mid-run
    proc.wait()
    assert not out.exists(), "the run finished before it could be killed"
    step = torch.load(partial, weights_only=True)["step"]
    assert 0 < step < 20
    log = train(tiny_demo, translated[1], out, 2)
    assert re.findall(r"resuming at step (\d+)", log) == [str(step)]  # rank 0 says it, for both
    uninterrupted, resumed = _weights(trained[0][2]), _weights(out)
    for name in uninterrupted:
        assert torch.equal(resumed[name], uninterrupted[name]), name


def test_a_batch_that_does_not_split_is_refused_naming_the_key(tiny_demo, translated, tmp_path):
    proc = run_stage("train_segmenter", *TRAIN, "--batch-size", 3, "--iterations", 2, *source_flags(tiny_demo),
                     *target_flags(tiny_demo), "--translated", translated[1], *RUNTIME, "--procs", 2,
                     "--out", tmp_path / "M.pt", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error:")
    assert "config key 'segmenter.batch_size': 3 does not divide among 2 processes" in proc.stderr


def test_translator_of_two_processes_equals_one_process_pools_included(tiny_demo, trained, tmp_path):
    """Three steps of F and F_inv with the perceptual loss through M and a pool of 3 (it fills in the first step and
    draws from then on): every rank draws from the gathered global batch, so D sees what the 1-process D sees."""
    weights = {}
    for procs in (1, 2):
        run_stage("train_translator", *source_flags(tiny_demo), *target_flags(tiny_demo), "--segmenter",
                  trained[0][1], "--ngf", 4, "--n-blocks", 1, "--ndf", 4, "--iterations", 3, "--batch-size", 2,
                  "--pool-size", 3, "--checkpoint-every", 0, *RUNTIME, "--procs", procs,
                  "--out", tmp_path / f"F{procs}.pt")
        weights[procs] = torch.load(tmp_path / f"F{procs}.pt", weights_only=True)
    # a convolution's bias before InstanceNorm has no gradient but rounding noise, which Adam scales to lr-sized
    # steps of either sign: those are not compared
    noise = _biases_before_instance_norm(build_translator({"ngf": 4, "n_blocks": 1})[0])
    assert noise and "net.18.bias" not in noise  # the last convolution's bias learns: compared
    for net in ("model", "model_inv"):
        for name, w in weights[1][net].items():
            if name not in noise:
                torch.testing.assert_close(weights[2][net][name], w, atol=1e-5, rtol=1e-4, msg=f"{net}.{name}")


def _biases_before_instance_norm(module) -> set:
    names = set()
    for prefix, m in module.named_modules():
        kids = list(m.named_children()) if isinstance(m, torch.nn.Sequential) else []
        for (name, layer), (_, after) in zip(kids, kids[1:]):
            if isinstance(after, torch.nn.InstanceNorm2d) and getattr(layer, "bias", None) is not None:
                names.add(f"{prefix}.{name}.bias".lstrip("."))
    return names
