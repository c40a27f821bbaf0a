import pytest
import torch

from bdl import BDLError
from bdl.artifacts import load_checkpoint, load_weights, save_checkpoint
from bdl.models import build_segmenter, segmenter_from_checkpoint
from bdl.models.cyclegan import ImagePool, PatchDiscriminator, ResnetGenerator
from bdl.models.deeplab import ASPP, DeepLabV2
from bdl.models.discriminator import OutputDiscriminator


@pytest.mark.parametrize("backbone", ["resnet_mini", "resnet18", "resnet50"])
def test_deeplab_output_stride_8_and_full_size_logits(backbone):
    m = build_segmenter(backbone, width=8).eval()
    x = torch.rand(1, 3, 64, 128)
    with torch.no_grad():
        feats = m.backbone(m.normalize(x))
        out = m(x)
    assert feats.shape[-2:] == (8, 16)  # 64x128 / 8
    assert out.shape == (1, 19, 64, 128)


def test_resnet101_trunk_is_dilated():
    m = build_segmenter("resnet101")
    convs = [c for c in m.backbone.layer4.modules() if isinstance(c, torch.nn.Conv2d) and c.kernel_size == (3, 3)]
    # torchvision's dilated layer4: the first block keeps dilation 2 from layer3, the others use 4
    assert all(c.stride == (1, 1) for c in convs) and [c.dilation[0] for c in convs] == [2, 4, 4]
    assert sum(p.numel() for p in m.backbone.parameters()) > 40e6


def test_aspp_sums_four_dilated_branches():
    aspp = ASPP(8, 19)
    assert [b.dilation for b in aspp.branches] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    x = torch.rand(1, 8, 10, 10)
    assert torch.allclose(aspp(x), sum(b(x) for b in aspp.branches))


def test_classifier_learns_ten_times_faster():
    groups = build_segmenter("resnet_mini", width=8).param_groups(0.1)
    assert [g["lr"] for g in groups] == [0.1, 1.0]


def test_freeze_bn_keeps_statistics():
    m = DeepLabV2(backbone="resnet_mini", width=8, freeze_bn=True).train()
    before = m.backbone.bn1.running_mean.clone()
    m(torch.rand(2, 3, 32, 32))
    assert torch.equal(before, m.backbone.bn1.running_mean)
    assert not m.backbone.bn1.weight.requires_grad


def test_fcn8s_shapes():
    m = build_segmenter("vgg16", width=4).eval()
    assert m(torch.rand(1, 3, 48, 80)).shape == (1, 19, 48, 80)


def test_output_discriminator_layout():
    d = OutputDiscriminator(19, 64)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    assert d(torch.rand(1, 19, 64, 64)).shape == (1, 1, 2, 2)


def test_cyclegan_shapes_and_patch_receptive_field():
    g = ResnetGenerator(8, 2)
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    y = g(x)
    assert y.shape == x.shape and y.abs().max() <= 1
    paper = ResnetGenerator()
    assert sum(isinstance(m, torch.nn.ReflectionPad2d) for m in paper.modules()) == 2 + 2 * 9
    d = PatchDiscriminator(8)
    # 70x70 receptive field: a 70x70 input gives a single logit... plus the padding ring
    assert d(torch.rand(1, 3, 70, 70)).shape[-1] == 6


def test_image_pool_returns_history():
    pool = ImagePool(2, torch.Generator().manual_seed(0))
    first = pool.query(torch.zeros(2, 3, 4, 4))
    assert first.shape == (2, 3, 4, 4) and len(pool.images) == 2
    mixed = pool.query(torch.ones(8, 3, 4, 4))
    assert mixed.shape == (8, 3, 4, 4)
    assert (mixed.sum(dim=(1, 2, 3)) == 0).any()  # some old fakes came back


def test_checkpoint_round_trip_and_architecture_mismatch(tmp_path):
    m = build_segmenter("resnet_mini", width=8)
    arch = {"backbone": "resnet_mini", "width": 8, "freeze_bn": False, "aspp_dilations": [6, 12, 18, 24],
            "num_classes": 19}
    save_checkpoint(tmp_path / "m.pt", {"kind": "segmenter", "model": m.state_dict(), "arch": arch})
    state = load_checkpoint(tmp_path / "m.pt", kind="segmenter")
    m2 = segmenter_from_checkpoint(state)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
    with pytest.raises(BDLError, match="weights do not fit this architecture"):
        load_weights(build_segmenter("resnet_mini", width=16), state["model"], tmp_path / "m.pt")
    with pytest.raises(BDLError, match="a segmenter checkpoint, expected a translator"):
        load_checkpoint(tmp_path / "m.pt", kind="translator")


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


def test_pickle_with_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"kind": "segmenter", "model": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(BDLError, match="evil.pt: not a loadable bdl checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "x.pt").write_text("hello")
    with pytest.raises(BDLError, match="x.pt: not a loadable bdl checkpoint"):
        load_checkpoint(tmp_path / "x.pt")


def test_local_trunk_weights_file(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    m = build_segmenter("resnet18", weights=str(tmp_path / "r18.pth"))
    assert torch.equal(m.backbone.layer3[0].conv1.weight, reference.layer3[0].conv1.weight)
    assert torch.equal(m.backbone.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)
    with pytest.raises(BDLError, match="backbone weights file not found"):
        build_segmenter("resnet18", weights=str(tmp_path / "missing.pth"))


def _frames(n, mean, seed):
    g = torch.Generator().manual_seed(seed)
    return [{"image": (torch.rand(3, 32, 32, generator=g) * 100 + mean).to(torch.uint8)} for _ in range(n)]


def test_domain_statistics_are_the_frames_averages():
    """The first BatchNorm sees the frames as they are (after a 1x1 conv of known weights): its running mean is
    their per-channel mean; weights and the original model are left as they were."""
    from torch import nn

    from bdl.models.bn_stats import with_domain_statistics

    conv = nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
    model = nn.Sequential(conv, nn.BatchNorm2d(3)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frames = _frames(10, 120, 0)
    twin = with_domain_statistics(model, frames, torch.device("cpu"), batch_size=4)
    pixels = torch.stack([f["image"] for f in frames]).float() / 255
    assert torch.allclose(twin[1].running_mean, pixels.mean((0, 2, 3)), atol=1e-6)
    assert not twin.training and twin[1].momentum == model[1].momentum
    assert torch.equal(twin[0].weight, model[0].weight)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    again = with_domain_statistics(model, frames, torch.device("cpu"), batch_size=4)
    assert torch.equal(again[1].running_var, twin[1].running_var)
    every_other = with_domain_statistics(model, frames, torch.device("cpu"), batch_size=4, max_frames=5)
    assert torch.allclose(every_other[1].running_mean, pixels[::2].mean((0, 2, 3)), atol=1e-6)


def test_domain_statistics_of_a_frozen_batchnorm_model():
    """freeze_bn keeps BatchNorm in eval mode while M trains; the re-estimate still reaches its layers, and
    frames of two looks give two different copies."""
    from bdl.models.bn_stats import has_batchnorm, with_domain_statistics

    torch.manual_seed(0)
    m = DeepLabV2(backbone="resnet_mini", width=8, freeze_bn=True).eval()
    dark = with_domain_statistics(m, _frames(6, 10, 1), torch.device("cpu"))
    bright = with_domain_statistics(m, _frames(6, 150, 2), torch.device("cpu"))
    assert has_batchnorm(m)
    assert not torch.equal(m.backbone.bn1.running_mean, dark.backbone.bn1.running_mean)
    assert not torch.equal(dark.backbone.bn1.running_mean, bright.backbone.bn1.running_mean)
