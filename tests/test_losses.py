import math

import pytest
import torch

from bdl.losses import GANLoss, bce_adv, cycle_l1, instance_norm_logits, perceptual, seg_ce
from bdl.models import build_segmenter


def test_seg_ce_ignores_255_and_empty_batches():
    logits = torch.zeros(1, 19, 1, 2)
    logits[0, 3, 0, 0] = 2.0
    target = torch.tensor([[[3, 255]]])
    assert seg_ce(logits, target).item() == pytest.approx(math.log1p(18 * math.exp(-2.0)),
                                                          rel=1e-5)
    assert seg_ce(logits, torch.full((1, 1, 2), 255)).item() == 0.0


def test_perceptual_zero_when_translation_is_identity():
    torch.manual_seed(0)
    m = build_segmenter("resnet_mini", width=8).eval()
    x = torch.rand(2, 3, 32, 64)
    assert perceptual(m, x, x.clone()).item() == pytest.approx(0.0, abs=1e-10)
    assert perceptual(m, x, torch.rand(2, 3, 32, 64)).item() > 0


def test_perceptual_gradient_reaches_image_not_frozen_m():
    m = build_segmenter("resnet_mini", width=8).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    other = torch.rand(1, 3, 32, 64, requires_grad=True)
    perceptual(m, torch.rand(1, 3, 32, 64), other).backward()
    assert other.grad is not None and other.grad.abs().sum() > 0


def test_instance_norm_is_scale_free():
    x = torch.randn(1, 19, 8, 8)
    assert torch.allclose(instance_norm_logits(x), instance_norm_logits(3 * x + 1), atol=1e-4)


def test_gan_losses():
    gan = GANLoss("lsgan")
    assert gan(torch.ones(2, 1, 3, 3), True).item() == 0.0
    assert gan(torch.ones(2, 1, 3, 3), False).item() == 1.0
    assert bce_adv(torch.full((1, 1, 2, 2), 100.0), 1.0).item() == pytest.approx(0.0, abs=1e-6)
    assert cycle_l1(torch.zeros(3), torch.ones(3)).item() == 1.0
    with pytest.raises(ValueError):
        GANLoss("wgan")


def test_perceptual_reads_the_other_image_through_its_own_judge():
    """Two copies of M differing only in BatchNorm statistics: the other image goes through the second."""
    import copy

    torch.manual_seed(0)
    m = build_segmenter("resnet_mini", width=8).eval()
    twin = copy.deepcopy(m)
    twin.backbone.bn1.running_mean += 0.5
    x = torch.rand(2, 3, 32, 64)
    assert perceptual(m, x, x.clone(), other_segmenter=m).item() == pytest.approx(0.0, abs=1e-10)
    assert perceptual(m, x, x.clone(), other_segmenter=twin).item() > 1e-4
