"""The CUDA path against the CPU's: the same step and the same prediction on both devices, bf16 + channels_last
against fp32 on the GPU, a stage's checkpoint written on the GPU read back on a CPU, the GPU slot a job takes.
They need a CUDA device and skip without one (CI has none); benchmarks/gpu_proof.py runs them on a GPU
(``pytest -m cuda``)."""

import copy

import pytest
import torch
from conftest import run_stage, source_flags

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (the GPU proof runs these)")]

CUDA = torch.device("cuda")
CPU = torch.device("cpu")


@pytest.fixture
def exact_fp32():
    """TF32 off for the comparisons with the CPU (cuDNN uses it for fp32 convolutions by default)."""
    kept = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = kept


def _batches(seed=0, hw=(64, 128)):
    gen = torch.Generator().manual_seed(seed)
    src = {"image": torch.randint(0, 256, (2, 3, *hw), dtype=torch.uint8, generator=gen),
           "label": torch.randint(0, 19, (2, *hw), generator=gen)}
    pseudo = torch.randint(0, 19, (2, *hw), generator=gen)
    pseudo[torch.rand(pseudo.shape, generator=gen) < 0.3] = 255
    tgt = {"image": torch.randint(0, 256, (2, 3, *hw), dtype=torch.uint8, generator=gen), "label": pseudo}
    return src, tgt


def _step_gradients(device, bf16="off", channels_last="off"):
    """M's losses and gradients of one SSL step (source CE, pseudo-label CE, adversarial term) on ``device``."""
    from bdl.data.labels import NUM_CLASSES
    from bdl.loops.segmenter import segmenter_backward
    from bdl.models import build_segmenter
    from bdl.models.discriminator import OutputDiscriminator
    from bdl.runtime import ComputeFormat

    torch.manual_seed(0)
    model = build_segmenter("resnet_mini", width=8, freeze_bn=True)
    disc = OutputDiscriminator(NUM_CLASSES, 8)
    compute = ComputeFormat(device, bf16, channels_last)
    compute.model(model).train()
    compute.model(disc)
    src, tgt = _batches()
    losses, _, _ = segmenter_backward(model, disc, src, tgt, 0.001, compute, device)
    grads = torch.cat([p.grad.flatten().double().cpu() for p in model.parameters() if p.grad is not None])
    return {k: float(v) for k, v in losses.items()}, grads


def test_auto_compute_format_is_bf16_and_channels_last_on_cuda():
    from bdl.runtime import ComputeFormat

    compute = ComputeFormat(CUDA)
    assert compute.bf16 == torch.cuda.is_bf16_supported() and compute.channels_last
    model = compute.model(torch.nn.Conv2d(3, 4, 3))
    assert model.weight.is_cuda and model.weight.is_contiguous(memory_format=torch.channels_last)


def test_fp32_step_on_cuda_gives_the_cpu_gradient(exact_fp32):
    cpu_losses, cpu_grads = _step_gradients(CPU)
    gpu_losses, gpu_grads = _step_gradients(CUDA)
    assert cpu_losses.keys() == gpu_losses.keys() == {"seg", "seg_target", "adv"}
    for key in cpu_losses:
        assert gpu_losses[key] == pytest.approx(cpu_losses[key], rel=1e-4)
    assert float((gpu_grads - cpu_grads).norm() / cpu_grads.norm()) < 1e-3


def test_bf16_channels_last_step_stays_close_to_fp32(exact_fp32):
    fp32_losses, fp32_grads = _step_gradients(CUDA)
    bf16_losses, bf16_grads = _step_gradients(CUDA, "on", "on")
    assert all(torch.isfinite(torch.tensor(v)) for v in bf16_losses.values())
    for key in fp32_losses:
        assert bf16_losses[key] == pytest.approx(fp32_losses[key], rel=2e-2)
    cosine = float(bf16_grads @ fp32_grads / (bf16_grads.norm() * fp32_grads.norm()))
    assert cosine > 0.99


def test_prediction_on_cuda_agrees_with_the_cpu(exact_fp32):
    from bdl.loops.inference import predict
    from bdl.models import build_segmenter

    torch.manual_seed(0)
    model = build_segmenter("resnet_mini", width=8).eval()
    images = _batches(1)[1]["image"]
    prob_cpu, pred_cpu = predict(model, images, CPU)
    prob_gpu, pred_gpu = predict(copy.deepcopy(model).to(CUDA), images, CUDA)
    assert (pred_gpu.cpu() == pred_cpu).float().mean() > 0.999
    assert torch.allclose(prob_gpu.cpu(), prob_cpu, atol=1e-4)


def test_translator_forward_on_cuda_matches_the_cpu(exact_fp32):
    from bdl.models.cyclegan import ResnetGenerator, to_gan

    torch.manual_seed(0)
    generator = ResnetGenerator(8, 1).eval()
    images = _batches(2)[0]["image"]
    with torch.no_grad():
        cpu = generator(to_gan(images, CPU))
        gpu = copy.deepcopy(generator).to(CUDA)(to_gan(images, CUDA)).cpu()
    assert float((gpu - cpu).norm() / cpu.norm()) < 1e-4


def test_a_checkpoint_trained_on_cuda_loads_and_predicts_on_a_cpu(tiny_demo, tmp_path):
    from bdl.gpu_slots import visible_gpus

    out = tmp_path / "m0.pt"
    # a machine whose driver lists no GPU under /proc (a VM, say) names its one GPU for the slot
    listed = {} if visible_gpus() else {"CUDA_VISIBLE_DEVICES": "0"}
    proc = run_stage("train_segmenter", "--mode", "source", *source_flags(tiny_demo), "--backbone", "resnet_mini",
                     "--width", "8", "--batch-size", "4", "--iterations", "3", "--device", "cuda", "--out", out,
                     env={"BDL_GPUS": "1", "BDL_GPU_SLOT_DIR": str(tmp_path / "slots")} | listed)
    # the stage took the one GPU slot (bdl.gpu_slots) before CUDA started
    assert "gpu slot: device" in proc.stderr
    from bdl.artifacts import load_checkpoint
    from bdl.models import load_segmenter

    state = load_checkpoint(out, kind="segmenter")
    assert all(t.device.type == "cpu" for t in state["model"].values())
    model = load_segmenter(out)
    with torch.no_grad():
        logits = model(torch.rand(1, 3, 32, 64))
    assert logits.shape == (1, 19, 32, 64) and torch.isfinite(logits).all()
