"""The segmenter step backpropagates the source loss before the target forward (two graphs are never held at
once); its gradient must equal one backward of the summed loss, as the loop did before."""

import pytest
import torch
from adv_step_memory import joint_backward
from conftest import BENCHMARKS, run_stage

from bdl.data.labels import IGNORE, NUM_CLASSES
from bdl.loops.segmenter import segmenter_backward
from bdl.models import build_segmenter
from bdl.models.discriminator import OutputDiscriminator
from bdl.runtime import ComputeFormat


def batches(with_pseudo: bool):
    gen = torch.Generator().manual_seed(0)
    source = {"image": torch.randint(0, 256, (2, 3, 40, 56), generator=gen, dtype=torch.uint8),
              "label": torch.randint(0, NUM_CLASSES, (2, 40, 56), generator=gen)}
    target = {"image": torch.randint(0, 256, (2, 3, 48, 64), generator=gen, dtype=torch.uint8)}
    if with_pseudo:
        label = torch.randint(0, NUM_CLASSES, (2, 48, 64), generator=gen)
        label[:, :, :20] = IGNORE
        target["label"] = label
    return source, target


@pytest.mark.parametrize("backbone", ["resnet_mini", "vgg16"])
@pytest.mark.parametrize("with_pseudo", [False, True], ids=["adversarial", "ssl"])
def test_split_backward_gives_the_joint_gradient(backbone, with_pseudo):
    torch.manual_seed(0)
    model = build_segmenter(backbone, width=8).train()
    disc = OutputDiscriminator(NUM_CLASSES, 8)
    source, target = batches(with_pseudo)
    lambda_adv = 0.5  # larger than the paper's 0.001, so the adversarial share of the gradient is visible

    state = torch.get_rng_state()  # VGG's dropout draws: both passes must see the same masks
    joint_backward(model, disc, source, target, lambda_adv)  # the loss as one sum, one backward
    expected = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    torch.set_rng_state(state)
    cpu = torch.device("cpu")
    losses, pred_s, pred_t = segmenter_backward(model, disc, source, target, lambda_adv, ComputeFormat(cpu), cpu)
    got = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert got.keys() == expected.keys() and len(got) > 10
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6, msg=name)
    assert set(losses) == {"seg", "adv"} | ({"seg_target"} if with_pseudo else set())
    assert not pred_s.requires_grad and not pred_t.requires_grad
    assert all(p.grad is None for p in disc.parameters())


def test_memory_benchmark_runs_both_ways():
    out = run_stage("adv_step_memory", "--tiny", folder=BENCHMARKS).stdout
    assert "joint backward: peak RSS" in out and "split backward: peak RSS" in out
